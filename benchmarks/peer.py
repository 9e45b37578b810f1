"""The reference system as a process: a real Backstage backend (``benchmarks/backstage/peer_backend.js``)
on Node, started with ``NODE_ENV=production`` from the packages ``tests/interop`` pins, and the PSS of
its process tree.

Nothing here measures load: the ``peers`` scenario (``benchmarks/peers.py``) does, and
``benchmarks/peer_memory.py`` gives the memory scenario Backstage's idle PSS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from kernel.testing import free_port
from kernel_benchmarks.procs import REPO, TOKEN, Tree, terminate, wait_http_ok

__all__ = ["BackstagePeer", "PeerUnavailable", "PssSampler", "backstage_unavailable", "pss_mb"]

SCRIPT = REPO / "benchmarks" / "backstage" / "peer_backend.js"
#: one pinned set of Backstage packages for the wire tests and the benchmark
PACKAGES = REPO / "tests" / "interop"
SETUP = REPO / "scripts" / "interop-setup"
MIN_NODE = 20


class PeerUnavailable(RuntimeError):
    """Backstage cannot run here (no Node, no packages): the scenario skips, saying why."""


def backstage_unavailable() -> str | None:
    """Why the Backstage peer cannot start here, in one line; ``None`` when it can.

    Installs the pinned packages when they are missing (``scripts/interop-setup``: ``npm ci
    --ignore-scripts``, a no-op when ``node_modules`` already matches the lock file).
    """
    node = shutil.which("node")
    if node is None:
        return "node is not on PATH (the Backstage peer needs Node >= 20 and npm)"
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return f"{node} --version did not answer a version"
    if major < MIN_NODE:
        return f"node {version} is too old for Backstage (needs >= {MIN_NODE})"
    try:
        done = subprocess.run([str(SETUP)], capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"scripts/interop-setup did not run: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
        return f"scripts/interop-setup failed ({last})"
    if not (PACKAGES / "node_modules" / "@backstage" / "plugin-proxy-backend").is_dir():
        return f"{PACKAGES / 'node_modules'} has no @backstage/plugin-proxy-backend"
    return None


def node_version() -> str:
    node = shutil.which("node") or "node"
    return subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()


def backstage_version() -> str:
    manifest = PACKAGES / "node_modules" / "@backstage" / "backend-defaults" / "package.json"
    return str(json.loads(manifest.read_text())["version"])


class BackstagePeer:
    """``node peer_backend.js`` on a free loopback port: the ``bench`` plugin (open hello, static-token hello)
    and, with ``upstream``, the proxy plugin with the endpoint ``/up`` -> ``upstream``."""

    def __init__(self, log_dir: Path, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.log_path = log_dir / f"backstage-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.tree: Tree | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> BackstagePeer:
        opts: dict[str, Any] = {"port": self.port, "token": TOKEN, "upstream": self.upstream}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["node", str(SCRIPT), json.dumps(opts)],
                cwd=PACKAGES,  # Backstage looks for its root package.json from the working directory
                env={**os.environ, "NODE_ENV": "production"},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.tree = Tree(self.proc.pid, "server")
        wait_http_ok(f"{self.url}/api/bench/hello", timeout, self.proc, self.log_path)
        self.tree.refresh()
        return self

    def stop(self) -> None:
        terminate(self.proc, self.tree)

    def pss(self) -> float:
        """PSS of the node process tree now, MiB."""
        assert self.tree is not None
        return pss_mb([p.pid for p in self.tree.refresh()])


def pss_mb(pids: list[int]) -> float:
    """Sum of ``Pss`` in ``/proc/<pid>/smaps_rollup`` over ``pids`` (gone ones count 0), MiB."""
    total_kb = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total_kb += int(line.split()[1])
                break
    return round(total_kb / 1024, 1)


class PssSampler:
    """The peak PSS of a peer's process tree, read every ``interval`` seconds in a thread."""

    def __init__(self, peer: BackstagePeer, interval: float = 0.25) -> None:
        self.peer = peer
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.peer.pss())
            self._stop.wait(self.interval)

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.peer.pss())
