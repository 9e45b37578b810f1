"""``start_test_backend`` in-process: the gateway's checks and error shape, the worker's boot and lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace

import pytest

from kernel.api import (
    ALLOWED,
    DENIED,
    PermissionPolicy,
    PolicyDecision,
    PolicyQuery,
    PolicyUser,
    ServiceRef,
    core_services,
    create_module,
    create_plugin,
    hookimpl,
)
from kernel.testing import BootError, InProcessBackend, TestBackend, mock_credentials, mock_services, start_test_backend
from tests.conftest import assert_error_shape
from tests.testing import notes

USER = mock_credentials.user.header()


@pytest.fixture
async def backend() -> AsyncIterator[TestBackend]:
    async with start_test_backend([notes.plugin]) as b:
        yield b


async def test_policies_match_by_prefix(backend: TestBackend) -> None:
    assert (await backend.client.get("/api/notes/public/whoami")).status_code == 200
    assert (await backend.client.get("/api/notes/public")).status_code == 404  # open, but no such route
    assert_error_shape(await backend.client.get("/api/notes/publicity"), 401, "AuthenticationError")
    assert_error_shape(await backend.client.get("/api/notes/greeting"), 401, "AuthenticationError")


async def test_the_gateway_refuses_before_the_plugin(backend: TestBackend) -> None:
    dots = await backend.client.get("/api/notes/public/%2E%2E/whoami")
    assert dots.status_code == 400 and dots.json()["error"]["name"] == "InputError"
    assert_error_shape(await backend.client.get("/api/nobody/x", headers=USER), 404, "NotFoundError")
    assert_error_shape(await backend.client.get("/nothing-here"), 404, "NotFoundError")


async def test_errors_of_the_plugin_in_the_error_shape(backend: TestBackend) -> None:
    body = assert_error_shape(await backend.client.get("/api/notes/boom", headers=USER), 400, "InputError")
    assert body["error"] == {"name": "InputError", "message": "That is not a note"}
    crash = assert_error_shape(await backend.client.get("/api/notes/crash", headers=USER), 500, "RuntimeError")
    assert "stack" not in crash["error"]  # type: ignore[operator]  # as a worker answers in production
    wrong = await backend.client.delete("/api/notes/greeting", headers=USER)
    assert_error_shape(wrong, 405, "MethodNotAllowedError")


async def test_development_mode_shows_the_stack() -> None:
    async with start_test_backend([notes.plugin], dev=True) as backend:
        body = (await backend.client.get("/api/notes/crash", headers=USER)).json()
        assert body["error"]["message"] == "a secret detail"
        assert "RuntimeError" in body["error"]["stack"]


async def test_a_policy_added_at_run_time_reaches_the_gateway(backend: TestBackend) -> None:
    assert_error_shape(await backend.client.get("/api/notes/later"), 401, "AuthenticationError")
    assert (await backend.client.post("/api/notes/open-later", headers=USER)).status_code == 200
    assert (await backend.client.get("/api/notes/later")).json()["type"] == "none"


async def test_the_root_routes_are_the_gateways(backend: TestBackend) -> None:
    ready = await backend.client.get("/.kernel/health/v1/readiness")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    assert_error_shape(await backend.client.get("/.kernel/instance/v1/plugins"), 401, "AuthenticationError")
    plugins = (await backend.client.get("/.kernel/instance/v1/plugins", headers=USER)).json()["plugins"]
    assert [(p["id"], p["state"]) for p in plugins] == [("notes", "ready")]


async def test_awaited_then_stopped_runs_the_shutdown_hooks() -> None:
    lifecycle = mock_services.lifecycle.mock()
    backend = await start_test_backend([notes.plugin], services=[lifecycle])
    assert isinstance(backend, InProcessBackend)
    assert [c.args[0] for c in lifecycle.calls_to("run")] == ["startup"]
    assert (await backend.client.get("/api/notes/greeting", headers=USER)).json() == {"greeting": "hello"}
    await backend.stop()
    assert [c.args[0] for c in lifecycle.calls_to("run")] == ["startup", "before_shutdown", "shutdown"]
    after = await start_test_backend([notes.plugin])
    await after.stop()
    await after.stop()  # twice is harmless


async def test_config_reaches_the_plugin_and_follows_updates() -> None:
    config = mock_services.root_config(data={"notes": {"greeting": "hi"}})
    async with start_test_backend([notes.plugin], services=[config]) as backend:
        assert (await backend.client.get("/api/notes/greeting", headers=USER)).json() == {"greeting": "hi"}
        await config.update({"notes": {"greeting": "hey"}})
        assert (await backend.client.get("/api/notes/greeting", headers=USER)).json() == {"greeting": "hey"}
    async with start_test_backend([notes.plugin], config={"notes": {"greeting": "yo"}}) as backend:
        assert (await backend.client.get("/api/notes/greeting", headers=USER)).json() == {"greeting": "yo"}
    with pytest.raises(TypeError, match="not both"):
        await start_test_backend([notes.plugin], config={}, services=[config])


async def test_a_hook_module_feature_brings_a_permission_policy() -> None:
    class DenyMallory:
        async def handle(self, request: PolicyQuery, user: PolicyUser | None) -> PolicyDecision:
            return DENIED if user is not None and user.user_entity_ref.endswith("/mallory") else ALLOWED

    @hookimpl
    def kernel_permission_policy() -> PermissionPolicy:
        return DenyMallory()

    policy = SimpleNamespace(kernel_permission_policy=kernel_permission_policy, __name__="deny_mallory")
    config = {"permission": {"enabled": True}}
    async with start_test_backend([notes.plugin, policy], config=config) as backend:
        ok = await backend.client.post("/api/notes/notes", json={"body": "x"}, headers=USER)
        assert ok.status_code == 201, ok.text
        mallory = mock_credentials.user("user:default/mallory").header()
        denied = await backend.client.post("/api/notes/notes", json={"body": "x"}, headers=mallory)
        assert_error_shape(denied, 403, "NotAllowedError")


async def test_declaration_problems_fail_at_start() -> None:
    needy = create_plugin("needy")
    unknown: ServiceRef[object] = ServiceRef("acme.unknown")

    @needy.init(thing=unknown)
    def init(thing: object) -> None:
        pass

    with pytest.raises(BootError, match="plugin 'needy' depends on service 'acme.unknown'"):
        await start_test_backend([needy])
    with pytest.raises(BootError, match="duplicate plugin id"):
        await start_test_backend([notes.plugin, notes.plugin])
    with pytest.raises(TypeError, match="neither a plugin"):
        await start_test_backend([object()])
    with pytest.raises(TypeError, match="services:"):
        await start_test_backend([notes.plugin], services=[object()])


async def test_services_as_ref_and_instance_pairs() -> None:
    class Shouting:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def _add(self, msg: str, **fields: object) -> None:
            self.lines.append(msg.upper())

        debug = info = warning = error = exception = _add

        def child(self, **fields: object) -> Shouting:
            return self

    logger = Shouting()
    pairs: Sequence[object] = [(core_services.logger, logger)]
    async with start_test_backend([notes.plugin], services=pairs):
        assert "NOTES READY" in logger.lines


async def test_a_plugin_or_module_without_init_is_named() -> None:
    bare = create_plugin("bare")
    with pytest.raises(BootError, match="plugin 'bare' declares no init \\(use @plugin.init\\)"):
        await start_test_backend([bare])
    lonely = create_module(plugin_id="notes", module_id="lonely")
    with pytest.raises(BootError, match="module 'lonely' for plugin 'notes' declares no init \\(use @module.init\\)"):
        await start_test_backend([notes.plugin, lonely])
