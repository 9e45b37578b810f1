"""The plugin author's test toolkit (Backstage's ``@backstage/backend-test-utils``), and the kernel's own helpers.

For plugin tests (see the README, "Testing a plugin"):

- ``start_test_backend(features=[plugin], services=[...], config={...})``: the plugin's real routes behind
  the real gateway (paths, auth policies, credentials, error shape), in the test's process
  (``kernel.testing.backend``), or in a real ``kernel serve`` with ``mode="process"``;
- ``mock_services``: a stand-in, a factory and a recording mock of every core service (``mocks``);
- ``mock_credentials``: users, limited users, services, none; tokens and headers (``credentials``);
- ``TestDatabases`` / ``TestCaches``: fresh databases and caches per test (``databases``), also
  as the pytest fixtures ``test_database`` / ``test_cache`` (``pytest_plugin``, entry point ``pytest11``).

For tests with real processes: ``KernelProcess``, ``make_package``, ``wait_for``, ``wait_for_async``,
``stays``, ``RecordingLogger``, ``free_port`` (``processes``).

A composition root, like the CLI: it ties the gateway, the worker's boot and ``services`` together.
Nothing loads on import (the pytest plugin lives here): each module when one of its names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kernel.errors import BootError
    from kernel.testing.backend import InProcessBackend, TestBackend, start_test_backend
    from kernel.testing.credentials import MockCredentials, mock_credentials
    from kernel.testing.databases import TestCache, TestCaches, TestDatabase, TestDatabases
    from kernel.testing.fakes import (
        MockAuth,
        MockHttpAuth,
        MockPermissions,
        MockRootConfig,
        MockScheduler,
        MockUserInfo,
    )
    from kernel.testing.mocks import mock_services
    from kernel.testing.process_backend import ProcessBackend
    from kernel.testing.processes import (
        READINESS,
        KernelProcess,
        Message,
        RecordingLogger,
        free_port,
        make_package,
        stays,
        wait_for,
        wait_for_async,
    )
    from kernel.testing.recording import Call
    from kernel.testing.websockets import WebSocketDenialResponse, WebSocketSession

__all__ = [
    "READINESS",
    "BootError",
    "Call",
    "InProcessBackend",
    "KernelProcess",
    "Message",
    "MockAuth",
    "MockCredentials",
    "MockHttpAuth",
    "MockPermissions",
    "MockRootConfig",
    "MockScheduler",
    "MockUserInfo",
    "ProcessBackend",
    "RecordingLogger",
    "TestBackend",
    "TestCache",
    "TestCaches",
    "TestDatabase",
    "TestDatabases",
    "WebSocketDenialResponse",
    "WebSocketSession",
    "free_port",
    "make_package",
    "mock_credentials",
    "mock_services",
    "start_test_backend",
    "stays",
    "wait_for",
    "wait_for_async",
]

_LAZY = {
    "BootError": "kernel.errors",
    "MockCredentials": "credentials",
    "mock_credentials": "credentials",
    "READINESS": "processes",
    "KernelProcess": "processes",
    "Message": "processes",
    "RecordingLogger": "processes",
    "free_port": "processes",
    "make_package": "processes",
    "stays": "processes",
    "wait_for": "processes",
    "wait_for_async": "processes",
    "InProcessBackend": "backend",
    "TestBackend": "backend",
    "start_test_backend": "backend",
    "TestCache": "databases",
    "TestCaches": "databases",
    "TestDatabase": "databases",
    "TestDatabases": "databases",
    "MockAuth": "fakes",
    "MockHttpAuth": "fakes",
    "MockPermissions": "fakes",
    "MockRootConfig": "fakes",
    "MockScheduler": "fakes",
    "MockUserInfo": "fakes",
    "mock_services": "mocks",
    "WebSocketDenialResponse": "websockets",
    "WebSocketSession": "websockets",
    "ProcessBackend": "process_backend",
    "Call": "recording",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kernel.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module if "." in module else f"kernel.testing.{module}"), name)
