"""What a new user meets first: the README's commands and snippets, the setup scripts, ``kernel bench``.

The README's plugin snippet and the commented example of ``conf/app-config.yaml`` are taken from
those files, so these tests fail when the files drift.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest

from kernel.registry import load_registry
from kernel.testing import KernelProcess, make_package

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def _kernel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "kernel.cli", *args, env=env)


# -- the benchmark: python -m benchmarks and kernel bench ---------------------------------------------

#: ``python -m benchmarks`` in an interpreter where ``import psutil`` fails
WITHOUT_PSUTIL = "import runpy, sys; sys.modules['psutil'] = None; runpy.run_module('benchmarks', run_name='__main__')"


def test_benchmark_help_needs_no_psutil() -> None:
    proc = _run(sys.executable, "-c", WITHOUT_PSUTIL, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--scenario" in proc.stdout and "scenarios:" in proc.stdout


def test_benchmark_without_psutil_says_what_to_install() -> None:
    proc = _run(sys.executable, "-c", WITHOUT_PSUTIL, "--scenario", "baseline")
    assert proc.returncode == 2
    assert "psutil is not installed" in proc.stderr and "kernel[bench]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_kernel_bench_is_the_benchmark() -> None:
    listed = _kernel("--help")
    assert listed.returncode == 0 and "bench" in listed.stdout
    proc = _kernel("bench", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: kernel bench")
    for text in ("--scenario", "--runs", "scenarios:", "recovery"):
        assert text in proc.stdout
    # options reach the benchmark's own parser, not the kernel's
    bad = _kernel("bench", "--scenario", "nope")
    assert bad.returncode == 2 and "kernel bench: error: unknown scenario(s) nope" in bad.stderr


def test_kernel_bench_ships_with_the_kernel_distribution() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["kernel.plugins"]["kernel-cli-bench"] == "kernel_benchmarks.command"
    assert "kernel_benchmarks" in project["tool"]["setuptools"]["packages"]
    assert project["project"]["optional-dependencies"]["bench"] == ["psutil>=5.9"]


# -- scripts/setup: installs a lock once ------------------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
# records how it was called; fails an install while $FAIL exists
echo "$*" >> "$(dirname "$0")/../../calls"
case "$*" in *" -e "*) [ -e "$FAIL" ] && exit 1 ;; esac
exit 0
"""

#: the interpreter scripts/setup makes .venv with: `-m venv .venv` puts the recording python there
FAKE_BASE_PYTHON = """#!/bin/sh
[ "$1 $2" = "-m venv" ] || exit 3
mkdir -p "$3/bin" && cp "$(dirname "$0")/recorder" "$3/bin/python" && echo venv >> "$3/../calls"
"""


def _sandbox(tmp_path: Path) -> Path:
    """A repository with scripts/setup, both locks, two plugins (and bench); its python only records calls."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup", repo / "scripts" / "setup")
    (repo / "pyproject.toml").write_text('[project]\nname = "kernel"\n')
    for lock in ("serve", "dev"):
        (repo / f"requirements-{lock}.lock").write_text(f"# {lock}\n")
    for name in ("one", "two", "bench"):
        (repo / "contrib_plugins" / name).mkdir(parents=True)
        (repo / "contrib_plugins" / name / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, text in (("recorder", FAKE_PYTHON), ("python3", FAKE_BASE_PYTHON)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    return repo


def _setup(repo: Path, *args: str) -> list[str]:
    """Run scripts/setup; what it did to .venv: ``venv`` when it made it anew, then each pip command."""
    calls = repo / "calls"
    before = calls.read_text().splitlines() if calls.exists() else []
    env = {**os.environ, "FAIL": str(repo / "fail"), "PYTHON": str(repo.parent / "tools" / "python3")}
    proc = subprocess.run(
        ["bash", "scripts/setup", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=30
    )
    after = calls.read_text().splitlines() if calls.exists() else []
    assert proc.returncode == (1 if (repo / "fail").exists() else 0), proc.stderr
    return [c.replace("-m pip --disable-pip-version-check install -q ", "") for c in after[len(before) :]]


SERVE = [
    "venv",
    "--require-hashes --no-deps -r requirements-serve.lock",
    "--no-deps --no-build-isolation -e . -e contrib_plugins/one -e contrib_plugins/two",
    "-m pip --disable-pip-version-check check",
]
DEV = [SERVE[0], SERVE[1].replace("serve", "dev"), *SERVE[2:]]


def test_setup_installs_a_lock_once_and_anew_when_its_inputs_change(tmp_path: Path) -> None:
    repo = _sandbox(tmp_path)
    assert _setup(repo) == SERVE
    assert _setup(repo) == []  # nothing changed: no pip at all
    assert _setup(repo, "dev") == DEV  # scripts/test: the dev lock, in a new .venv
    assert _setup(repo) == []  # scripts/serve after it: the dev lock holds the serve lock's versions
    assert _setup(repo, "dev") == []
    # a changed lock, a changed pyproject.toml, a new plugin: .venv made anew from the same lock
    (repo / "requirements-dev.lock").write_text("# dev, refreshed\n")
    assert _setup(repo) == DEV
    (repo / "contrib_plugins" / "one" / "pyproject.toml").write_text('[project]\nname = "one"\nversion = "2"\n')
    assert _setup(repo, "dev") == DEV
    (repo / "contrib_plugins" / "three").mkdir()
    (repo / "contrib_plugins" / "three" / "pyproject.toml").write_text('[project]\nname = "three"\n')
    assert _setup(repo, "dev")[2] == (
        "--no-deps --no-build-isolation -e . -e contrib_plugins/one -e contrib_plugins/three -e contrib_plugins/two"
    )
    assert _setup(repo, "dev") == []


def test_setup_tries_again_after_a_failed_install(tmp_path: Path) -> None:
    repo = _sandbox(tmp_path)
    (repo / "fail").touch()
    assert _setup(repo) == SERVE[:3]
    (repo / "fail").unlink()
    assert _setup(repo) == SERVE  # no stamp was written for the failed install
    assert _setup(repo) == []


def test_the_locks_pin_every_package_with_hashes_and_agree() -> None:
    """scripts/lock's output: every line a pin with hashes, and the serve lock's versions the dev lock's."""
    pins: dict[str, dict[str, str]] = {}
    for lock in ("serve", "dev"):
        text = (REPO / f"requirements-{lock}.lock").read_text()
        entries = re.findall(
            r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)(?: ;[^\n]*)?( \\\n    --hash=sha256:[0-9a-f]{64})", text, re.M
        )
        names = re.findall(r"^[A-Za-z]\S*", text, re.M)
        assert len(entries) == len(names) > 0, lock  # nothing unpinned, nothing without a hash
        pins[lock] = {name.lower(): version for name, version, _ in entries}
    assert all(pins["dev"][name] == version for name, version in pins["serve"].items())
    assert {"pytest", "pytest-xdist", "mypy", "setuptools"} <= pins["dev"].keys()
    assert {"hypercorn", "msgspec", "starlette", "pyzmq", "uvicorn"} <= pins["serve"].keys()


def test_editable_installs_are_pth_files() -> None:
    """Every contrib project scripts/setup installs says where its packages are (``package-dir = {"" = "."}``):
    setuptools then installs it in editable mode as a ``.pth`` file, not with an import hook that warns on
    every install that folders of the working directory may shadow the package. The kernel's own project
    maps its folders to names of its own (``services/`` is ``kernel_services``): it lists its packages."""
    projects = [p for p in sorted((REPO / "contrib_plugins").iterdir()) if p.name != "bench"]
    for project in projects:
        if not (project / "pyproject.toml").exists():
            continue
        tool = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"]
        assert tool["package-dir"] == {"": "."}, project
        assert tool["packages"]["find"]["include"], project  # else every folder would be a package
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"] == {"": ".", "kernel_services": "services", "kernel_benchmarks": "benchmarks"}
    assert {"kernel", "kernel_services", "kernel_benchmarks"} <= set(tool["packages"])


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "scripts").iterdir() if p.is_file()))
def test_scripts_parse(script: str) -> None:
    path = REPO / "scripts" / script
    source = path.read_text()
    if "python" in source.splitlines()[0]:  # the shebang says which language
        compile(source, str(path), "exec")
        return
    proc = _run("bash", "-n", str(path))
    assert proc.returncode == 0, proc.stderr


# -- conf/app-config.yaml: the commented static token --------------------------------------------------


def _uncommented_external_access() -> str:
    """conf/app-config.yaml with the commented ``externalAccess`` example uncommented."""
    lines = (REPO / "conf" / "app-config.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("# externalAccess:"))
    col = lines[start].index("#")
    i = start
    while (
        i < len(lines)
        and lines[i].startswith(" " * col + "#")
        and (i == start or lines[i][col + 1 :].startswith("   "))
    ):
        lines[i] = lines[i][:col] + lines[i][col + 2 :]
        i += 1
    assert i - start >= 5, "the example is shorter than expected"
    return "\n".join(lines) + "\n"


def test_static_token_example_uncommented_is_valid(tmp_path: Path) -> None:
    config = tmp_path / "app-config.yaml"
    config.write_text(_uncommented_external_access())
    proc = _kernel("config", "check", "--config", str(config), env={"CI_TOKEN": "a-token-for-ci-0123"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "config OK" in proc.stdout
    # it is active: without CI_TOKEN the entry has no token
    unset = _kernel("config", "check", "--config", str(config), env={"CI_TOKEN": ""})
    assert unset.returncode != 0 and "externalAccess[0].options.token" in unset.stdout + unset.stderr


def test_shipped_config_checks() -> None:
    proc = _kernel("config", "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- README: the plugin snippet is a package that installs and serves ---------------------------------


def _readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _snippet_files(section: str) -> dict[str, str]:
    """The section's fenced blocks whose first line is ``# <file>``, by file."""
    files = {}
    for block in re.findall(r"```\w*\n(.*?)```", section, re.DOTALL):
        first = block.partition("\n")[0]
        m = re.fullmatch(r"# ([\w./-]+\.(?:toml|py))", first.strip())
        if m:
            files[m.group(1)] = block
    return files


def test_readme_plugin_snippet_installs_and_serves(tmp_path: Path) -> None:
    section = _readme_section("Writing a plugin")
    files = _snippet_files(section)
    assert "pyproject.toml" in files and any(f.endswith(".py") for f in files), files
    src = tmp_path / "todo"
    for name, text in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["name"] and project["project"]["version"] and project["build-system"]
    (plugin_id,) = project["project"]["entry-points"]["kernel.plugins"]
    assert plugin_id not in load_registry(services=False).plugins, (
        "the README's plugin would clash with an installed one"
    )

    site = tmp_path / "site"
    pip = _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(src))
    assert pip.returncode == 0, pip.stdout + pip.stderr

    # what the README promises: `curl localhost:7007/api/<id>/... ` answers `<json>`
    m = re.search(r"curl localhost:7007(/api/\S+)` answers `(\{.*?\})`", section)
    assert m, "the README no longer says what the plugin answers"
    path, answer = m.group(1), json.loads(m.group(2))
    assert path.startswith(f"/api/{plugin_id}/")
    with KernelProcess(paths=[site]) as kernel:
        with urllib.request.urlopen(kernel.url + path, timeout=5) as r:
            assert json.loads(r.read()) == answer
        with urllib.request.urlopen(kernel.url + "/api/hello/hello", timeout=5) as r:
            assert r.status == 200  # next to the shipped example, no clash
    assert "entry point is named" not in kernel.output()


# -- an entry point named otherwise than its plugin -----------------------------------------------------

GREET = """
from starlette.responses import JSONResponse

from kernel.api import core_services, create_plugin

plugin = create_plugin("greet")


@plugin.init(router=core_services.http_router)
async def init(router):
    async def hi(request):
        return JSONResponse({"hi": True})

    router.add_route("/hi", hi)
"""


def test_entry_point_named_otherwise_is_warned(tmp_path: Path) -> None:
    site = make_package(
        tmp_path / "site", "kernel-test-greet", {"test_greet": GREET}, {"greeting": "test_greet:plugin"}
    )
    proc = _kernel("plugins", env={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^greet\s+kernel-test-greet", proc.stdout, re.MULTILINE)  # served under its id
    warnings = [line for line in proc.stderr.splitlines() if "entry point is named" in line]
    assert len(warnings) == 1, proc.stderr
    assert "plugin 'greet' from package 'kernel-test-greet'" in warnings[0] and "'greeting'" in warnings[0]


def test_registry_warnings_logged_once_per_full_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    site = make_package(
        tmp_path / "site", "kernel-test-greet", {"test_greet": GREET}, {"greeting": "test_greet:plugin"}
    )
    monkeypatch.syspath_prepend(str(site))
    with caplog.at_level(logging.WARNING, logger="kernel"):
        reg = load_registry(services=False)
    assert [w for w in reg.warnings if "'greet'" in w] and "entry point is named 'greeting'" in caplog.text
    caplog.clear()
    entry = reg.plugins["greet"]
    with caplog.at_level(logging.WARNING, logger="kernel"):
        worker = load_registry(only=[entry.entry_point], services=False)  # a worker's load: kept, not logged
    assert worker.warnings and not caplog.text
