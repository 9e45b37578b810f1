"""The insights plugin in real kernels: the seed's validation sequence against a fake internal API.

Kernel ``dev``: ``KERNEL_ENV=development``, so the auth plugin's guest provider issues a real
user token; ``insights.externalApiUrl`` is a fake upstream served by the test on 127.0.0.1.
Kernel ``prod``: production mode (no stack traces), no ``insights`` block, a permission policy
that denies ``insights.service.read`` to ``user:default/mallory`` (test tokens ``user-<name>``).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from insights_support import (
    GUEST,
    PAYMENTS,
    TOKEN,
    FakeUpstream,
    assert_error,
    bearer,
    guest_token,
    start_kernel,
)

from kernel.testing import KernelProcess, make_package, wait_for

POLICY = '''
"""Test package: ``user-<name>`` tokens, and a policy denying insights.service.read to mallory."""
import time

from kernel.api import ALLOWED, DENIED, Principal, Verified, hookimpl


class UserTokens:
    def verify(self, token):
        if not token.startswith("user-"):
            return None
        ref = "user:default/" + token[len("user-"):]
        return Verified(Principal("user", ref, ownership_refs=[ref]), time.time() + 60)


class Policy:
    async def handle(self, request, user):
        if request.permission.name == "insights.service.read" and user and user.user_entity_ref.endswith("/mallory"):
            return DENIED
        return ALLOWED


@hookimpl
def kernel_permission_policy():
    return Policy()


@hookimpl
def kernel_credential_verifiers(config):
    return [UserTokens()]
'''


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(delay=2.0).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[KernelProcess]:
    config = {"insights": {"externalApiUrl": upstream.url, "timeoutSeconds": 1}}
    k = start_kernel(tmp_path_factory.mktemp("insights-dev"), config)
    yield k
    k.stop()


@pytest.fixture(scope="module")
def user(dev: KernelProcess) -> dict[str, str]:
    return bearer(guest_token(dev))


def _get(kernel: KernelProcess, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{kernel.url}/api/insights{path}", headers=headers or {}, timeout=15)


# ---------------------------------------------------------------------------- the seed's "Validation"


def test_1_health_is_open(dev: KernelProcess) -> None:
    resp = _get(dev, "/health")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "ok"}


def test_2_services_without_a_token_is_401(dev: KernelProcess, upstream: FakeUpstream) -> None:
    before = len(upstream.hits)
    assert_error(_get(dev, "/services/payments-api"), 401, "AuthenticationError")
    assert len(upstream.hits) == before


def test_2b_services_with_a_service_token_is_403(dev: KernelProcess, upstream: FakeUpstream) -> None:
    before = len(upstream.hits)
    message = assert_error(_get(dev, "/services/payments-api", bearer(TOKEN)), 403, "NotAllowedError")
    assert "user" in message and "service" in message
    assert len(upstream.hits) == before


def test_3_services_with_a_user_token_answers_the_upstream_data(
    dev: KernelProcess, upstream: FakeUpstream, user: dict[str, str]
) -> None:
    resp = _get(dev, "/services/payments-api", user)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {**PAYMENTS, "requestedBy": GUEST}
    assert upstream.hits[-1] == "/v1/services/payments-api"
    # the logger service: who asked for what (the seed's logger.info with the actor)
    wait_for(lambda: "fetching insights" in dev.output() and GUEST in dev.output(), 10, dev.output)


def test_a_large_upstream_answer_arrives_whole(
    dev: KernelProcess, upstream: FakeUpstream, user: dict[str, str]
) -> None:
    resp = _get(dev, "/services/big", user)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["history"]) == 6000


@pytest.mark.parametrize("bad", ["Bad_Id", "UPPER", "-leading-dash", "a" * 64, "dots.here", "%20space", "x%00"])
def test_4_a_malformed_id_is_400_before_any_upstream_call(
    dev: KernelProcess, upstream: FakeUpstream, user: dict[str, str], bad: str
) -> None:
    before = len(upstream.hits)
    message = assert_error(_get(dev, f"/services/{bad}", user), 400, "InputError")
    assert "Invalid service id" in message
    assert len(upstream.hits) == before


def test_the_longest_valid_id_reaches_the_upstream(
    dev: KernelProcess, upstream: FakeUpstream, user: dict[str, str]
) -> None:
    longest = "a" + "-9" * 31
    assert len(longest) == 63
    assert_error(_get(dev, f"/services/{longest}", user), 404, "NotFoundError")
    assert upstream.hits[-1] == f"/v1/services/{longest}"


# ---------------------------------------------------------------------------- upstream errors


def test_an_unknown_service_is_404(dev: KernelProcess, user: dict[str, str]) -> None:
    message = assert_error(_get(dev, "/services/no-such-service", user), 404, "NotFoundError")
    assert "no-such-service" in message


@pytest.mark.parametrize(
    ("service_id", "says"),
    [
        ("broken", "HTTP 500"),
        ("slow", "did not answer within 1s"),
        ("not-json", "not a JSON object"),
        ("list", "not a JSON object"),
    ],
)
def test_a_failing_upstream_is_503(dev: KernelProcess, user: dict[str, str], service_id: str, says: str) -> None:
    message = assert_error(_get(dev, f"/services/{service_id}", user), 503, "ServiceUnavailableError")
    assert says in message
    assert "database is on fire" not in message  # the upstream's own words stay in the log


def test_a_stopped_upstream_is_503_then_recovers(
    dev: KernelProcess, upstream: FakeUpstream, user: dict[str, str]
) -> None:
    upstream.stop()
    try:
        message = assert_error(_get(dev, "/services/payments-api", user), 503, "ServiceUnavailableError")
        assert "unreachable" in message
        assert "127.0.0.1" not in message  # the internal address is logged, not answered
    finally:
        upstream.start()  # same port
    resp = _get(dev, "/services/payments-api", user)
    assert resp.status_code == 200, resp.text
    assert resp.json()["requestedBy"] == GUEST


def test_the_worker_survives_every_failure(dev: KernelProcess, upstream: FakeUpstream) -> None:
    status, body = dev.readiness()
    assert status == 200, body
    out = dev.output()  # the cause is logged, with the internal URL and status
    assert "insights upstream failed" in out and f"{upstream.url}/v1/services/broken" in out


# ---------------------------------------------------------------------------- production: not configured, permissions


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    root = tmp_path_factory.mktemp("insights-prod")
    site = make_package(
        root / "site",
        "zz-insights-test-policy",
        {"insights_test_policy": POLICY},
        {"zz-insights-test-policy": "insights_test_policy"},
    )
    k = start_kernel(root, {"permission": {"enabled": True}}, env="production", paths=[site])
    yield k
    k.stop()


def test_without_config_the_plugin_starts_and_answers_503_naming_the_key(prod: KernelProcess) -> None:
    assert _get(prod, "/health").json() == {"status": "ok"}
    resp = _get(prod, "/services/payments-api", bearer("user-alice"))
    assert "insights.externalApiUrl" in assert_error(resp, 503, "ServiceUnavailableError")
    assert "stack" not in resp.json()["error"]  # production: never a traceback
    wait_for(lambda: "insights.externalApiUrl is not configured" in prod.output(), 10, prod.output)


def test_the_permission_policy_can_deny_the_route(prod: KernelProcess) -> None:
    resp = _get(prod, "/services/payments-api", bearer("user-mallory"))
    assert "insights.service.read" in assert_error(resp, 403, "NotAllowedError")
    assert "stack" not in resp.json()["error"]


def test_production_errors_carry_no_stack(prod: KernelProcess) -> None:
    for path, headers, status in [
        ("/services/payments-api", {}, 401),
        ("/services/payments-api", bearer(TOKEN), 403),
        ("/services/Bad_Id", bearer("user-alice"), 400),
    ]:
        resp = _get(prod, path, headers)
        assert resp.status_code == status, resp.text
        assert "stack" not in resp.json()["error"]
