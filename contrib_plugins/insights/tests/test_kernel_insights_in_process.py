"""The insights plugin with the test toolkit (``kernel.testing``): its routes behind the real gateway in the
test's own process, with mock credentials and mock services; one test in a real kernel (process mode).

The fake internal API (``insights_support.FakeUpstream``) is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from insights_support import PAYMENTS, FakeUpstream, assert_error
from kernel_insights.plugin import SERVICE_READ, plugin

from kernel.testing import TestBackend, mock_credentials, mock_services, start_test_backend

JANE = mock_credentials.user("user:default/jane")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(delay=2.0).start()
    yield fake
    fake.stop()


def configured(upstream: FakeUpstream, **insights: Any) -> dict[str, Any]:
    return {"insights": {"externalApiUrl": upstream.url, "timeoutSeconds": 1, **insights}}


@pytest.fixture
async def backend(upstream: FakeUpstream) -> AsyncIterator[TestBackend]:
    async with start_test_backend([plugin], config=configured(upstream)) as b:
        yield b


async def test_health_is_open_and_services_need_a_user(backend: TestBackend) -> None:
    assert (await backend.client.get("/api/insights/health")).json() == {"status": "ok"}
    assert_error(await backend.client.get("/api/insights/services/payments-api"), 401, "AuthenticationError")
    service = mock_credentials.service("external:ci-bot").header()
    assert_error(
        await backend.client.get("/api/insights/services/payments-api", headers=service), 403, "NotAllowedError"
    )
    invalid = await backend.client.get("/api/insights/services/payments-api", headers=JANE.invalid_header())
    assert_error(invalid, 401, "AuthenticationError")


async def test_a_user_gets_the_upstream_answer(backend: TestBackend) -> None:
    resp = await backend.client.get("/api/insights/services/payments-api", headers=JANE.header())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {**PAYMENTS, "requestedBy": "user:default/jane"}
    assert_error(await backend.client.get("/api/insights/services/nope", headers=JANE.header()), 404, "NotFoundError")
    broken = await backend.client.get("/api/insights/services/broken", headers=JANE.header())
    assert_error(broken, 503, "ServiceUnavailableError")


async def test_a_malformed_id_never_reaches_the_upstream(backend: TestBackend, upstream: FakeUpstream) -> None:
    before = list(upstream.hits)
    resp = await backend.client.get("/api/insights/services/Bad_Id", headers=JANE.header())
    assert "Invalid service id" in assert_error(resp, 400, "InputError")
    assert upstream.hits == before


@pytest.mark.parametrize(("result", "status"), [("ALLOW", 200), ("DENY", 403)])
async def test_the_permission_decides(upstream: FakeUpstream, result: str, status: int) -> None:
    permissions = mock_services.permissions.mock(result=result)  # type: ignore[arg-type]
    async with start_test_backend([plugin], services=[permissions], config=configured(upstream)) as backend:
        resp = await backend.client.get("/api/insights/services/payments-api", headers=JANE.header())
        assert resp.status_code == status, resp.text
    (call,) = permissions.calls_to("authorize")
    assert call.args[0] == [{"permission": SERVICE_READ}]
    assert call.kwargs["credentials"].principal == JANE.principal


async def test_each_upstream_call_is_logged_with_its_actor(upstream: FakeUpstream) -> None:
    logger = mock_services.logger.mock()
    async with start_test_backend([plugin], services=[logger], config=configured(upstream)) as backend:
        await backend.client.get("/api/insights/services/payments-api", headers=JANE.header())
    assert logger.called_with("info", "fetching insights", service="payments-api", actor="user:default/jane")


async def test_unconfigured_then_configured_by_a_reload(upstream: FakeUpstream) -> None:
    config = mock_services.root_config()
    async with start_test_backend([plugin], services=[config]) as backend:
        resp = await backend.client.get("/api/insights/services/payments-api", headers=JANE.header())
        assert "set insights.externalApiUrl" in assert_error(resp, 503, "ServiceUnavailableError")
        await config.update(configured(upstream))
        assert (
            await backend.client.get("/api/insights/services/payments-api", headers=JANE.header())
        ).status_code == 200


async def test_in_a_real_kernel(upstream: FakeUpstream) -> None:
    """Process mode: the installed plugin in its own worker, behind a real gateway, mock credentials accepted."""
    async with start_test_backend([plugin], mode="process", config=configured(upstream)) as backend:
        resp = await backend.client.get("/api/insights/services/payments-api", headers=JANE.header())
        assert resp.status_code == 200, resp.text
        assert resp.json()["requestedBy"] == "user:default/jane"
        assert_error(await backend.client.get("/api/insights/services/payments-api"), 401, "AuthenticationError")
        service = mock_credentials.service.header()
        assert_error(await backend.client.get("/api/insights/services/x", headers=service), 403, "NotAllowedError")
