"""Every child proves which child it is: the supervisor hands each a secret on its stdin at launch and
takes its Hello only with that secret. A local process that grabs the next worker's identity on the
control and gateway sockets (the ids are predictable) is refused, never becomes a worker, and never
sees a request (with its credentials); the plugin comes back on a real worker.
"""

from __future__ import annotations

import glob
import os
import signal
import threading
from pathlib import Path

import httpx
import zmq

from kernel import protocol as p
from kernel.testing import KernelProcess, wait_for
from tests.conftest import TOKEN, base_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _endpoint(k: KernelProcess, name: str) -> str:
    assert k.proc is not None
    [path] = glob.glob(f"/tmp/kernel-{k.proc.pid}-*/{name}")
    return f"ipc://{path}"


def _worker_ids(c: httpx.Client) -> list[str]:
    report = c.get("/.kernel/instance/v1/plugins", headers=AUTH).json()
    return [w for plugin in report["plugins"] for w in plugin["workers"]]


def test_a_process_posing_as_the_next_worker_is_refused_and_sees_no_request(site: Path) -> None:
    config = base_config()
    config["backend"]["workers"].update({"heartbeatTimeout": 2, "startTimeout": 10, "restartInitialDelay": 0.05})
    with KernelProcess(config, paths=[site]) as k, httpx.Client(base_url=k.url, timeout=20) as c:
        first = c.get("/api/echo/pid", headers=AUTH).json()["pid"]
        next_id = f"echo.0.{max(int(w.rsplit('.', 1)[1]) for w in _worker_ids(c)) + 1}"
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sockets = []
        for endpoint in (_endpoint(k, "control"), _endpoint(k, "gateway-0")):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTING_ID, next_id.encode())
            sock.connect(endpoint)
            sockets.append(sock)
        control, gateway = sockets
        forged = p.encode(p.Hello(p.PROTOCOL_VERSION, "worker", "echo", next_id, os.getpid(), [], "a guess"))
        seen: list[p.Message] = []
        stop = threading.Event()

        def pose() -> None:  # greet again and again: the supervisor only listens once the child exists
            while not stop.is_set():
                control.send(forged)
                gateway.send(forged)
                for sock in (control, gateway):
                    while sock.poll(0):
                        seen.append(p.decode(sock.recv()))
                stop.wait(0.05)

        poser = threading.Thread(target=pose)
        poser.start()
        try:
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: f"claims to be worker {next_id}: wrong secret" in k.output(), 20, k.output)

            def real_worker_back() -> bool:
                r = c.get("/api/echo/pid", headers=AUTH)
                return r.status_code == 200 and r.json()["pid"] != first

            wait_for(real_worker_back, 30, k.output)
            for _ in range(20):
                assert c.get("/api/echo/pid", headers=AUTH).status_code == 200
        finally:
            stop.set()
            poser.join()
            for sock in sockets:
                sock.close(0)
            ctx.term()
        assert not [m for m in seen if isinstance(m, p.RequestHead)], "the poser was sent a request"
        assert next_id not in _worker_ids(c)
