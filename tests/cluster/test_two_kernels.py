"""Two kernels as one behind HAProxy, each on a "host" of its own (a network namespace), sharing the
db host's PostgreSQL and Redis and one config file (as one ConfigMap mounted in two pods).

One module-scoped cluster (set up once, removed even when a test fails): the tests go through
HAProxy or straight to each instance over the bridge. The last two tests take instances down
(``kill -9``, then ``SIGTERM``) under a bounded load sent through HAProxy.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
import redis
import yaml

from kernel.testing import make_package, wait_for
from tests import plugins
from tests.cluster.hosts import (
    READINESS,
    Network,
    haproxy_config,
    haproxy_states,
    kernel_command,
    missing_tools,
    start_postgres,
    start_redis,
)

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"cluster hosts need: {', '.join(missing_tools())}")

TOKEN = "cluster-suite-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PORT = 7007
LB_PORT = 8000
#: the rate limit of plugin ``other`` (requests per client and minute)
LIMIT = 3
#: seconds of readiness 503 before draining on SIGTERM: more than HAProxy needs to see it (2 checks, 200 ms apart)
SHUTDOWN_DELAY = 3
#: the load: threads sending requests one after another, and how many requests in all
CONCURRENCY = 8
REQUESTS = 20000  # a bound, never the end: each test stops its load (2000 ran out on a quiet machine)


@dataclass
class Instance:
    """One ``kernel serve`` on its host (namespace), started with ``ip netns exec``."""

    name: str
    ns: str
    ip: str
    net: Network
    config: Path
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{PORT}"

    def start(self) -> Instance:
        self.starts += 1
        # torn down with SIGKILL (its processes die with it): the graceful stop is a test of its own
        command = kernel_command(self.config)
        self.proc = self.net.spawn(self.ns, command, self.log_name, stop_with=signal.SIGKILL, env=self.env)
        return self

    @property
    def log_name(self) -> str:
        return f"{self.name}-{self.starts}.log"

    def output(self) -> str:
        return self.net.log(self.log_name)

    def readiness(self) -> int:
        try:
            return httpx.get(self.url + READINESS, timeout=2).status_code
        except httpx.HTTPError:
            return 0

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited:\n{self.output()}"
            return self.readiness() == 200

        wait_for(ready, timeout, lambda: f"{self.name} not ready:\n{self.output()[-3000:]}", interval=0.2)


@dataclass
class Cluster:
    net: Network
    kernels: list[Instance]
    lb: str
    stats: Path
    config: Path
    config_data: dict[str, Any]
    pg_dsn: str
    redis_url: str
    prefix: str

    def states(self) -> dict[str, str]:
        return haproxy_states(self.stats)


def _site(root: Path) -> Path:
    for name, source in {
        "echo": plugins.ECHO,
        "other": plugins.OTHER,
        "ticker": plugins.TICKER,
        "caller": plugins.CALLER,
        "callee": plugins.CALLEE,
        "shared": plugins.SHARED_CACHE,
        "serviced": plugins.SERVICED,
    }.items():
        module = f"test_{name}" if name != "shared" else "test_shared_cache"
        make_package(root, f"kernel-test-{name}", {module: source}, {name: f"{module}:plugin"})
    return root


def _config(lb: str, pg_ip: str, redis_url: str, prefix: str) -> dict[str, Any]:
    return {
        "backend": {
            "baseUrl": lb,
            "listen": {"host": "0.0.0.0", "port": PORT},
            "trustProxy": True,
            "database": {"client": "pg", "connection": {"host": pg_ip, "port": 5432, "user": "postgres"}},
            "cache": {"store": "redis", "connection": redis_url, "keyPrefix": prefix},
            "rateLimit": {
                "global": False,
                "store": {"type": "redis", "connection": redis_url},
                "plugin": {"other": {"window": "1m", "incomingRequestLimit": LIMIT}},
            },
            "config": {"reload": {"enabled": True, "pollSeconds": 0.2}},
            "lifecycle": {"serverShutdownDelay": f"{SHUTDOWN_DELAY}s"},
            "gateway": {"requestTimeout": 10},
            "workers": {"heartbeatInterval": 0.2, "heartbeatTimeout": 5, "shutdownGrace": 5, "killTimeout": 2},
            "auth": {"externalAccess": [{"type": "static", "options": {"token": TOKEN, "subject": "ops"}}]},
        },
        "auth": {"providers": {"guest": {"dangerouslyAllowOutsideDevelopment": True}}},
        "serviced": {"greeting": "hello"},
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    net = Network()
    try:
        db = net.host("db", 10)
        pg_ip = net.address(10)
        pg_dsn = start_postgres(net, db, pg_ip)
        redis_url = start_redis(net, db, pg_ip)
        lb = f"http://{net.gateway_ip}:{LB_PORT}"
        prefix = f"kc:{uuid.uuid4().hex[:8]}:"
        data = _config(lb, pg_ip, redis_url, prefix)
        config = net.dir / "app-config.yaml"  # the one file both instances read, as a mounted ConfigMap
        config.write_text(yaml.safe_dump(data))
        site = _site(tmp_path_factory.mktemp("site"))
        env = {**os.environ, "PYTHONPATH": str(site)}
        kernels = [Instance(f"k{i}", net.host(f"k{i}", 10 + i), net.address(10 + i), net, config, env) for i in (1, 2)]
        stats = net.dir / "haproxy.sock"
        servers = {k.name: f"{k.ip}:{PORT}" for k in kernels}
        (net.dir / "haproxy.cfg").write_text(haproxy_config(net.gateway_ip, LB_PORT, servers, stats))
        for k in kernels:
            k.start()
        for k in kernels:
            k.wait_ready()
        net.spawn(None, ["haproxy", "-db", "-f", str(net.dir / "haproxy.cfg")], "haproxy.log")
        c = Cluster(net, kernels, lb, stats, config, data, pg_dsn, redis_url, prefix)
        wait_for(
            lambda: c.states() == {"k1": "UP", "k2": "UP"}, 20, lambda: f"HAProxy: {c.states()}", ignore=(OSError,)
        )
        yield c
    finally:
        net.close()


# ---------------------------------------------------------------------------- what the instances share


def test_haproxy_spreads_requests_over_both_instances(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.lb, timeout=10) as c:
        pids = {c.get("/api/echo/pid").json()["pid"] for _ in range(6)}
    assert len(pids) == 2  # round robin: one echo worker of each instance


def test_a_user_token_from_one_instance_is_accepted_by_the_other(cluster: Cluster) -> None:
    one, two = cluster.kernels
    issued = httpx.get(f"{one.url}/api/auth/guest/refresh", timeout=10)
    assert issued.status_code == 200, issued.text
    token = issued.json()["backstageIdentity"]["token"]
    who = httpx.get(f"{two.url}/api/callee/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert who.status_code == 200, who.text
    assert who.json()["type"] == "user" and who.json()["subject"] == "user:development/guest"
    # an impostor is refused by the same route: the check above could fail
    assert httpx.get(f"{two.url}/api/callee/whoami", headers={"Authorization": "Bearer x.y.z"}).status_code == 401


def test_a_plugin_token_from_one_instance_is_accepted_by_the_other(cluster: Cluster) -> None:
    one, two = cluster.kernels
    token = httpx.get(f"{one.url}/api/caller/token", params={"target": "callee"}, timeout=10)
    assert token.status_code == 200, token.text
    who = httpx.get(f"{two.url}/api/callee/services-only", headers={"Authorization": f"Bearer {token.text}"})
    assert who.status_code == 200, who.text
    assert who.json() == {"subject": "plugin:caller"}


def test_the_cache_is_shared(cluster: Cluster) -> None:
    one, two = cluster.kernels
    key = uuid.uuid4().hex
    put = httpx.post(f"{one.url}/api/shared/put", params={"k": key, "v": "from-k1"}, timeout=10)
    assert put.status_code == 200, (put.text, one.output()[-3000:])
    got = httpx.get(f"{two.url}/api/shared/get", params={"k": key}, timeout=10).json()
    assert got["value"] == {"v": "from-k1"}


def test_rate_limits_are_shared_under_the_deployments_prefix(cluster: Cluster) -> None:
    one, two = cluster.kernels
    ip = "198.18.20.1"

    def statuses(k: Instance, n: int) -> list[int]:
        with httpx.Client(base_url=k.url, headers={"X-Forwarded-For": ip}, timeout=10) as c:
            return [c.get("/api/other/ping").status_code for _ in range(n)]

    assert statuses(one, LIMIT - 1) == [200] * (LIMIT - 1)
    assert statuses(two, 3) == [200, 429, 429]  # the count of the first instance went on
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        assert list(client.scan_iter(match=f"{cluster.prefix}kernel:ratelimit:*{ip}*"))
    finally:
        client.close()


def test_a_scheduled_task_runs_once_per_period_across_both(cluster: Cluster) -> None:
    async def runs() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(cluster.pg_dsn.rsplit("/", 1)[0] + "/backstage_plugin_ticker")
        try:
            rows = await conn.fetch("SELECT pid, started, ended FROM runs WHERE task = 'tick' ORDER BY started")
            return [dict(r) for r in rows]
        finally:
            await conn.close()

    t0 = time.time()
    wait_for(
        lambda: len([r for r in asyncio.run(runs()) if r["started"] >= t0]) >= 4, 30, "too few ticks", interval=0.5
    )
    t1 = time.time()
    ticks = asyncio.run(runs())
    window = [r for r in ticks if t0 <= r["started"] <= t1]
    # once per 1 s period across both instances (each alone would tick every second too: twice as many)
    assert 4 <= len(window) <= (t1 - t0) / 1.0 + 2, (t1 - t0, window)
    done = [r for r in ticks if r["ended"] is not None]
    for prev, nxt in itertools.pairwise(done):
        assert prev["ended"] <= nxt["started"], (prev, nxt)  # never two at once
    workers = {p.pid for k in cluster.kernels for p in psutil.Process(_pid(k)).children(recursive=True)}
    assert {r["pid"] for r in ticks} <= workers  # every run was one of the two instances'


def test_a_change_of_the_shared_config_file_reaches_both(cluster: Cluster) -> None:
    greeting = f"hi-{uuid.uuid4().hex[:6]}"
    data = {**cluster.config_data, "serviced": {"greeting": greeting}}
    cluster.config.write_text(yaml.safe_dump(data))
    for k in cluster.kernels:
        wait_for(
            lambda k=k: httpx.get(f"{k.url}/api/serviced/show", timeout=5).json()["greeting"] == greeting,
            20,
            f"{k.name} did not see the new config",
            interval=0.2,
        )


# ---------------------------------------------------------------------------- instances going away


class Load:
    """Requests through HAProxy from ``CONCURRENCY`` threads, each waiting for its answer, until stopped;
    at most ``REQUESTS`` in all."""

    def __init__(self, lb: str, path: str) -> None:
        self.lb, self.path = lb, path
        self.sent = itertools.count()
        self.done = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CONCURRENCY)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.lb, timeout=20) as c:
            while not self.stopped.is_set() and next(self.sent) < REQUESTS:
                try:
                    r = c.get(self.path)
                    failed = None if r.status_code == 200 else f"{r.status_code} {r.text[:100]}"
                except httpx.HTTPError as exc:
                    failed = repr(exc)
                with self.lock:
                    self.done += 1
                    if failed:
                        self.failures.append(failed)

    def going_on(self, more: int) -> None:
        """Wait until ``more`` requests more are answered (the load is still running: it was not exhausted)."""
        target = self.done + more
        wait_for(lambda: self.done >= target, 60, f"the load stopped short of {target} (at most {REQUESTS})")

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "the load did not finish"


def _pid(k: Instance) -> int:
    assert k.proc is not None
    return k.proc.pid


def test_kill_9_costs_only_the_requests_in_flight_and_haproxy_routes_around(cluster: Cluster) -> None:
    victim = cluster.kernels[0]
    family = [_pid(victim), *(p.pid for p in psutil.Process(_pid(victim)).children(recursive=True))]
    with Load(cluster.lb, "/api/echo/sleep?s=0.05") as load:
        load.going_on(100)
        victim.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        wait_for(lambda: cluster.states()["k1"] == "DOWN", 10, lambda: f"HAProxy: {cluster.states()}")
        failed_by_then = len(load.failures)
        load.going_on(100)  # routed around it: all of these went to k2
    # at most the requests in flight on k1 when it died: no more than the threads sending them
    assert len(load.failures) <= CONCURRENCY, load.failures
    assert len(load.failures) == failed_by_then, load.failures[failed_by_then:]
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in family), 10)
    # it comes back: a new process on the same host, back in rotation by the health checks
    victim.start().wait_ready()
    wait_for(lambda: cluster.states()["k1"] == "UP", 20, lambda: f"HAProxy: {cluster.states()}")


def test_sigterm_under_load_costs_nothing(cluster: Cluster) -> None:
    leaving = cluster.kernels[1]
    assert leaving.proc is not None
    with Load(cluster.lb, "/api/echo/sleep?s=0.05") as load:
        load.going_on(100)
        leaving.proc.send_signal(signal.SIGTERM)
        # HAProxy sees readiness turn 503 and stops sending it requests while it still serves them
        wait_for(lambda: cluster.states()["k2"] == "DOWN", 10, lambda: f"HAProxy: {cluster.states()}")
        assert leaving.proc.poll() is None, "the instance left before HAProxy took it out"
        code = leaving.proc.wait(60)
        load.going_on(50)  # the load went on through the whole shutdown, and after it
    assert code == 0, leaving.output()[-3000:]
    assert load.failures == []
