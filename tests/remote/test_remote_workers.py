"""Workers on another host, over tcp:// with CurveZMQ, across two network namespaces.

The kernel runs in one namespace ("host"), ``kernel worker`` processes in the other; a veth pair is the
only link. Plugin ``other`` has no local worker (``replicas: 0``): only remote ones serve it. Plugin
``echo`` has one local worker, and a remote one beside it. Tests share the kernel and run in order:
each leaves the remote workers it started joined, or stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernel.testing import make_package
from kernel.testing.processes import wait_for
from kernel.transport.curve import fingerprint, generate, load_public
from tests.plugins import ECHO, OTHER
from tests.remote.hosts import JOIN_PORT, KERNEL_IP, WORKER_IP, Hosts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
HEARTBEAT_TIMEOUT = 3.0
#: a join takes a fresh interpreter's discovery and the plugin's boot, on a busy machine
JOIN_TIMEOUT = 45.0


@dataclass
class Cluster:
    hosts: Hosts
    keys: Path
    allowed: Path
    env: dict[str, str]

    def worker(self, plugin_id: str, key: str, name: str) -> int:
        proc = self.hosts.worker(plugin_id, self.keys / f"{key}.key_secret", self.keys / "server.key", self.env, name)
        return proc.pid

    def remote_workers(self, plugin_id: str) -> set[str]:
        return {
            w for w, state in self.hosts.workers().items() if w.startswith(f"{plugin_id}.remote.") and state == "ready"
        }

    def serving(self, plugin_id: str, pid: int) -> bool:
        """A request to ``plugin_id`` was answered by process ``pid``."""
        path = "/api/other/ping" if plugin_id == "other" else "/api/echo/pid"
        status, body = self.hosts.get(path)
        return status == 200 and body["pid"] == pid


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    hosts = Hosts()
    try:
        keys, allowed = hosts.dir / "keys", hosts.dir / "allowed"
        generate(keys, "server")
        generate(keys, "worker")
        generate(keys, "echo-only", plugins=["echo"])
        allowed.mkdir()
        for name in ("worker", "echo-only"):
            shutil.copy(keys / f"{name}.key", allowed)
        site = make_package(
            hosts.dir / "site", "test-remote", {"test_echo": ECHO, "test_other": OTHER},
            {"echo": "test_echo:plugin", "other": "test_other:plugin"},
        )  # fmt: skip
        env = {"PYTHONPATH": os.pathsep.join([str(site), os.getcwd()])}
        config = {
            "backend": {
                "gateway": {"workerWaitTimeout": 0.5},
                "workers": {
                    "heartbeatInterval": 0.2,
                    "plugins": {"other": {"replicas": 0}, "echo": {"replicas": 1}},
                    "remote": {
                        "listen": f"{KERNEL_IP}:{JOIN_PORT}",
                        "serverKey": str(keys / "server.key_secret"),
                        "allowedKeys": str(allowed),
                        "heartbeatTimeout": HEARTBEAT_TIMEOUT,
                    },
                },
            }
        }
        kernel = hosts.kernel(config, env)
        wait_for(
            lambda: kernel.poll() is None and hosts.get("/.kernel/health/v1/liveness")[0] == 200,
            60, lambda: f"kernel not up:\n{hosts.log('kernel')}",
        )  # fmt: skip
        yield Cluster(hosts, keys, allowed, env)
    finally:
        hosts.close()


def test_a_worker_host_joins_and_serves_under_load(cluster: Cluster) -> None:
    hosts = cluster.hosts
    status, body = hosts.get("/api/other/ping")
    assert status == 503 and body["error"]["name"] == "ServiceUnavailableError"  # no worker of it yet
    pid = cluster.worker("other", "worker", "other-worker")
    wait_for(
        lambda: cluster.serving("other", pid), JOIN_TIMEOUT, lambda: hosts.log("other-worker") + hosts.log("kernel")
    )
    assert "remote worker other.remote." in hosts.log(
        "kernel"
    ) and f"key {fingerprint(load_public(cluster.keys / 'worker.key'))}" in hosts.log("kernel")
    answers = hosts.many("/api/other/ping", 400)
    assert [a for a in answers if a[0] != 200 or a[1]["pid"] != pid] == []


def test_local_and_remote_workers_share_a_plugin_and_a_cut_link_moves_its_requests(cluster: Cluster) -> None:
    hosts = cluster.hosts
    other = next(p for p in hosts.procs if p.args[-1].endswith("worker.key_secret") and "other" in p.args)
    remote = cluster.worker("echo", "echo-only", "echo-worker")
    wait_for(lambda: cluster.remote_workers("echo"), JOIN_TIMEOUT, lambda: hosts.log("echo-worker"))
    # both serve: requests held open spread over the least-loaded workers
    pids = {body["pid"] for status, body in hosts.many("/api/echo/sleep?s=0.2", 16) if status == 200}
    assert remote in pids and len(pids) == 2, pids
    before = cluster.remote_workers("echo") | cluster.remote_workers("other")

    hosts.cut()
    wait_for(lambda: not (cluster.remote_workers("echo") | cluster.remote_workers("other")), HEARTBEAT_TIMEOUT + 8,
             lambda: f"remote workers still listed after the cut: {hosts.workers()}")  # fmt: skip
    answers = hosts.many("/api/echo/pid", 50)
    assert {a[0] for a in answers} == {200} and remote not in {a[1]["pid"] for a in answers}
    status, body = hosts.get("/api/other/ping")
    assert status == 503 and body["error"]["name"] == "ServiceUnavailableError", body
    assert body["request"] == {"method": "GET", "url": "/api/other/ping"} and body["response"] == {"statusCode": 503}
    assert "is gone (cut off)" in hosts.log("kernel")

    hosts.restore()  # each worker notices the silence, starts over and joins again: new worker ids
    wait_for(lambda: cluster.serving("other", other.pid), JOIN_TIMEOUT, lambda: hosts.log("other-worker"))
    wait_for(lambda: cluster.remote_workers("echo") - before, JOIN_TIMEOUT, lambda: hosts.log("echo-worker"))
    assert other.poll() is None and "joining again" in hosts.log("other-worker")


def test_an_unknown_key_is_refused_until_allowed_and_a_removed_one_is_retired(cluster: Cluster) -> None:
    hosts = cluster.hosts
    generate(cluster.keys, "stranger")
    proc = hosts.worker(
        "other", cluster.keys / "stranger.key_secret", cluster.keys / "server.key", cluster.env, "stranger"
    )
    assert proc.wait(JOIN_TIMEOUT) == 2
    prefix = fingerprint(load_public(cluster.keys / "stranger.key"))
    assert f"refused this worker's key {prefix}" in hosts.log("stranger")
    assert f"refused a connection from {WORKER_IP}: CURVE key {prefix} is not in allowedKeys" in hosts.log("kernel")

    joined = cluster.remote_workers("other")
    shutil.copy(cluster.keys / "stranger.key", cluster.allowed)  # rotation: no restart of the kernel
    rotated = hosts.worker(
        "other", cluster.keys / "stranger.key_secret", cluster.keys / "server.key", cluster.env, "rotated"
    )
    wait_for(lambda: cluster.remote_workers("other") - joined, JOIN_TIMEOUT, lambda: hosts.log("rotated"))
    # SIGTERM under load: it asks to leave, the gateways stop routing to it, it drains and exits 0
    load = hosts.send("/api/other/ping", 800)

    def served_by_it() -> bool:
        return any(f.done() and f.result()[0] == 200 and f.result()[1]["pid"] == rotated.pid for f in load)

    wait_for(served_by_it, 10, "no request reached it")
    rotated.terminate()
    assert not all(f.done() for f in load)  # the load goes on while it leaves
    answers = [f.result() for f in load]
    assert rotated.wait(15) == 0
    assert [a for a in answers if a[0] != 200] == []
    assert rotated.pid in {a[1]["pid"] for a in answers}  # it served during the load
    wait_for(lambda: cluster.remote_workers("other") == joined, 5, lambda: str(hosts.workers()))
    assert "asks to leave" in hosts.log("kernel")

    # revocation: its key leaves allowedKeys, the joined worker is retired, and its next join refused
    again = hosts.worker(
        "other", cluster.keys / "stranger.key_secret", cluster.keys / "server.key", cluster.env, "revoked"
    )
    wait_for(lambda: cluster.remote_workers("other") - joined, JOIN_TIMEOUT, lambda: hosts.log("revoked"))
    (cluster.allowed / "stranger.key").unlink()
    assert again.wait(JOIN_TIMEOUT) == 2
    assert "left allowedKeys" in hosts.log("kernel") and "refused this worker's key" in hosts.log("revoked")
    assert cluster.remote_workers("other") == joined


def test_a_key_bound_to_a_plugin_cannot_join_as_another(cluster: Cluster) -> None:
    proc = cluster.hosts.worker(
        "other", cluster.keys / "echo-only.key_secret", cluster.keys / "server.key", cluster.env, "bound"
    )
    assert proc.wait(JOIN_TIMEOUT) == 2
    assert "refused to admit this worker: key echo-only.key may serve only echo" in cluster.hosts.log("bound")


def test_plain_text_connections_are_refused(cluster: Cluster) -> None:
    client = str(Path(__file__).with_name("plain_client.py"))
    env = ["env", f"PYTHONPATH={cluster.env['PYTHONPATH']}"]
    before = set(cluster.hosts.workers())  # the workers by id: their states may move on meanwhile
    out = cluster.hosts.run(
        cluster.hosts.worker_ns, [*env, sys.executable, client, KERNEL_IP, str(JOIN_PORT), str(JOIN_PORT + 1)]
    )
    for port, seen in json.loads(out).items():
        assert "CONNECTED" in seen["events"], (port, seen)  # it reached the port
        assert seen["answers"] == 0 and "HANDSHAKE_SUCCEEDED" not in seen["events"], (port, seen)
        assert {"HANDSHAKE_FAILED_PROTOCOL", "DISCONNECTED"} & set(seen["events"]), (port, seen)
    assert set(cluster.hosts.workers()) == before  # nobody joined
