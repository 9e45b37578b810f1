"""Shared fixtures: real plugin packages on a private site dir, and running kernels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kernel.testing import KernelProcess, make_package
from tests import plugins

#: fixture plugin sources: copied into site dirs by make_package, never collected or imported from there
collect_ignore = ["fixtures"]

TOKEN = "s3cret-token-for-tests"
RESTRICTED_TOKEN = "restricted-token-for-other-only"


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of installed-looking plugin packages: echo and other."""
    root = tmp_path_factory.mktemp("site")
    make_package(root, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    make_package(root, "kernel-test-other", {"test_other": plugins.OTHER}, {"other": "test_other:plugin"})
    return root


def base_config(**gateway: object) -> dict[str, object]:
    return {
        "backend": {
            "gateway": {"requestTimeout": 3, **gateway},
            "workers": {"heartbeatInterval": 0.2, "heartbeatTimeout": 3, "shutdownGrace": 5, "killTimeout": 2},
            "auth": {
                "externalAccess": [
                    {"type": "static", "options": {"token": TOKEN, "subject": "ci-bot"}},
                    {
                        "type": "static",
                        "options": {"token": RESTRICTED_TOKEN, "subject": "other-only"},
                        "accessRestrictions": [{"plugin": "other"}],
                    },
                ]
            },
        }
    }


@pytest.fixture(scope="module")
def kernel(site: Path) -> Iterator[KernelProcess]:
    """One kernel serving echo and other, shared by a test module."""
    k = KernelProcess(base_config(), paths=[site]).start()
    yield k
    k.stop()


@pytest.fixture
def client(kernel: KernelProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kernel.url, timeout=20) as c:
        yield c


def assert_error_shape(resp: httpx.Response, status: int, name: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "request", "response"}
    assert body["error"]["name"] == name
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["response"] == {"statusCode": status}
    assert body["request"]["method"] == resp.request.method
    assert body["request"]["url"] == resp.request.url.raw_path.decode()
    assert "stack" not in body["error"]  # production mode: no stack traces
    return body
