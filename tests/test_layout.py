"""The direction of imports is the architecture: checked, not hoped for.

- the contract modules import nothing of ours but each other, and no I/O (zmq, asyncio) or services;
- ``services/`` uses the kernel only through ``kernel.api``;
- only the composition roots (the CLI and the process entry points) import ``services``;
- no module in ``kernel/`` or ``services/`` is over 500 lines;
- no import cycles in ``kernel/``, ``services/`` or ``benchmarks/``, even hidden ones (a lazy import in a
  function, a ``TYPE_CHECKING`` import or a module named in a string back up the tree closes one too).

Every import counts, including those under ``TYPE_CHECKING`` (a type in a signature is a dependency
too) and imports by name: a string that is exactly the name of one of our modules (``"services.defaults"``,
``"kernel.x:attr"``), as handed to ``importlib`` or an entry point (a logger's name is no import).
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
    "scope_keys",  # the ASGI scope keys the gateway and the worker set (a leaf: it imports nothing)
    "permissions",
    "openapi_spec",  # OpenApi and Operation, what an author declares (kernel/openapi/ builds and serves them)
    "plugin_paths",  # where each plugin is served (getPath), which discovery, the gateway and the worker share
    "url_reading",  # what the url_reader service answers, and the readers packages add
]
#: the settings schema is a package (a module per section): every module of it is in the contract
CONTRACT += ["settings", *(f"settings.{p.stem}" for p in sorted((ROOT / "kernel" / "settings").glob("[!_]*.py")))]
CONTRACT_MODULES = {f"kernel.{name}" for name in CONTRACT}
NO_IO = {"zmq", "asyncio", "kernel_services"}
MAX_LINES = 500
#: a string naming one of our modules (optionally ``:attribute``), as given to importlib or entry points
MODULE_NAME = re.compile(r"^((?:kernel|kernel_services|kernel_benchmarks)(?:\.[A-Za-z_]\w*)+)(?::[\w.]+)?$")
#: the trees whose modules must import one another without a cycle
ACYCLIC = ["kernel", "services", "benchmarks"]
#: the name each of those folders is imported by (pyproject.toml's package-dir: no generic top-level name)
PACKAGES = {"kernel": "kernel", "services": "kernel_services", "benchmarks": "kernel_benchmarks"}
FOLDERS = {name: folder for folder, name in PACKAGES.items()}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    parts = (PACKAGES.get(parts[0], parts[0]), *parts[1:])
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    first, *rest = name.split(".")
    base = ROOT.joinpath(FOLDERS.get(first, first), *rest)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    return _imports_of(path.read_text(), _module_name(path), is_package=path.name == "__init__.py")


def _imports_of(source: str, this: str, *, is_package: bool = False) -> set[str]:
    """Absolute names of the modules that module ``this`` imports: relative imports resolved, and
    ``from package import submodule`` counted as ``package.submodule``."""
    package = this if is_package else this.rpartition(".")[0]
    names: set[str] = set()
    tree = ast.parse(source, this)
    loggers = {id(node.args[0]) for node in ast.walk(tree) if _is_get_logger(node)}  # "kernel.gateway" is a logger
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in loggers:
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


def _is_get_logger(node: ast.AST) -> bool:
    """A call ``getLogger(<name>, ...)`` or ``logging.getLogger(<name>, ...)``."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    return (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")) == "getLogger"


def _ours(name: str) -> bool:
    return name.split(".")[0] in FOLDERS


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
    base = ROOT / "kernel" / name.replace(".", "/")
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    assert path.is_file(), f"contract module kernel.{name} is missing"
    imported = _imports(path)
    beyond = sorted(m for m in imported if _ours(m) and m != "kernel" and m not in CONTRACT_MODULES)
    assert beyond == [], f"{_rel(path)} imports {beyond}: the contract may import only {sorted(CONTRACT_MODULES)}"
    io = sorted(m for m in imported if m.split(".")[0] in NO_IO)
    assert io == [], f"{_rel(path)} imports {io}"


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
        and (bad := sorted(m for m in _imports(path) if m.split(".")[0] == "kernel_services"))
    }
    roots = "kernel/cli.py or kernel/cli/, kernel/worker/__main__.py, kernel/gateway/__main__.py, kernel/testing/"
    assert offenders == {}, f"only the composition roots ({roots}) may import services"


def test_the_folders_are_imported_by_their_package_names() -> None:
    """``services`` and ``benchmarks`` are folders here, not import names: the wheel has no such packages."""
    generic = {"services", "benchmarks"}
    offenders = {
        _rel(path): bad
        for folder in [*ACYCLIC, "tests", "contrib_plugins"]
        for path in _files(folder)
        if (bad := sorted(m for m in _imports(path) if m.split(".")[0] in generic))
    }
    assert offenders == {}, "import kernel_services / kernel_benchmarks (pyproject.toml: package-dir)"


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


def _import_graph() -> dict[str, set[str]]:
    """Each module of ``ACYCLIC`` (a package's ``__init__`` is the package) and those of ours it imports."""
    paths = {_module_name(p): p for folder in ACYCLIC for p in _files(folder)}

    def owner(name: str) -> str:  # ``kernel.x.attr`` or a folder without ``__init__``: the module that holds it
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name

    return {
        module: {o for name in _imports(path) if _ours(name) and (o := owner(name)) and o != module}
        for module, path in paths.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle: each group of modules that reach one another (a strongly connected component,
    Tarjan's), as one loop through its first module, ``[a, b, ..., a]``, then the group's other members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    loops = [_loop(graph, set(group)) for group in groups]
    return [loop + [m for m in group if m not in loop] for loop, group in zip(loops, groups, strict=True)]


def _loop(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest loop through the first module of ``group`` inside it, as ``[a, b, ..., a]``."""
    start = min(group)
    came: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in came:
                    came[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{sorted(group)} is no cycle")


def test_no_import_cycles() -> None:
    """No module reaches itself through the imports of ours, whatever their kind (see the module docstring)."""
    graph = _import_graph()
    assert {"kernel.supervisor.supervisor", "kernel_services.database", "kernel_benchmarks.cli"} <= set(
        graph
    )  # it saw them
    found = [" -> ".join(c[: c.index(c[0], 1) + 1]) + _others(c) for c in _cycles(graph)]
    assert found == [], "import cycles; move the shared piece into a leaf module:\n  " + "\n  ".join(found)


def _others(cycle: list[str]) -> str:
    rest = cycle[cycle.index(cycle[0], 1) + 1 :]
    return f" (with {', '.join(rest)})" if rest else ""


def test_the_cycle_check_sees_hidden_cycles() -> None:
    """A lazy import, a ``TYPE_CHECKING`` import and a module named in a string each close a cycle; a
    logger's name does not."""
    sources = {  # made-up sources under real module names (a name in a string counts only if it is a module)
        "kernel.errors": "from kernel.plugin import x\n",
        "kernel.plugin": "def f():\n    from kernel import errors\n",  # lazy, through the package's name
        "kernel.protocol": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kernel.settings import S\n",
        "kernel.settings": "PROVIDER = 'kernel.protocol:thing'\n",
        "kernel.api": "import logging\nlog = logging.getLogger('kernel.service')\n",
        "kernel.service": "import kernel.api\n",
    }
    graph = {m: {n for n in _imports_of(s, m) if n in sources and n != m} for m, s in sources.items()}
    assert sorted(_cycles(graph)) == [
        ["kernel.errors", "kernel.plugin", "kernel.errors"],
        ["kernel.protocol", "kernel.settings", "kernel.protocol"],
    ]
    # one group of four: the shortest loop through its first module, then the others caught in it
    assert _cycles({"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": {"b"}}) == [["a", "b", "c", "a", "d"]]
