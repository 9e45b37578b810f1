"""The direction of imports is the architecture: checked, not hoped for.

- the contract modules import nothing of ours but each other, and no I/O (zmq, asyncio) or services;
- ``services/`` uses the kernel only through ``kernel.api``;
- only the composition roots (the CLI and the process entry points) import ``services``;
- no module in ``kernel/`` or ``services/`` is over 500 lines.

Every import counts, including those under ``TYPE_CHECKING`` (a type in a signature is a dependency
too) and imports by name: a string that is exactly the name of one of our modules (``"services.defaults"``,
``"kernel.x:attr"``), as handed to ``importlib`` or an entry point.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = [
    "api",
    "plugin",
    "service",
    "core_services",
    "hookspecs",
    "hooktypes",
    "errors",
    "protocol",
    "settings",
    "edge_settings",  # the HTTP edge's part of the settings schema (kernel/settings.py stays small)
    "worker_settings",  # backend.workers, for the same reason
    "gateway_settings",  # backend.gateway, for the same reason
    "tracing_settings",  # backend.tracing, for the same reason
    "permissions",
    "openapi_spec",  # OpenApi and Operation, what an author declares (kernel/openapi/ builds and serves them)
]
CONTRACT_MODULES = {f"kernel.{name}" for name in CONTRACT}
NO_IO = {"zmq", "asyncio", "services"}
MAX_LINES = 500
#: a string naming one of our modules (optionally ``:attribute``), as given to importlib or entry points
MODULE_NAME = re.compile(r"^((?:kernel|services)(?:\.[A-Za-z_]\w*)+)(?::[\w.]+)?$")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    return _imports_of(path.read_text(), _module_name(path), is_package=path.name == "__init__.py")


def _imports_of(source: str, this: str, *, is_package: bool = False) -> set[str]:
    """Absolute names of the modules that module ``this`` imports: relative imports resolved, and
    ``from package import submodule`` counted as ``package.submodule``."""
    package = this if is_package else this.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, this)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = MODULE_NAME.match(node.value)
            if named and _is_module(named.group(1)):
                names.add(named.group(1))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names if _is_module(f"{module}.{a.name}"))
    return names


def _ours(name: str) -> bool:
    return name.split(".")[0] in {"kernel", "services"}


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _is_composition_root(rel: str) -> bool:
    """The CLI (``kernel/cli.py`` or a ``kernel/cli/`` package), the process entry points, and the test
    toolkit (``kernel/testing/``: like the CLI, it ties gateway, worker boot and ``services`` together in
    one process, and its mocks wrap the real services)."""
    return rel in {"kernel/cli.py", "kernel/worker/__main__.py", "kernel/gateway/__main__.py"} or rel.startswith(
        ("kernel/cli/", "kernel/testing/")
    )


@pytest.mark.parametrize("name", CONTRACT)
def test_the_contract_imports_only_the_contract_and_does_no_io(name: str) -> None:
    path = ROOT / "kernel" / f"{name}.py"
    assert path.is_file(), f"contract module kernel/{name}.py is missing"
    imported = _imports(path)
    beyond = sorted(m for m in imported if _ours(m) and m != "kernel" and m not in CONTRACT_MODULES)
    assert beyond == [], f"kernel/{name}.py imports {beyond}: the contract may import only {sorted(CONTRACT_MODULES)}"
    io = sorted(m for m in imported if m.split(".")[0] in NO_IO)
    assert io == [], f"kernel/{name}.py imports {io}"


def _kernel_imports_beyond_api(path: Path) -> list[str]:
    return sorted(m for m in _imports(path) if m.split(".")[0] == "kernel" and m not in {"kernel", "kernel.api"})


def test_services_use_the_kernel_only_through_its_api() -> None:
    offenders = {_rel(path): bad for path in _files("services") if (bad := _kernel_imports_beyond_api(path))}
    assert offenders == {}, "services/ may import only kernel.api"


def test_only_composition_roots_import_services() -> None:
    offenders = {
        _rel(path): bad
        for path in _files("kernel")
        if not _is_composition_root(_rel(path))
        and (bad := sorted(m for m in _imports(path) if m.split(".")[0] == "services"))
    }
    roots = "kernel/cli.py or kernel/cli/, kernel/worker/__main__.py, kernel/gateway/__main__.py, kernel/testing/"
    assert offenders == {}, f"only the composition roots ({roots}) may import services"


def test_modules_stay_small() -> None:
    big = {
        _rel(path): n
        for path in _files("kernel") + _files("services")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}, f"modules over {MAX_LINES} lines"


def test_the_checks_see_every_kind_of_import() -> None:
    """The checks above find what they look for, so an empty result means something."""
    source = """
from typing import TYPE_CHECKING
import zmq.asyncio
from kernel import api
from .. import errors
from ..worker import runtime
from . import nothing_here
if TYPE_CHECKING:
    from services.cache import MemoryStore
PROVIDERS = ("kernel.testing:wait_for", "kernel.errors", "not kernel.testing", "kernel.no_such_module")
"""
    assert _imports_of(source, "kernel.gateway.app") == {
        "typing",
        "zmq.asyncio",
        "kernel",
        "kernel.api",
        "kernel.errors",
        "kernel.worker",
        "kernel.gateway",
        "services.cache",
        "kernel.testing",
    } | ({"kernel.worker.runtime"} if _is_module("kernel.worker.runtime") else set())
    assert _imports_of("from .app import x", "kernel.gateway", is_package=True) == {"kernel.gateway.app"}
    roots = ["kernel/cli.py", "kernel/cli/__init__.py", "kernel/cli/serve.py", "kernel/worker/__main__.py"]
    roots += ["kernel/testing/__init__.py", "kernel/testing/mocks.py"]
    assert all(_is_composition_root(r) for r in roots)
    assert not any(_is_composition_root(r) for r in ["kernel/cli_config.py", "kernel/worker/runtime.py"])
