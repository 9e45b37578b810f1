"""Shared fixtures: real plugin packages on a private site dir, and running kernels.

Also how the suite runs: under pytest-xdist (``scripts/test``: ``-n <N> --dist loadfile``) the units
and their order are ``tests/scheduling.py``'s; tests that start processes are marked ``slow``
(``tests/slow.py``); under CI (``KERNEL_CI=1``) a skip is a failure unless ``tests/ci_skips.py`` allows it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from kernel.plugin import BackendPlugin
from kernel.testing import KernelProcess, make_package
from tests import ci_skips, plugins, scheduling, slow

#: fixture plugin sources: copied into site dirs by make_package, never collected (fixture_plugin imports one
#: under a private name for an in-process test)
collect_ignore = ["fixtures"]

#: the cgroups of every kernel the suite starts (``KernelProcess``) are ``ki-suite-<pid>`` (``cgroupName``), known
#: as the tests' own; tests/isolation/ gives its kernels names of their own
os.environ.setdefault("KERNEL_TEST_CGROUP_NAME", "ki-suite")

TOKEN = "s3cret-token-for-tests"
RESTRICTED_TOKEN = "restricted-token-for-other-only"


def pytest_configure(config: pytest.Config) -> None:
    if ci_skips.enabled():  # a plugin, not this conftest's hook: it must see contrib_plugins/*/tests too
        config.pluginmanager.register(ci_skips.SkipGuard(), "kernel-ci-skips")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow.mark(items)  # every item of the session, contrib_plugins/*/tests too


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None
    return scheduling.FileScheduling(config, log)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of installed-looking plugin packages: echo and other."""
    root = tmp_path_factory.mktemp("site")
    make_package(root, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    make_package(root, "kernel-test-other", {"test_other": plugins.OTHER}, {"other": "test_other:plugin"})
    return root


def fixture_module(path: Path) -> ModuleType:
    """Fixture module ``path`` imported once, as ``kernel_test_fixture_<stem>``: the name a real kernel's
    package gives it is left free, so the in-process tests never shadow a kernel's view of the same fixture."""
    name = f"kernel_test_fixture_{path.stem}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def fixture_plugin(path: Path) -> BackendPlugin:
    """The ``plugin`` of fixture module ``path`` (``tests.plugins.ECHO``...), for ``start_test_backend``."""
    plugin = fixture_module(path).plugin
    assert isinstance(plugin, BackendPlugin), f"{path}: plugin is {plugin!r}"
    return plugin


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
