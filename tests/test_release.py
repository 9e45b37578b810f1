"""The release: a wheel and an sdist that build and pass ``twine check``, and a wheel that serves.

The kernel's wheel and a contrib plugin's wheel are installed into a fresh venv (not an editable
checkout: nothing of the repository is on its path), beside the serve lock's dependencies at their
locked versions, and ``kernel serve`` runs from an empty folder and answers through the plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import kernel
from kernel.testing.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kernel's sdist and wheel (the wheel built from the sdist, as ``python -m build`` does), and hello's wheel."""
    out = tmp_path_factory.mktemp("dist")
    # no isolation: the build backend is the dev lock's setuptools, not whatever is newest today
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    _run(sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", out, ROOT / "contrib_plugins/hello")
    return out


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"{pattern}: {found}"
    return found[0]


def test_the_wheel_and_sdist_carry_the_one_version_and_pass_twine_check(dist: Path) -> None:
    version = kernel.__version__
    wheel = _one(dist, f"kernel-{version}-py3-none-any.whl")
    _one(dist, f"kernel-{version}.tar.gz")
    out = _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.glob("kernel-*")))
    assert out.count("PASSED") == 2, out
    names = zipfile.ZipFile(wheel).namelist()
    # what the gateway and `kernel new` read from the package at run time is in the wheel
    assert "kernel/dashboard/static/index.html" in names or any(n.startswith("kernel/dashboard/static/") for n in names)
    assert any(n.startswith("kernel/cli/templates/") and n.endswith(".tmpl") for n in names)
    assert "kernel/py.typed" in names
    # no generic top-level name (a user's own `services` would shadow ours, or ours theirs)
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"kernel", "kernel_services", "kernel_benchmarks"}, tops
    # every package of the repository is in the wheel (pyproject.toml lists them by hand, for package-dir)
    folders = {"kernel": "kernel", "services": "kernel_services", "benchmarks": "kernel_benchmarks"}
    for folder, package in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            inside = init.relative_to(ROOT / folder).as_posix()
            assert f"{package}/{inside}" in names, f"{folder}/{inside} is not in the wheel"
    assert "kernel_benchmarks/backstage/peer_backend.js" in names


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv: the serve lock's dependencies (hash-checked), then the two wheels, without resolving."""
    env = tmp_path_factory.mktemp("venv") / "v"
    _run(sys.executable, "-m", "venv", env)
    pip = [env / "bin/python", "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    _run(*pip, "--require-hashes", "--no-deps", "-r", ROOT / "requirements-serve.lock")
    _run(*pip, "--no-deps", _one(dist, "kernel-*.whl"), _one(dist, "kernel_plugin_hello-*.whl"))
    _run(env / "bin/python", "-m", "pip", "check")
    return env


def test_kernel_version_names_the_version(venv: Path, tmp_path: Path) -> None:
    out = _run(venv / "bin/kernel", "--version", cwd=tmp_path)
    assert out.strip() == f"kernel {kernel.__version__}"


@pytest.fixture
def served(venv: Path, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    config = tmp_path / "app-config.yaml"
    config.write_text(json.dumps({"backend": {"listen": {"host": "127.0.0.1", "port": port}}}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    log = tmp_path / "kernel.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [venv / "bin/kernel", "serve", "--config", config], cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    try:
        yield port
    finally:
        proc.terminate()
        try:
            assert proc.wait(30) == 0, log.read_text()
        finally:
            proc.kill()


def _get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:  # while it starts: 503 in the error shape
        with refused:
            return refused.code, json.loads(refused.read())


def test_the_installed_wheels_serve_the_plugin(served: int, venv: Path) -> None:
    _, body = wait_for(
        lambda: (answer := _get(f"http://127.0.0.1:{served}/api/hello/hello"))[0] == 200 and answer,
        60, "the wheel's kernel never served hello", ignore=(OSError,),
    )  # fmt: skip
    assert body, body
    # the kernel that answered is the wheel's, not this checkout's
    where = _run(venv / "bin/python", "-c", "import kernel; print(kernel.__file__)", cwd=venv.parent)
    assert where.startswith(str(venv)), where
