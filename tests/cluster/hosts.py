"""Hosts made of network namespaces for the cluster tests: a bridge, a db host, kernel hosts, HAProxy.

Every name carries the ``kc-`` prefix and a run id; the subnet is a free ``10.202.<n>.0/24``. The
bridge's address (``.1``) is the root namespace's: HAProxy listens there and the tests reach every
host through it; hosts get ``.10`` and up. ``Network.close`` removes everything it made, whatever
state a failed test left it in. PostgreSQL and Redis of the db host are private (a fresh ``initdb``
in a temporary directory, a ``redis-server`` keeping nothing): the machine's shared ones stay out.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from kernel.testing import wait_for

READINESS = "/.kernel/health/v1/readiness"


def missing_tools() -> list[str]:
    """What these hosts need and this machine lacks (root, iproute2, HAProxy, PostgreSQL, Redis)."""
    missing = [] if os.geteuid() == 0 else ["root (network namespaces)"]
    missing += [tool for tool in ("ip", "haproxy", "redis-server", "runuser", "setpriv") if shutil.which(tool) is None]
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        missing.append("PostgreSQL server binaries")
    return missing


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)


def _free_subnet() -> int:
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    for _ in range(100):
        n = random.randrange(1, 255)
        if f" 10.202.{n}." not in used:
            return n
    raise RuntimeError("no free 10.202.<n>.0/24 subnet")


class Network:
    """A bridge in the root namespace and, per host, a namespace joined to it by a veth pair."""

    def __init__(self) -> None:
        self.run = uuid.uuid4().hex[:5]
        self.subnet = _free_subnet()
        self.bridge = f"kc-{self.run}-br"
        self.gateway_ip = self.address(1)
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.processes: list[subprocess.Popen[str]] = []
        self.stop_signals: dict[int, int] = {}
        self.dir = Path(tempfile.mkdtemp(prefix="kc-cluster-"))
        self.dir.chmod(0o711)  # the db host's PostgreSQL runs as user postgres, in a directory of its own here
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self.links.append(self.bridge)
        _run("ip", "addr", "add", f"{self.gateway_ip}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def address(self, host: int) -> str:
        return f"10.202.{self.subnet}.{host}"

    def host(self, name: str, number: int) -> str:
        """A namespace ``kc-<run>-<name>`` at ``.<number>``; its name."""
        ns, outside, inside = f"kc-{self.run}-{name}", f"kc-{self.run}-{name}0", f"kc-{self.run}-{name}1"
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        self.links.append(outside)
        _run("ip", "link", "set", inside, "netns", ns)
        _run("ip", "link", "set", outside, "master", self.bridge, "up")
        _run("ip", "-n", ns, "addr", "add", f"{self.address(number)}/24", "dev", inside)
        _run("ip", "-n", ns, "link", "set", inside, "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")  # the kernel's internal URLs are on loopback
        return ns

    def spawn(
        self, ns: str | None, args: list[str], log: str, stop_with: int = signal.SIGTERM, **kwargs: object
    ) -> subprocess.Popen[str]:
        """``args`` in namespace ``ns`` (``None``: the root one), output to ``<dir>/<log>``; stopped by ``close``
        with ``stop_with``."""
        prefix = ["ip", "netns", "exec", ns] if ns else []
        with open(self.dir / log, "w") as out:
            proc: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
                [*prefix, *args], stdout=out, stderr=subprocess.STDOUT, text=True, **kwargs
            )
        self.processes.append(proc)
        self.stop_signals[proc.pid] = stop_with
        return proc

    def log(self, name: str) -> str:
        path = self.dir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for proc in self.processes:  # all at once: a kernel's shutdown delay runs beside the others'
            if proc.poll() is None:
                proc.send_signal(self.stop_signals[proc.pid])
        for proc in reversed(self.processes):
            stop(proc, 15)
        for ns in self.namespaces:
            # anything still running in it (a stray child): killed before the namespace goes
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def stop(proc: subprocess.Popen[str], timeout: float) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_port(host: str, port: int, what: str, timeout: float = 30.0) -> None:
    def open_() -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex((host, port)) == 0

    wait_for(open_, timeout, f"{what} does not listen on {host}:{port}", interval=0.1)


def start_postgres(net: Network, ns: str, ip: str) -> str:
    """A private PostgreSQL in ``ns`` listening on ``ip``:5432, trust auth for the subnet; its admin DSN."""
    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))[-1]).parent
    home = net.dir / "pg"
    home.mkdir()
    shutil.chown(home, "postgres", "postgres")
    data = home / "data"
    made = subprocess.run(
        ["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, f"initdb failed: {made.stdout}{made.stderr}"
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all 10.202.{net.subnet}.0/24 trust\n")
    settings = {
        "listen_addresses": ip,
        "unix_socket_directories": str(home),
        "max_connections": "400",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    flags = [arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")]
    # setpriv execs postgres itself (runuser would stay its parent): signals reach the server
    as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    server = [*as_postgres, str(bindir / "postgres"), "-D", str(data), *flags]
    net.spawn(ns, server, "pg.log", stop_with=signal.SIGINT)  # a fast shutdown: clients are cut
    wait_port(ip, 5432, "PostgreSQL")
    return f"postgresql://postgres@{ip}:5432/postgres"


def start_redis(net: Network, ns: str, ip: str) -> str:
    """A private Redis in ``ns`` on ``ip``:6379 keeping nothing on disk; its URL."""
    net.spawn(
        ns,
        [
            "redis-server",
            "--bind",
            ip,
            "--port",
            "6379",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(net.dir),
        ],
        "redis.log",
    )
    wait_port(ip, 6379, "Redis")
    return f"redis://{ip}:6379/0"


def haproxy_config(bind: str, port: int, servers: dict[str, str], stats_socket: Path) -> str:
    """HTTP load balancing over ``servers`` (name -> address:port), each health-checked on its readiness.

    A server is out after two failed checks 200 ms apart and back after two good ones; a request
    that cannot connect to one is sent to another (``redispatch``).
    """
    lines = [
        "global",
        f"  stats socket {stats_socket} mode 600 level admin",
        "  maxconn 2000",
        "defaults",
        "  mode http",
        "  timeout connect 2s",
        "  timeout client 30s",
        "  timeout server 30s",
        "  retries 3",
        # a request sent on a kept-alive connection to a server that just died got nothing back: retried
        # elsewhere, as a request that could not connect is (a CI run saw one failure beyond those in flight)
        "  retry-on conn-failure empty-response",
        "  option redispatch",
        "frontend kernels",
        f"  bind {bind}:{port}",
        "  option forwardfor",
        "  default_backend kernels",
        "backend kernels",
        "  balance roundrobin",
        f"  option httpchk GET {READINESS}",
        "  http-check expect status 200",
        "  default-server inter 200ms fall 2 rise 2",
        *(f"  server {name} {address} check" for name, address in servers.items()),
    ]
    return "\n".join(lines) + "\n"


def haproxy_states(stats_socket: Path) -> dict[str, str]:
    """Each server's state as HAProxy's health checks see it (``UP``, ``DOWN``...), from its stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(stats_socket))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    rows = [line.split(",") for line in data.decode().splitlines() if line and not line.startswith("#")]
    return {row[1]: row[17] for row in rows if row[0] == "kernels" and row[1] not in ("FRONTEND", "BACKEND")}


def kernel_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "kernel.cli", "serve", "--config", str(config)]
