"""A ZeroMQ client without CURVE: ``python plain_client.py HOST PORT...`` tries each port in plain text.

For each port it connects a DEALER (no security mechanism), sends a worker's ``Hello``, and reports
as JSON the socket events it saw (``CONNECTED`` proves the attempt reached the port) and how many
answers came back within two seconds.
"""

from __future__ import annotations

import json
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from kernel.transport.connection import hello


def attempt(host: str, port: int) -> dict[str, object]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    monitor = sock.get_monitor_socket()
    sock.connect(f"tcp://{host}:{port}")
    sock.send(hello("worker", plugin_id="other"))
    events: list[str] = []
    answers = 0
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    deadline = time.monotonic() + 2.0
    while (left := deadline - time.monotonic()) > 0:
        for ready, _ in poller.poll(left * 1000):
            if ready is monitor:
                events.append(zmq.Event(recv_monitor_message(monitor)["event"]).name or "?")
            else:
                sock.recv_multipart()
                answers += 1
    monitor.close(0)
    sock.close(0)
    ctx.term()
    return {"events": events, "answers": answers}


if __name__ == "__main__":
    host = sys.argv[1]
    print(json.dumps({port: attempt(host, int(port)) for port in sys.argv[2:]}))
