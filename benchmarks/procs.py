"""The systems under test as processes: start, find their parts, sample RSS, stop, prove nothing is left."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from kernel.testing import KernelProcess, free_port, make_package

REPO = Path(__file__).resolve().parent.parent
BENCH_PLUGIN_DIR = REPO / "contrib_plugins" / "bench"
BENCH_PLUGIN = "bench"
BENCH_ENTRY = "kernel_bench.plugin:plugin"
#: the plugin that calls ``bench`` with plugin tokens (the p2p scenario)
PEER_PLUGIN = "bench-peer"
PEER_ENTRY = "kernel_bench.peer:plugin"
#: the static external-access token the auth scenario presents
TOKEN = "bench-static-token-0123456789abcdef"
MB = 1024 * 1024


class LeftoverProcesses(RuntimeError):
    """A scenario's processes outlived it."""


# -- the process tree ------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    created: float
    role: str  # "kernel" | "gateway" | "worker" | "server"
    plugin: str = ""


def _role(p: psutil.Process) -> tuple[str, str]:
    try:
        cmd = " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "", ""
    if "kernel.gateway" in cmd:
        return "gateway", ""
    if "--zygote" in cmd:
        return "zygote", ""
    if "kernel.worker" in cmd:
        # ``python -m kernel.worker <plugin>.<slot>.<n>``: plugin ids have no dots
        worker_id = cmd.split("kernel.worker", 1)[1].strip()
        return "worker", worker_id.split(".", 1)[0]
    return "other", ""


class Tree:
    """Every process of one system under test, remembered across restarts for the leftover check."""

    def __init__(self, root_pid: int, root_role: str) -> None:
        self.root = psutil.Process(root_pid)
        self.root_role = root_role
        self.seen: dict[int, Proc] = {}
        self._cache: dict[int, Proc] = {}
        self.refresh()

    def refresh(self) -> list[Proc]:
        """The live processes now (root first), adding any new one to ``seen``."""
        procs: list[Proc] = []
        try:
            members = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return procs
        for p in members:
            try:
                created = p.create_time()
            except psutil.Error:
                continue
            known = self._cache.get(p.pid)
            if known is None or known.created != created:
                if p.pid == self.root.pid:
                    known = Proc(p.pid, created, self.root_role)
                else:
                    role, plugin = _role(p)
                    if not role:
                        continue
                    known = Proc(p.pid, created, role, plugin)
                if known.role != "zygote":  # a worker just forked reads like the zygote until it titles itself
                    self._cache[p.pid] = known
            self.seen[p.pid] = known
            procs.append(known)
        return procs

    def by_role(self, role: str, plugin: str | None = None) -> list[Proc]:
        return [p for p in self.refresh() if p.role == role and (plugin is None or p.plugin == plugin)]

    def leftovers(self) -> list[Proc]:
        alive = []
        for proc in self.seen.values():
            try:
                p = psutil.Process(proc.pid)
                if p.create_time() == proc.created and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        return alive

    def assert_gone(self, timeout: float = 5.0) -> None:
        """Raise (after killing them: we started them) if any process of this tree is still alive."""
        deadline = time.monotonic() + timeout
        left = self.leftovers()
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.leftovers()
        if left:
            for proc in left:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            raise LeftoverProcesses(
                "processes left behind (now killed): " + ", ".join(f"{p.role} pid {p.pid}" for p in left)
            )


def rss_mb(pid: int) -> float | None:
    try:
        return psutil.Process(pid).memory_info().rss / MB
    except psutil.Error:
        return None


class RssSampler:
    """Samples the RSS of every process of a tree in a thread; keeps first and peak per process."""

    def __init__(self, tree: Tree, interval: float = 0.1) -> None:
        self.tree = tree
        self.interval = interval
        self.first: dict[int, float] = {}
        self.peak: dict[int, float] = {}
        self.procs: dict[int, Proc] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        for proc in self.tree.refresh():
            value = rss_mb(proc.pid)
            if value is None:
                continue
            self.procs[proc.pid] = proc
            self.first.setdefault(proc.pid, value)
            self.peak[proc.pid] = max(value, self.peak.get(proc.pid, 0.0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peak_of(self, role: str, plugin: str | None = None) -> float | None:
        values = [
            v
            for pid, v in self.peak.items()
            if self.procs[pid].role == role and (plugin is None or self.procs[pid].plugin == plugin)
        ]
        return round(max(values), 1) if values else None

    def growth_of(self, role: str, plugin: str | None = None) -> float | None:
        values = [
            self.peak[pid] - self.first[pid]
            for pid in self.peak
            if self.procs[pid].role == role and (plugin is None or self.procs[pid].plugin == plugin)
        ]
        return round(max(values), 1) if values else None

    def total(self) -> float:
        return round(sum(self.peak.values()), 1)


# -- the baseline server -------------------------------------------------------------------------


def _pythonpath(*extra: Path | str) -> str:
    parts = [str(p) for p in extra] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(parts)


def _bench_plugin_installed() -> bool:
    return any(ep.name == BENCH_PLUGIN for ep in importlib.metadata.entry_points(group="kernel.plugins"))


def _module_path() -> list[Path]:
    """Where ``kernel_bench`` is imported from when it is not installed."""
    try:
        import kernel_bench  # noqa: F401

        return []
    except ImportError:
        if not (BENCH_PLUGIN_DIR / "kernel_bench").is_dir():
            raise RuntimeError(
                f"the benchmark plugin is neither installed nor at {BENCH_PLUGIN_DIR}: "
                "run from the repository root or `pip install contrib_plugins/bench`"
            ) from None
        return [BENCH_PLUGIN_DIR]


class BaselineServer:
    """``python -m benchmarks.baseline_app`` on a free port: the plain app, or the ``composed`` gateway."""

    def __init__(self, server: str, log_dir: Path, app: str = "plain") -> None:
        self.server = server
        self.app = app
        self.port = free_port()
        self.log_path = log_dir / f"baseline-{app}-{server}.log"
        #: where the bench plugin's hello answers
        self.hello = "/hello" if app == "plain" else f"/api/{BENCH_PLUGIN}/hello"
        self.proc: subprocess.Popen[bytes] | None = None
        self.tree: Tree | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> BaselineServer:
        env = {**os.environ, "PYTHONPATH": _pythonpath(REPO, *_module_path())}
        self._log = open(self.log_path, "wb")
        command = [
            "-m",
            "kernel_benchmarks.baseline_app",
            "--server",
            self.server,
            "--port",
            str(self.port),
            "--app",
            self.app,
        ]
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.tree = Tree(self.proc.pid, "server")
        wait_http_ok(self.url + self.hello, timeout, self.proc, self.log_path)
        return self

    def stop(self) -> None:
        try:
            terminate(self.proc, self.tree)
        finally:
            self._log.close()


def terminate(proc: subprocess.Popen[bytes] | None, tree: Tree | None) -> None:
    """SIGTERM, SIGKILL after 15 s; then every process of ``tree`` must be gone (``LeftoverProcesses``)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if tree is not None:
        tree.assert_gone()


def wait_http_ok(url: str, timeout: float, proc: subprocess.Popen[Any] | None, log: Path) -> float:
    """Poll ``url`` every 10 ms until it answers 200; returns the time it took."""
    start = time.monotonic()
    deadline = start + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
                last = r.status
        except urllib.error.HTTPError as e:
            last = e.code
        except OSError as e:
            last = e
        time.sleep(0.01)
    raise TimeoutError(f"{url} not answering 200 after {timeout:g}s (last: {last}):\n{log.read_text()[-3000:]}")


# -- the kernel --------------------------------------------------------------------------------------

STARTUP_PLUGIN = """
from starlette.responses import JSONResponse

from kernel.api import core_services, create_plugin

plugin = create_plugin({pid!r})


@plugin.init(router=core_services.http_router)
async def init(router):
    async def hello(request):
        return JSONResponse({{"message": "hello from {pid}"}})

    router.add_route("/hello", hello, methods=["GET"])
    router.add_auth_policy("/hello", allow="unauthenticated")
"""


def installed_plugins() -> list[str]:
    return sorted({ep.name for ep in importlib.metadata.entry_points(group="kernel.plugins")})


@dataclass
class KernelSetup:
    """What one kernel run looks like: server, gateway processes, replicas, extra generated plugins."""

    server: str
    gateways: int = 1
    replicas: int = 1
    extra_plugins: int = 0
    config: dict[str, Any] = field(default_factory=dict)


class Kernel:
    """``kernel serve`` with the bench plugin (and optional generated ones), via ``kernel.testing``."""

    def __init__(self, setup: KernelSetup, work: Path) -> None:
        self.setup = setup
        site = Path(tempfile.mkdtemp(prefix="site-", dir=work))
        paths: list[Path] = []
        if not _bench_plugin_installed():
            make_package(site, "kernel-plugin-bench", {}, {BENCH_PLUGIN: BENCH_ENTRY, PEER_PLUGIN: PEER_ENTRY})
            paths += _module_path()
        for i in range(1, setup.extra_plugins + 1):
            pid = f"bench-extra-{i}"
            make_package(
                site,
                f"kernel-plugin-bench-extra-{i}",
                {f"kernel_bench_extra_{i}": STARTUP_PLUGIN.format(pid=pid)},
                {pid: f"kernel_bench_extra_{i}:plugin"},
            )
        config: dict[str, Any] = {
            "backend": {
                "gateway": {"server": setup.server, "processes": setup.gateways},
                "workers": {"plugins": {BENCH_PLUGIN: {"replicas": setup.replicas}}},
                "auth": {"externalAccess": [{"type": "static", "options": {"token": TOKEN, "subject": "bench"}}]},
            }
        }
        _merge(config, setup.config)
        env = {"KERNEL_LOG_LEVEL": os.environ.get("KERNEL_LOG_LEVEL", "warning")}
        self.kp = KernelProcess(config, paths=[site, *paths], env=env)
        self.tree: Tree | None = None

    @property
    def url(self) -> str:
        return self.kp.url

    def spawn(self) -> float:
        """Start ``kernel serve`` without waiting; returns the monotonic time of the spawn."""
        t0 = time.monotonic()
        self.kp.start(wait=False)
        assert self.kp.proc is not None
        self.tree = Tree(self.kp.proc.pid, "kernel")
        return t0

    def start(self, timeout: float = 30.0) -> Kernel:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_http_ok(self.url + "/.kernel/health/v1/readiness", timeout, self.kp.proc, self.kp.log_path)
        assert self.tree is not None
        self.tree.refresh()

    def workers(self, plugin: str = BENCH_PLUGIN) -> list[Proc]:
        assert self.tree is not None
        return self.tree.by_role("worker", plugin)

    def stop(self) -> None:
        try:
            self.kp.stop()
        finally:
            if self.tree is not None:
                self.tree.assert_gone()

    def output(self) -> str:
        return self.kp.output()

    def __enter__(self) -> Kernel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
