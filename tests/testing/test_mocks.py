"""``mock_services``: each replaces the default in a test backend; the recording mocks on their own."""

from __future__ import annotations

import pytest

from kernel.api import (
    ALLOWED,
    DENIED,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PluginResponse,
    core_services,
)
from kernel.testing import Call, MockScheduler, mock_credentials, mock_services, start_test_backend
from tests.conftest import assert_error_shape
from tests.testing import notes

USER = mock_credentials.user.header()


@pytest.mark.parametrize(("result", "status"), [("ALLOW", 201), ("DENY", 403)])
async def test_permissions_answer_what_the_test_says(result: str, status: int) -> None:
    services = [mock_services.permissions.factory(result=result)]  # type: ignore[arg-type]
    async with start_test_backend([notes.plugin], services=services) as backend:
        resp = await backend.client.post("/api/notes/notes", json={"body": "x"}, headers=USER)
        assert resp.status_code == status, resp.text


async def test_a_permissions_mock_records_what_was_asked() -> None:
    permissions = mock_services.permissions.mock(result="DENY")
    async with start_test_backend([notes.plugin], services=[permissions]) as backend:
        denied = await backend.client.post("/api/notes/notes", json={"body": "x"}, headers=USER)
        assert_error_shape(denied, 403, "NotAllowedError")
    (call,) = permissions.calls_to("authorize")
    assert call.args[0][0]["permission"] is notes.NOTE_CREATE
    assert call.kwargs["credentials"].principal == mock_credentials.user().principal


async def test_the_scheduler_runs_tasks_on_demand() -> None:
    scheduler = mock_services.scheduler()
    async with start_test_backend([notes.plugin], services=[scheduler.factory()]) as backend:
        await backend.client.post("/api/notes/notes", json={"body": "x"}, headers=USER)
        assert scheduler.tasks["notes-cleanup"].runs == 0  # not on its own
        assert (await backend.client.get("/api/notes/notes", headers=USER)).json() == {"notes": ["x"]}
        await scheduler.trigger("notes-cleanup")
        assert scheduler.tasks["notes-cleanup"].runs == 1
        database = await backend.service("notes", core_services.database)  # type: ignore[attr-defined]
        assert await (await database.get_client()).fetch_val("SELECT count(*) FROM notes") == 0
        with pytest.raises(NotFoundError):
            await scheduler.trigger("nope")


async def test_the_default_scheduler_is_on_demand_too() -> None:
    async with start_test_backend([notes.plugin]) as backend:
        scheduler = await backend.service("notes", core_services.scheduler)  # type: ignore[attr-defined]
        assert isinstance(scheduler, MockScheduler) and list(scheduler.tasks) == ["notes-cleanup"]
        assert (await scheduler.list_tasks())[0]["taskId"] == "notes-cleanup"


async def test_a_scheduler_run_on_startup_and_its_errors() -> None:
    scheduler = MockScheduler()
    async with start_test_backend([notes.plugin], services=[scheduler.factory(run_on_startup=True)]):
        assert scheduler.tasks["notes-cleanup"].runs == 1

    async def broken() -> None:
        raise ValueError("no")

    await scheduler.schedule_task("broken", broken, frequency="manual", timeout=1)
    with pytest.raises(ConflictError):
        await scheduler.schedule_task("broken", broken, frequency="manual", timeout=1)
    await scheduler.trigger_task("broken")  # what plugin code calls: the error is kept, not raised
    assert isinstance(scheduler.tasks["broken"].last_error, ValueError)
    with pytest.raises(ValueError, match="no"):
        await scheduler.trigger("broken")  # what a test calls: the error is raised
    mock = mock_services.scheduler.mock()
    await mock.schedule_task("t", broken, frequency=60, timeout=1)
    await mock.trigger_task("t")
    assert [c.name for c in mock.calls] == ["schedule_task", "trigger_task"]


async def test_cache_and_logger_mocks_see_the_plugin_work() -> None:
    cache, logger = mock_services.cache.mock(), mock_services.logger.mock()
    async with start_test_backend([notes.plugin], services=[cache, logger.factory()]) as backend:
        await backend.client.post("/api/notes/notes", json={"body": "a"}, headers=USER)
        await backend.client.get("/api/notes/notes", headers=USER)
        assert (await backend.client.get("/api/notes/notes", headers=USER)).json() == {"notes": ["a"]}
    owner = "notes:user:default/mock"
    assert [c.name for c in cache.calls] == ["delete", "get", "set", "get"]
    assert cache.called_with("set", owner, ["a"], ttl=None)
    assert logger.messages("info") == ["notes ready", "note created"]
    assert logger.calls_to("info")[1] == Call("info", ("note created",), {"owner": "user:default/mock"})


async def test_a_database_mock_and_user_info_override() -> None:
    database = mock_services.database.mock()
    user_info = mock_services.user_info.factory(ownership_entity_refs=["group:default/x"])
    async with start_test_backend([notes.plugin], services=[database, user_info]) as backend:
        info = (await backend.client.get("/api/notes/users-only", headers=USER)).json()
        assert info == {"user": "user:default/mock", "owns": ["group:default/x"]}
    assert database.calls_to("migrate")[0].args == (notes.MIGRATIONS,)


async def test_overrides_values_functions_and_coroutines() -> None:
    async def fetched(key: str) -> str:
        return f"cached {key}"

    cache = mock_services.cache.mock(get=fetched)
    assert await cache.get("k") == "cached k"
    await cache.set("k", 1)  # not overridden: the memory cache
    assert cache.calls == [Call("get", ("k",)), Call("set", ("k", 1), {"ttl": None})]
    discovery = mock_services.discovery.mock(get_base_url="http://upstream:1234")
    assert await discovery.get_base_url("catalog") == "http://upstream:1234"
    assert await discovery.get_external_base_url("catalog") == "http://localhost:0/api/catalog"
    with pytest.raises(TypeError, match="no method 'gett'"):
        mock_services.cache.mock(gett=1)


async def test_the_auth_mocks() -> None:
    auth = mock_services.auth("notes")
    creds = await auth.authenticate(mock_credentials.user.token())
    assert creds.principal == mock_credentials.user().principal
    with pytest.raises(AuthenticationError, match="Limited user token is not allowed"):
        await auth.authenticate(mock_credentials.limited_user().token())
    with pytest.raises(AuthenticationError, match="expected 'notes'"):
        await auth.authenticate(mock_credentials.service("plugin:x", target_plugin_id="other").token())
    token = await auth.get_plugin_request_token(on_behalf_of=creds, target_plugin_id="catalog")
    assert (await mock_services.auth("catalog").authenticate(token)).principal.actor == "plugin:notes"
    own = await auth.get_own_service_credentials()
    assert own.principal.subject == "plugin:notes"
    recorded = mock_services.auth.mock()
    assert recorded.is_principal(creds, "user") and recorded.calls_to("is_principal")


async def test_permissions_and_plugin_client_mocks_on_their_own() -> None:
    creds = mock_credentials.user().credentials
    assert await mock_services.permissions().authorize([{"permission": notes.NOTE_CREATE}], credentials=creds) == [
        ALLOWED
    ]
    deny = mock_services.permissions(result="DENY")
    assert await deny.authorize_conditional([{"permission": notes.NOTE_CREATE}], credentials=creds) == [DENIED]
    with pytest.raises(ValueError, match="ALLOW"):
        mock_services.permissions(result="MAYBE")  # type: ignore[arg-type]
    client = mock_services.plugin_client.mock(request=PluginResponse(200, {}, b"{}"))
    assert (await client.request("catalog", "GET", "/entities")).json() == {}
    assert client.calls_to("request")[0].args == ("catalog", "GET", "/entities")
    with pytest.raises(Exception, match="no answer for GET /x"):
        await mock_services.plugin_client.mock().request("catalog", "GET", "/x")


async def test_config_mock_records_reads() -> None:
    config = mock_services.root_config.mock(data={"notes": {"greeting": "hi"}})
    async with start_test_backend([notes.plugin], services=[config]) as backend:
        assert (await backend.client.get("/api/notes/greeting", headers=USER)).json() == {"greeting": "hi"}
    assert config.called_with("get_optional_string", "notes.greeting")
