"""Two "hosts" for the remote-worker tests: network namespaces joined by a veth pair, nothing else.

``Hosts`` makes namespaces ``kr-k<pid>`` (the kernel's) and ``kr-w<pid>`` (a worker host's), a veth
pair between them (10.201.0.1 and 10.201.0.2, no route elsewhere), and removes both, and the
processes it started in them, when closed. HTTP to the kernel goes from threads that entered the
kernel's namespace (a thread's sockets are made in the namespace it is in); ZeroMQ clients (whose
sockets ZeroMQ's own threads make) run as processes in a namespace (``run``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import yaml

CLONE_NEWNET = 0x40000000
KERNEL_IP, WORKER_IP = "10.201.0.1", "10.201.0.2"
JOIN_PORT = 7400
HTTP_PORT = 7007
METRICS_PORT = 7464


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _enter(namespace: str) -> None:
    """Move the calling thread into ``namespace`` (its later sockets are made there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace} failed")
    finally:
        os.close(fd)


class Hosts:
    def __init__(self) -> None:
        tag = str(os.getpid())
        self.kernel_ns, self.worker_ns = f"kr-k{tag}", f"kr-w{tag}"
        self.link = f"kr-{tag}k"  # the kernel's end of the veth pair
        self.dir = Path(tempfile.mkdtemp(prefix="kr-hosts-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []
        _ip("netns", "add", self.kernel_ns)
        try:
            _ip("netns", "add", self.worker_ns)
            _ip("link", "add", self.link, "type", "veth", "peer", "name", f"kr-{tag}w")
            _ip("link", "set", self.link, "netns", self.kernel_ns)
            _ip("link", "set", f"kr-{tag}w", "netns", self.worker_ns)
            for ns, dev, addr in ((self.kernel_ns, self.link, KERNEL_IP), (self.worker_ns, f"kr-{tag}w", WORKER_IP)):
                _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        #: threads in the kernel's namespace, for HTTP
        self.pool = ThreadPoolExecutor(16, initializer=_enter, initargs=(self.kernel_ns,))

    def close(self) -> None:
        if hasattr(self, "pool"):
            self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()
        for ns in (self.kernel_ns, self.worker_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # its veth end goes with it
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- processes ---------------------------------------------------------------------
    def start(self, namespace: str, argv: Sequence[str], name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """``argv`` in ``namespace`` (its output in ``<dir>/<name>.log``), stopped at ``close``."""
        log = open(self.dir / f"{name}.log", "wb")
        self.logs.append(log)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *argv], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kernel(self, config: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """``kernel serve`` in the kernel's namespace, HTTP on 127.0.0.1:7007 there, metrics on :7464."""
        backend = config.setdefault("backend", {})
        backend["listen"] = {"host": "127.0.0.1", "port": HTTP_PORT}
        backend["metrics"] = {"listener": "own", "host": "127.0.0.1", "port": METRICS_PORT}
        path = self.dir / "app-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return self.start(
            self.kernel_ns, [sys.executable, "-m", "kernel.cli", "serve", "--config", str(path)], "kernel", env
        )

    def worker(
        self, plugin_id: str, key: Path, server_key: Path, env: dict[str, str], name: str
    ) -> subprocess.Popen[bytes]:
        """``kernel worker`` of ``plugin_id`` in the worker host's namespace, joining the kernel."""
        argv = [sys.executable, "-m", "kernel.cli", "worker", "--plugin", plugin_id]
        argv += ["--join", f"tcp://{KERNEL_IP}:{JOIN_PORT}", "--server-key", str(server_key), "--key", str(key)]
        return self.start(self.worker_ns, argv, name, env)

    def run(self, namespace: str, argv: Sequence[str], timeout: float = 30.0) -> str:
        """Run ``argv`` in ``namespace`` to its end; its stdout."""
        done = subprocess.run(
            ["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{argv} failed ({done.returncode}): {done.stderr}"
        return done.stdout

    # -- the network -------------------------------------------------------------------
    def cut(self) -> None:
        _ip("-n", self.kernel_ns, "link", "set", self.link, "down")

    def restore(self) -> None:
        _ip("-n", self.kernel_ns, "link", "set", self.link, "up")

    # -- HTTP, from the kernel's namespace ----------------------------------------------
    def get(self, path: str, port: int = HTTP_PORT) -> tuple[int, Any]:
        return self.pool.submit(_get, f"http://127.0.0.1:{port}{path}").result()

    def many(self, path: str, count: int) -> list[tuple[int, Any]]:
        """``count`` GETs of ``path`` from the pool's threads at once."""
        return [f.result() for f in self.send(path, count)]

    def send(self, path: str, count: int) -> list[Future[tuple[int, Any]]]:
        """``count`` GETs of ``path`` on their way from the pool's threads; their answers to come."""
        return [self.pool.submit(_get, f"http://127.0.0.1:{HTTP_PORT}{path}") for _ in range(count)]

    def workers(self) -> dict[str, str]:
        """Every worker in the kernel's metrics: its id -> its state (``ready``, ``starting``, ...)."""
        status, text = self.get("/metrics", METRICS_PORT)
        if status != 200:
            return {}
        found = re.findall(r'kernel_worker_state\{plugin_id="[^"]*",process="([^"]+)",state="([^"]+)"\} 1', text)
        return dict(found)


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    except OSError as e:
        return 0, str(e)
    with contextlib.suppress(ValueError):
        return status, json.loads(body)
    return status, body.decode(errors="replace")
