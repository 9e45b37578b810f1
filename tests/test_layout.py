"""The direction of imports is the architecture: checked, not hoped for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: modules that compose a process (entry points) may import anything
COMPOSITION_ROOTS = {"kernel/cli.py", "kernel/cli_config.py", "kernel/worker/__main__.py", "kernel/gateway/__main__.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("name", ["api", "plugin", "service", "core_services", "hookspecs", "errors", "protocol"])
def test_the_contract_modules_do_no_io(name: str) -> None:
    imported = _imports(ROOT / "kernel" / f"{name}.py")
    assert not {m for m in imported if m.split(".")[0] in {"zmq", "asyncio", "services"}}, imported


def test_only_composition_roots_import_services() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in _modules("kernel")
        if str(p.relative_to(ROOT)) not in COMPOSITION_ROOTS
        and any(m == "services" or m.startswith("services.") for m in _imports(p))
    ]
    assert offenders == []


def test_services_use_only_the_plugin_api_of_the_kernel() -> None:
    allowed = {"kernel", "kernel.api", "kernel.config", "kernel.core_services", "kernel.errors", "kernel.hookspecs",
               "kernel.service"}  # fmt: skip
    for path in _modules("services"):
        kernel_imports = {m for m in _imports(path) if m.split(".")[0] == "kernel"}
        assert kernel_imports <= allowed, f"{path.name} imports {kernel_imports - allowed}"


def test_modules_stay_small() -> None:
    big = {str(p.relative_to(ROOT)): n for p in _modules("kernel") + _modules("services")
           if (n := len(p.read_text().splitlines())) > 700}  # fmt: skip
    assert big == {}
