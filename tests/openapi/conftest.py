"""One kernel for the OpenAPI tests: the ``documented`` plugin (a validated document) beside ``echo`` (none)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kernel.testing import KernelProcess, make_package
from tests import plugins
from tests.conftest import base_config


@pytest.fixture(scope="session")
def documented_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("openapi-site")
    make_package(
        root,
        "kernel-test-documented",
        {"test_documented": plugins.DOCUMENTED},
        {"documented": "test_documented:plugin"},
    )
    make_package(root, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    return root


@pytest.fixture(scope="session")
def kernel(documented_site: Path) -> Iterator[KernelProcess]:
    k = KernelProcess(base_config(), paths=[documented_site]).start(timeout=30)
    yield k
    k.stop()


@pytest.fixture
def client(kernel: KernelProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kernel.url, timeout=20) as c:
        yield c
