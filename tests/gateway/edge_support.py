"""What the HTTP edge's tests share: the plugins they install and a kernel configured for one module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kernel.testing import KernelProcess, make_package
from tests import plugins
from tests.conftest import base_config


def edge_site(root: Path) -> Path:
    """``root`` with the echo plugin and the edge fixture plugin installed."""
    make_package(root, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    make_package(root, "kernel-test-edge", {"test_edge": plugins.EDGE_ANSWERS}, {"edge": "test_edge:plugin"})
    return root


def edge_config(**backend: Any) -> dict[str, Any]:
    """The tests' base config with ``backend`` keys added (the HTTP edge's)."""
    config = base_config()
    config["backend"].update(backend)  # type: ignore[attr-defined]
    return config


def json_lines(kernel: KernelProcess) -> Iterator[dict[str, Any]]:
    """The kernel's log lines that are JSON objects (``backend.logging.format: json``)."""
    for line in kernel.output().splitlines():
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue
