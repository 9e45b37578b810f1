"""``start_test_backend(mode="process")``: a real ``kernel serve`` accepting mock credentials; and the locks
that keep mock credentials out of every other ``kernel serve``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.metadata import distributions

import pytest
import pytest_asyncio

from kernel.testing import MockRootConfig, ProcessBackend, TestDatabases, mock_credentials, start_test_backend
from kernel.testing.credentials_hook import (
    MOCK_CREDENTIALS_ENV,
    kernel_credential_verifiers,
    mock_credentials_enabled,
)
from tests.conftest import assert_error_shape
from tests.testing import notes


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend() -> AsyncIterator[ProcessBackend]:
    databases = TestDatabases()
    db = await databases.init("sqlite")
    config = {"backend": {"database": db.config}, "notes": {"greeting": "from a real kernel"}}
    async with start_test_backend([notes.plugin], mode="process", config=config) as b:
        assert isinstance(b, ProcessBackend)
        yield b
    await databases.close()


in_module_loop = pytest.mark.asyncio(loop_scope="module")


@in_module_loop
async def test_mock_credentials_reach_a_real_worker(backend: ProcessBackend) -> None:
    assert backend.url.startswith("http://127.0.0.1:") and backend.kernel.proc is not None
    jane = mock_credentials.user("user:default/jane")
    body = (await backend.client.get("/api/notes/whoami", headers=jane.header())).json()
    assert (body["type"], body["subject"], body["ownership_refs"]) == (
        "user",
        "user:default/jane",
        ["user:default/jane"],
    )
    service = (await backend.client.get("/api/notes/whoami", headers=mock_credentials.service.header())).json()
    assert service["subject"] == "external:test-service"
    greeting = await backend.client.get("/api/notes/greeting", headers=jane.header())
    assert greeting.json() == {"greeting": "from a real kernel"}


@in_module_loop
async def test_the_real_barrier_and_error_shape(backend: ProcessBackend) -> None:
    assert_error_shape(await backend.client.get("/api/notes/whoami"), 401, "AuthenticationError")
    invalid = await backend.client.get("/api/notes/whoami", headers=mock_credentials.user.invalid_header())
    assert_error_shape(invalid, 401, "AuthenticationError")
    restricted = mock_credentials.service("external:ci", ["catalog"]).header()
    assert_error_shape(await backend.client.get("/api/notes/whoami", headers=restricted), 403, "NotAllowedError")
    users_only = await backend.client.get("/api/notes/users-only", headers=mock_credentials.service.header())
    assert_error_shape(users_only, 403, "NotAllowedError")
    created = await backend.client.post("/api/notes/notes", json={"body": "x"}, headers=mock_credentials.user.header())
    assert created.status_code == 201, created.text
    assert "mock credentials are accepted" in backend.kernel.output()


async def test_services_cannot_cross_into_a_real_kernel() -> None:
    with pytest.raises(TypeError, match="config="):
        await start_test_backend([notes.plugin], mode="process", services=[object()])


def test_mock_credentials_need_the_environment_and_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    on = MockRootConfig({"backend": {"auth": {"mockCredentials": True}}})
    off = MockRootConfig({})
    assert not mock_credentials_enabled(on, {})
    assert not mock_credentials_enabled(off, {MOCK_CREDENTIALS_ENV: "1"})
    assert mock_credentials_enabled(on, {MOCK_CREDENTIALS_ENV: "1"})
    monkeypatch.delenv(MOCK_CREDENTIALS_ENV, raising=False)
    assert kernel_credential_verifiers(config=on) == []
    monkeypatch.setenv(MOCK_CREDENTIALS_ENV, "1")
    assert kernel_credential_verifiers(config=off) == []
    assert len(kernel_credential_verifiers(config=on)) == 1


def test_no_installed_package_declares_the_mock_credential_hook() -> None:
    """The first lock: only ``start_test_backend``'s throw-away package on its kernel's path names it."""
    declared = [
        (dist.metadata["Name"], ep.value)
        for dist in distributions()
        for ep in dist.entry_points
        if "kernel.testing.credentials_hook" in ep.value
    ]
    assert declared == []
