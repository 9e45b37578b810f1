"""Real processes and real sockets: ``kernel serve`` in a subprocess, installed-looking packages, waits.

``make_package`` writes an installed-looking package (a ``.dist-info`` with
entry points, plus its modules) into a directory that goes on ``PYTHONPATH``;
``KernelProcess`` runs ``kernel serve`` on a free port and waits for readiness.
``wait_for`` / ``wait_for_async`` poll a condition up to a deadline (tests wait for
what they need, never for a fixed time); ``stays`` checks that something keeps
holding for a window (for "nothing more happens" checks).
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

READINESS = "/.kernel/health/v1/readiness"
_RUNNING: list[KernelProcess] = []
T = TypeVar("T")
#: what to say when a wait fails: a text, or a function called then (e.g. to include a log)
Message = str | Callable[[], str]


@atexit.register
def _kill_leftovers() -> None:
    """A test that failed before ``stop()`` must not leave a kernel running."""
    for k in _RUNNING:
        if k.proc is not None and k.proc.poll() is None:
            k.proc.kill()
            k.proc.wait()


def make_package(
    site: Path,
    dist: str,
    modules: Mapping[str, str | Path],
    entry_points: Mapping[str, str],
    version: str = "0.1.0",
) -> Path:
    """Write modules and a ``<dist>-<version>.dist-info`` registering ``kernel.plugins`` entry points.

    ``modules`` maps a module name to its source: a string, or the ``Path`` of a file to copy.
    """
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        path = site / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            shutil.copyfile(source, path)
        else:
            path.write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[kernel.plugins]\n{eps}\n")
    return site


def _describe(message: Message, last: object) -> str:
    text = message() if callable(message) else message
    return f"{text} (last: {last!r})"


def wait_for(
    condition: Callable[[], T],
    timeout: float = 10.0,
    message: Message = "condition not met in time",
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Exceptions of the types in ``ignore`` count as "not yet". After ``timeout``
    seconds, raises ``AssertionError`` with ``message`` and the last result.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = condition()
        except ignore as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        if time.monotonic() >= deadline:
            raise AssertionError(_describe(message, last))
        time.sleep(interval)


async def wait_for_async(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    message: Message = "condition not met in time",
    *,
    interval: float = 0.02,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """``wait_for`` inside an event loop: ``condition`` may be a coroutine function; sleeps without blocking."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = condition()
            result: T = await value if inspect.isawaitable(value) else value
        except ignore as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        if time.monotonic() >= deadline:
            raise AssertionError(_describe(message, last))
        await asyncio.sleep(interval)


def stays(
    condition: Callable[[], object],
    seconds: float,
    message: Message = "condition stopped holding",
    *,
    interval: float = 0.05,
) -> None:
    """Check ``condition`` throughout a window of ``seconds``: fails as soon as it is false.

    For "nothing more happens" checks, where there is no event to wait for; the
    window is the behaviour under test, so it is a fixed time.
    """
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if not result:
            raise AssertionError(_describe(message, result))
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


class RecordingLogger:
    """A ``kernel.api.Logger`` that keeps the messages it is given, for services built in a test."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _add(self, msg: str, **fields: Any) -> None:
        self.lines.append(msg)

    debug = info = warning = error = exception = _add

    def child(self, **fields: Any) -> RecordingLogger:
        return self


def free_port() -> int:
    """A port free now on 127.0.0.1, below the ephemeral range.

    A port the system hands out for ``bind(0)`` comes from the range it also gives every outgoing
    connection: between this check and the kernel's own bind, any process's connection may take it.
    Below that range only a listener that chose the very same port can (``random``, then checked).
    """
    low = _EPHEMERAL_LOW
    for _ in range(100):
        port = random.randrange(10_000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a crowded range: take what the system gives
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return max(int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]), 10_001)
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


_EPHEMERAL_LOW = _ephemeral_low()


class KernelProcess:
    """``kernel serve`` in a subprocess with a config dict and extra import paths."""

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        paths: Sequence[Path | str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> None:
        self.port = free_port()
        cfg: dict[str, Any] = json.loads(json.dumps(config or {}))
        backend = cfg.setdefault("backend", {})
        backend.setdefault("listen", {}).update({"host": "127.0.0.1", "port": self.port})
        metrics = backend.setdefault("metrics", {})
        self.metrics_port: int | None = None
        #: the ports chosen here (not by the test): chosen again when another process took one first
        self._own_metrics_port = False
        if isinstance(metrics, dict) and metrics.get("listener", "own") == "own":
            #: a free port unless the test chose one: kernels of a test run side by side
            self._own_metrics_port = "port" not in metrics
            self.metrics_port = metrics.setdefault("port", free_port())
        self._config = cfg
        workers = backend.setdefault("workers", {})
        if isinstance(workers, dict):  # its cgroups are known as a test's (KERNEL_TEST_CGROUP_NAME, unless set)
            workers.setdefault("cgroupName", os.environ.get("KERNEL_TEST_CGROUP_NAME", "kernel-test"))
        self._dir = tempfile.mkdtemp(prefix="kernel-test-")
        self.config_path = Path(self._dir) / "app-config.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.paths = [str(p) for p in paths]
        self.extra_env = dict(env or {})
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = Path(self._dir) / "kernel.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Where this kernel's metrics are scraped (its own metrics listener)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, wait: bool = True, timeout: float = 20.0) -> KernelProcess:
        """Spawn the kernel; with ``wait``, until it is ready. A port chosen here that another process
        bound between the choice and the kernel's bind (a test running beside this one) is chosen again,
        up to twice: a test that chose its ports gets the kernel's refusal as it is."""
        for attempt in range(3):
            self._spawn()
            if not wait:
                return self
            try:
                self.wait_ready(timeout)
                return self
            except RuntimeError:
                if attempt == 2 or not self._port_taken():
                    raise
                self._choose_ports_again()
        return self

    def _port_taken(self) -> bool:
        """Whether the kernel exited because one of the ports chosen here was taken."""
        text = self.output()
        return "Address already in use" in text and any(
            f":{port}" in text for port in (self.port, self.metrics_port if self._own_metrics_port else None) if port
        )

    def _choose_ports_again(self) -> None:
        backend = self._config["backend"]
        self.port = backend["listen"]["port"] = free_port()
        if self._own_metrics_port:
            self.metrics_port = backend["metrics"]["port"] = free_port()
        self.config_path.write_text(yaml.safe_dump(self._config))
        self._log.close()
        _RUNNING.remove(self)

    def _spawn(self) -> None:
        env = {**os.environ, **self.extra_env}
        if self.paths:
            env["PYTHONPATH"] = os.pathsep.join([*self.paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kernel.cli", "serve", "--config", str(self.config_path)],
            env=env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _RUNNING.append(self)

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def readiness(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.url + READINESS, timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait_ready(self, timeout: float = 20.0, status: int = 200) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kernel exited with {self.proc.returncode}:\n{self.output()}")
            try:
                code, body = self.readiness()
                last = (code, body)
                if code == status:
                    return body
            except (OSError, ValueError) as exc:
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"kernel not ready (last: {last}):\n{self.output()}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self in _RUNNING:
            _RUNNING.remove(self)
        return self.proc.returncode

    def __enter__(self) -> KernelProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
