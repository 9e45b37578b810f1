"""The docs in ``docs/`` run: every fenced code block is checked by its language.

- ```python: each page's blocks are written to a fresh folder (a block whose first line is a path
  comment, ``# kernel_todo/__init__.py``, at that path) and run there by one pytest process per page:
  a block is imported (its top-level code runs), its ``test_*`` functions run as tests, and a block
  without tests is started behind ``start_test_backend`` (``tests/docs_harness.py`` says how). The
  ``kernel new`` commands of the page's ```sh blocks run there first, so a page can build on their output.
  Each block must have passed at least one test.
- ```yaml: validated as ``kernel config check`` does (the kernel's settings, the declared keys, a
  plugin's key by its ``config_schema``), in the same pytest process as the page's python blocks;
- ```toml: parsed; its ``kernel.plugins`` entry points must name the page's plugins;
- ```sh: each ``kernel ...`` command parses with the real ``kernel`` CLI and ``kernel <command> --help``
  exits 0; each ``scripts/...`` it names exists; nothing else is run (no servers);
- ```json: parses.

A block that cannot run says so in its info string (```python no-run) and in a comment on its first
line; there are few. Also: ``docs/configuration.md`` is what ``scripts/config-reference`` prints, and
every setting it lists is read at that key; every hook and every core service has its section with an
example; the pages link to each other and the README points to them.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib.machinery
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kernel import hookspecs
from kernel.config import Config
from kernel.core_services import core_services
from kernel.errors import ConfigError
from kernel.settings import read_settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HARNESS = Path(__file__).with_name("docs_harness.py")
PAGES = sorted(DOCS.glob("*.md"))
#: the languages a block may have, each checked as the module doc says
LANGUAGES = {"python", "yaml", "toml", "sh", "json"}
#: blocks marked ```<lang> no-run, at most (keep them rare: every block should run)
MAX_NO_RUN = 3
FENCE = re.compile(r"^(?P<fence>```+)(?P<info>[^`]*)$")
PATH_COMMENT = re.compile(r"^# (?P<path>[\w./-]+\.(?:py|toml))\s*$")
#: seconds one page's pytest run may take (a few real kernels at most)
PAGE_TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    flags: tuple[str, ...]
    text: str

    @property
    def id(self) -> str:
        return f"{self.page}:L{self.line}"

    @property
    def runs(self) -> bool:
        return "no-run" not in self.flags

    @property
    def path(self) -> str | None:
        """The file the block is (``# kernel_todo/__init__.py`` on its first line), if it names one."""
        first = self.text.split("\n", 1)[0]
        m = PATH_COMMENT.match(first)
        return m.group("path") if m else None


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page; an unclosed fence is an error."""
    found: list[Block] = []
    lines = page.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start, fence = i, m.group("fence")
        info = m.group("info").split()
        i += 1
        while i < len(lines) and lines[i].rstrip() != fence:
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page.name}:L{start + 1}: the block never ends")
        language = info[0] if info else ""
        text = "\n".join(lines[start + 1 : i]) + "\n"
        found.append(Block(page.name, start + 1, language, tuple(info[1:]), text))
        i += 1
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]


def _of(language: str) -> list[Block]:
    return [b for b in BLOCKS if b.language == language and b.runs]


def test_the_docs_exist_and_have_blocks() -> None:
    names = {p.name for p in PAGES}
    wanted = {"index.md", "getting-started.md", "writing-a-plugin.md", "services.md", "testing.md"}
    assert wanted | {"configuration.md", "hooks.md"} <= names
    assert len(_of("python")) >= 20


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_every_block_names_a_checked_language(block: Block) -> None:
    assert block.language in LANGUAGES, f"{block.id}: ```{block.language}: use one of {sorted(LANGUAGES)}"


def test_blocks_that_do_not_run_are_rare_and_say_why() -> None:
    skipped = [b for b in BLOCKS if not b.runs]
    assert len(skipped) <= MAX_NO_RUN, [b.id for b in skipped]
    for block in skipped:
        first = block.text.split("\n", 1)[0]
        assert re.match(r"^(#|//) not run: \S", first), f"{block.id}: say why on its first line (# not run: ...)"


# ---------------------------------------------------------------------------- python, yaml, toml: per page


def _module_name(folder: Path, path: str) -> str:
    """The name pytest imports a file by: its packages (folders with ``__init__.py``) and its name."""
    file = folder / path
    parts = [] if file.name == "__init__.py" else [file.stem]
    parent = file.parent
    while (parent / "__init__.py").exists() and parent != folder:
        parts.insert(0, parent.name)
        parent = parent.parent
    return ".".join(parts)


def _has_tests(text: str) -> bool:
    tree = ast.parse(text)
    return any(
        (isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_"))
        or (isinstance(n, ast.ClassDef) and n.name.startswith("Test"))
        for n in tree.body
    )


def _kernel_new(page: str, folder: Path) -> None:
    """Run the page's ``kernel new`` commands in ``folder``, as a reader would in theirs."""
    for block in [b for b in _of("sh") if b.page == page]:
        for command in shell_commands(block.text):
            if _is_kernel(command) and command[1:2] == ["new"]:
                done = subprocess.run(
                    [sys.executable, "-m", "kernel.cli", *command[1:]],
                    cwd=folder,
                    capture_output=True,
                    text=True,
                    stdin=subprocess.DEVNULL,
                    timeout=60,
                )
                assert done.returncode == 0, f"{block.id}: {shlex.join(command)}\n{done.stdout}{done.stderr}"


@dataclass(frozen=True)
class PageRun:
    folder: Path
    files: dict[int, str]  # python block line -> file written
    returncode: int
    output: str


def _write_page(page: str, folder: Path) -> tuple[dict[int, str], dict[str, Any]]:
    """Write the page's blocks into ``folder`` (after its ``kernel new`` commands); the files and the manifest."""
    _kernel_new(page, folder)
    files: dict[int, str] = {}
    manifest: dict[str, Any] = {"page": page, "python": [], "yaml": [], "toml": []}
    stem = Path(page).stem.replace("-", "_")
    blocks = [b for b in BLOCKS if b.page == page and b.runs]
    for block in blocks:
        if block.language == "python":
            path = block.path or f"{stem}_L{block.line}.py"
            assert path not in files.values(), f"{block.id}: {path} is written by another block of {page}"
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
            files[block.line] = path
        elif block.language in ("yaml", "toml"):
            manifest[block.language].append({"line": block.line, "text": block.text})
    for block in blocks:
        if block.language == "python":
            module = _module_name(folder, files[block.line])
            manifest["python"].append({"line": block.line, "module": module, "tests": _has_tests(block.text)})
    return files, manifest


def _run_page(page: str, folder: Path) -> PageRun:
    files, manifest = _write_page(page, folder)
    (folder / "docs_manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.copyfile(HARNESS, folder / "docs_harness.py")
    roots = sorted({".", *(str(p.parent.relative_to(folder)) for p in folder.rglob("pyproject.toml"))})
    (folder / "pytest.ini").write_text(
        "[pytest]\n"
        "python_files = *.py\n"
        f"pythonpath = {' '.join(roots)}\n"
        "asyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
        "junit_family = xunit1\n"
        f"timeout = {PAGE_TIMEOUT}\n"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--junitxml=report.xml",
            "-rfEs",
            "--continue-on-collection-errors",
            "--durations=5",
            "-p",
            "no:hypothesispytest",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT * 2,
    )
    return PageRun(folder, files, done.returncode, done.stdout + done.stderr)


RUN_PAGES = sorted({b.page for b in BLOCKS if b.runs and b.language in ("python", "yaml", "toml")})


def _by_cost() -> list[str]:
    """The pages, those that start real processes (kernels, the ``kernel`` command) first."""
    cost = {
        page: sum((DOCS / page).read_text().count(s) for s in ('mode="process"', "subprocess.")) for page in RUN_PAGES
    }
    return sorted(RUN_PAGES, key=lambda page: -cost[page])


@pytest.fixture(scope="module")
def page_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[PageRun]]]:
    """The run of every page whose test was selected, two at a time (the pages are independent), started at
    the first test that asks, in the order the tests wait for them (``_by_cost``): each test then waits
    about as long as its own page takes, never behind pages it does not need."""
    chosen = {
        item.callspec.params["page"]
        for item in request.session.items
        if item.name.startswith("test_the_blocks_of_each_page_run[") and hasattr(item, "callspec")
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {
            page: pool.submit(_run_page, page, tmp_path_factory.mktemp(Path(page).stem))
            for page in _by_cost()
            if page in chosen
        }
        yield runs
        for future in runs.values():
            future.cancel()


def _outcomes(report: Path) -> list[tuple[str, str, str]]:
    """``(file, test name, outcome)`` of every test in a JUnit report (xunit1: with ``file``)."""
    out = []
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        out.append((case.get("file", ""), case.get("name", ""), outcome))
    return out


@pytest.mark.parametrize("page", _by_cost())
def test_the_blocks_of_each_page_run(page: str, page_runs: dict[str, Future[PageRun]]) -> None:
    run = page_runs[page].result()
    assert run.returncode == 0, f"{page}: the blocks written to {run.folder}:\n{run.files}\n\n{run.output}"
    outcomes = _outcomes(run.folder / "report.xml")
    passed = {(file, name) for file, name, outcome in outcomes if outcome == "passed"}
    for block in [b for b in BLOCKS if b.page == page and b.runs]:
        if block.language == "python":
            own = any(file == run.files[block.line] for file, _ in passed)
            booted = any(name.endswith(f"[{block.id}]") for _, name in passed)
            assert own or booted, f"{block.id}: no test of it passed (all skipped?)\n{run.output}"
        elif block.language in ("yaml", "toml"):
            assert any(name == f"test_{block.language}_block[{block.id}]" for _, name in passed), block.id


def test_python_blocks_follow_the_house_style(tmp_path: Path) -> None:
    """``ruff check`` and ``ruff format --check`` with the project's settings, on every python block."""
    for block in _of("python"):
        (tmp_path / f"{Path(block.page).stem.replace('-', '_')}_L{block.line}.py").write_text(block.text)
    config = ["--config", str(ROOT / "pyproject.toml")]
    for args in (["check", "--no-cache", *config], ["format", "--check", "--no-cache", *config]):
        done = subprocess.run([sys.executable, "-m", "ruff", *args, str(tmp_path)], capture_output=True, text=True)
        assert done.returncode == 0, f"ruff {args[0]} (the file names give page and line):\n{done.stdout}{done.stderr}"


# ---------------------------------------------------------------------------- sh


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of a shell snippet (split at pipes, ``&&``, ``;``, ``$( )``), comments dropped."""
    commands: list[list[str]] = []
    for line in text.replace("\\\n", " ").split("\n"):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token and all(c in "();<>|&" for c in token):
                commands.append(current)
                current = []
            elif not current and re.match(r"^\w+=", token):
                continue  # VAR=value before a command
            elif not (token == "$" and not current):
                current.append(token)
        commands.append(current)
    return [c for c in commands if c and c[0] != "export"]


def _is_kernel(command: list[str]) -> bool:
    return Path(command[0]).name == "kernel"


@functools.cache
def _kernel_parser() -> argparse.ArgumentParser:
    """The ``kernel`` command's parser, as ``kernel.cli.main`` builds it from the installed packages'
    ``kernel_cli_commands`` (built here so that parsing a command line never runs it)."""
    from kernel.registry import in_registration_order, load_registry

    parser = argparse.ArgumentParser(prog="kernel")
    parser.add_argument("--version", action="version", version="kernel")
    sub = parser.add_subparsers(dest="command", required=True)
    manager = load_registry().manager
    assert manager is not None
    for command in in_registration_order(manager.hook.kernel_cli_commands()):
        command.arguments(sub.add_parser(command.name, help=command.help))
    return parser


def _subcommand_path(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """The leading arguments that name (nested) subcommands: ``config check`` of ``config check --config x``."""
    path: list[str] = []
    for arg in args:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or arg not in actions[0].choices:
            break
        path.append(arg)
        parser = actions[0].choices[arg]
    return path


#: run in a fresh interpreter: ``kernel <path> --help`` for each path given as JSON, exit codes and output as JSON
HELP_SCRIPT = """
import contextlib, io, json, sys
from kernel.cli import main
results = {}
for path in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main([*path, "--help"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    results[" ".join(path)] = [code, out.getvalue()]
print(json.dumps(results))
"""


def _kernel_args(block: Block) -> Iterator[tuple[list[str], list[str]]]:
    """``(command, arguments)`` of each ``kernel`` command of a block."""
    for command in shell_commands(block.text):
        if _is_kernel(command):
            yield command, command[1:]


@functools.cache
def _help_exit_codes() -> dict[str, tuple[int, str]]:
    """``kernel <subcommand> --help`` of every subcommand the docs name, in one fresh process (the real CLI)."""
    parser = _kernel_parser()
    paths = {tuple(_subcommand_path(parser, args)) for b in _of("sh") for _, args in _kernel_args(b)}
    done = subprocess.run(
        [sys.executable, "-c", HELP_SCRIPT, json.dumps(sorted(paths))], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return {path: (code, output) for path, (code, output) in json.loads(done.stdout.splitlines()[-1]).items()}


@pytest.mark.parametrize("block", _of("sh"), ids=lambda b: b.id)
def test_the_commands_of_each_sh_block_exist(block: Block) -> None:
    commands = shell_commands(block.text)
    assert commands, f"{block.id}: no command"
    for command, args in _kernel_args(block):
        parser = _kernel_parser()
        try:
            with contextlib.redirect_stderr(io.StringIO()) as err:
                parser.parse_args(args)
        except SystemExit as exc:
            raise AssertionError(f"{block.id}: {shlex.join(command)}: exit {exc.code}: {err.getvalue()}") from None
        path = " ".join(_subcommand_path(parser, args))
        code, output = _help_exit_codes()[path]
        assert code == 0, f"{block.id}: kernel {path} --help exited {code}:\n{output}"
    for command in commands:
        if command[0].startswith("scripts/"):
            script = ROOT / command[0]
            assert script.is_file() and os.access(script, os.X_OK), f"{block.id}: {command[0]} is not a script"


def test_shell_commands_are_split_as_a_shell_would() -> None:
    text = 'export T=$(curl -s x | python3 -c "a; b")  # comment\nX=1 .venv/bin/kernel plugins --url u && ls\n'
    assert shell_commands(text) == [
        ["curl", "-s", "x"],
        ["python3", "-c", "a; b"],
        [".venv/bin/kernel", "plugins", "--url", "u"],
        ["ls"],
    ]


# ---------------------------------------------------------------------------- json


@pytest.mark.parametrize("block", _of("json"), ids=lambda b: b.id)
def test_json_blocks_parse(block: Block) -> None:
    json.loads(block.text)


# ---------------------------------------------------------------------------- the configuration reference


@functools.cache
def _config_reference() -> ModuleType:
    """``scripts/config-reference``, imported (it has no ``.py``: its loader is named explicitly)."""
    path = ROOT / "scripts" / "config-reference"
    loader = importlib.machinery.SourceFileLoader("config_reference", str(path))
    spec = importlib.util.spec_from_loader("config_reference", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    loader.exec_module(module)
    return module


def test_the_configuration_reference_is_generated_from_the_settings() -> None:
    generated = _config_reference().render()
    assert (DOCS / "configuration.md").read_text() == generated, "run scripts/config-reference --write"


#: settings whose list entry is checked as a whole first: a wrong value is an error naming the list
CHECKED_BY_THEIR_LIST = {"backend.auth.externalAccess[].accessRestrictions[].plugin"}


def _probe(key: str, kind: str, required: dict[str, list[str]]) -> dict[str, Any]:
    """A config with a wrong value at ``key`` (of type ``kind``), every object on the way to it complete."""
    parts = key.replace("[]", ".[]").split(".")
    value: Any = "not-an-object" if kind.startswith(("map", "object")) else {"docsProbe": True}
    for i in range(len(parts) - 1, 0, -1):
        filled = {name: "x" for name in required.get(".".join(parts[:i]).replace(".[]", "[]"), [])}
        name = "docs" if parts[i].startswith("<") else parts[i]
        value = [value] if name == "[]" else {**filled, name: value}
    return {parts[0]: value}


def test_every_setting_of_the_reference_is_read_at_its_key() -> None:
    """A wrong value at each documented key is a config error naming that key: the key is the one read."""
    sections = _config_reference().sections()
    required = {
        s.key: [r.key.strip("`").rsplit(".", 1)[1] for r in s.rows if r.default == "required"] for s in sections
    }
    rows = [(row.key.strip("`"), row.type) for section in sections for row in section.rows]
    assert len(rows) > 50
    unread = []
    for key, kind in rows:
        wanted = re.sub(r"<\w+>", "docs", key)
        if key in CHECKED_BY_THEIR_LIST:
            wanted = wanted.rsplit("[]", 1)[0]
        try:
            read_settings(Config.from_dict(_probe(key, kind, required)))
        except ConfigError as exc:
            shown = re.sub(r"\[\d+\]", "[]", str(exc)).replace("['docs']", ".docs").replace("[...]", ".docs")
            if wanted not in shown:
                unread.append(f"{key}: {exc}")
        else:
            unread.append(f"{key}: accepted a wrong value")
    assert unread == []


# ---------------------------------------------------------------------------- hooks, services, links


def _sections(page: str) -> dict[str, str]:
    """``## heading`` -> its text, for a page."""
    text = (DOCS / page).read_text()
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_hook_has_a_section_with_an_implementation() -> None:
    hooks = sorted(n for n in vars(hookspecs) if n.startswith("kernel_") and callable(getattr(hookspecs, n)))
    sections = _sections("hooks.md")
    for hook in hooks:
        section = next((text for title, text in sections.items() if f"`{hook}" in title), None)
        assert section is not None, f"hooks.md has no section for {hook}"
        assert re.search(rf"```python\n(.|\n)*def {hook}\(", section), f"hooks.md: {hook} has no example implementation"


def test_every_core_service_has_a_section_with_an_example() -> None:
    refs = [n for n in vars(type(core_services)) if not n.startswith("_")]
    assert len(refs) >= 19
    sections = _sections("services.md")
    for name in refs:
        ref = getattr(core_services, name)
        section = next((text for title, text in sections.items() if f"`{ref.id}`" in title), None)
        assert section is not None, f"services.md has no section whose title names `{ref.id}`"
        assert f"core_services.{name}" in section and "```python" in section, f"services.md: {ref.id} has no example"


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces as dashes."""
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n, unique = 0, slug
        while unique in found:
            n += 1
            unique = f"{slug}-{n}"
        found.add(unique)
    return found


def test_links_between_pages_resolve() -> None:
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if re.match(r"^[a-z]+://", target):
                continue
            path = (page.parent / target) if target else page
            assert path.exists(), f"{page.name} links to {target}, which does not exist"
            if anchor and path.suffix == ".md":
                assert anchor in _anchors(path), f"{page.name} links to {target}#{anchor}: no such heading"


def test_the_index_maps_every_page_and_the_readme_points_to_it() -> None:
    index = (DOCS / "index.md").read_text()
    for page in PAGES:
        if page.name != "index.md":
            assert f"]({page.name})" in index, f"index.md does not link {page.name}"
    assert "](docs/index.md)" in (ROOT / "README.md").read_text()
