"""``kernel worker --plugin ID --join tcp://HOST:7400``: a worker of a running kernel, on another host.

It joins the supervisor's join port over CurveZMQ (``kernel.transport.curve``), greeting it with the
plugin it serves; the supervisor admits it (``kernel.supervisor.remote``) and answers with its worker
spec: its identity, the gateways' ``tcp://`` endpoints, its plugin's scoped config. From there it is
the same worker code as a local one (``kernel.worker.__main__.serve``), its sockets CURVE clients.

It needs no app-config and no inbound port. While the kernel is unreachable it keeps trying; when
the kernel goes silent for ``heartbeatTimeout`` (a cut network, a restarted kernel), or tells it to
stop (draining, a recycle), it starts over as a fresh process (``exec``, same pid) and joins again.
On SIGTERM it asks to leave, drains once no gateway routes to it, and exits 0.
A refused key, or a refusal to admit it, ends it with exit code 2 and a message naming why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import sys
import time

import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message

from kernel.errors import BootError, ConfigError, ProtocolError
from kernel.launch import WorkerSpec, install_event_loop_policy
from kernel.logs import install_crash_handlers
from kernel.protocol import Error, Joined, decode
from kernel.transport.connection import hello
from kernel.transport.curve import ClientKeys, fingerprint
from kernel.transport.sockets import dealer
from kernel.worker.connection import RemoteLink

log = logging.getLogger("kernel.worker")
EXIT_REFUSED = 2
#: seconds without an answer before saying so in the log (it keeps trying)
PATIENCE = 5.0
#: seconds between two joins after a failure that was not a refusal
REJOIN_DELAY = 1.0
#: failed handshakes in a row (no refusal) before suggesting the server key is wrong
HANDSHAKE_HINT = 3


class Refused(Exception):
    """The kernel will not have this worker: its key, or its plugin (the message says which)."""


def join_kernel(plugin_id: str, join: str, keys: ClientKeys) -> WorkerSpec:
    """Greet the kernel at ``join`` until it answers: the worker spec it admits us with; ``Refused``."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = dealer(ctx, join, f"join-{secrets.token_hex(8)}", secure=keys.apply)
    events = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_DISCONNECTED
    monitor = sock.get_monitor_socket(events)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    greeting = hello("worker", plugin_id=plugin_id)
    started, said, failures = time.monotonic(), False, 0
    try:
        while True:
            ready = dict(poller.poll(1000))
            if monitor in ready:
                event = recv_monitor_message(monitor)
                if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    failures = 0
                    sock.send(greeting)  # on every new connection: a restarted kernel never saw the last one
                elif event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    raise Refused(
                        f"the kernel at {join} refused this worker's key {fingerprint(keys.public)}: "
                        "its public certificate must be in the kernel's backend.workers.remote.allowedKeys"
                    )
                elif event["event"] == zmq.EVENT_DISCONNECTED:
                    failures += 1
                    if failures == HANDSHAKE_HINT:
                        log.warning(
                            "the kernel at %s keeps closing the connection: is --server-key the kernel's public "
                            "certificate (the pair of its serverKey)? still trying", join,
                        )  # fmt: skip
            if sock in ready:
                try:
                    msg = decode(sock.recv())
                except ProtocolError as exc:
                    raise Refused(f"the kernel at {join} answered in a way this worker cannot read: {exc}") from None
                if type(msg) is Joined:
                    return msgspec.json.decode(msg.spec, type=WorkerSpec)
                if type(msg) is Error:
                    raise Refused(f"the kernel at {join} refused to admit this worker: {msg.message}")
            if not said and time.monotonic() - started > PATIENCE:
                said = True
                log.warning("no answer yet from the kernel at %s; still trying", join)
    finally:
        monitor.close(0)
        sock.close(0)
        ctx.term()


def reachable(spec: WorkerSpec, join: str) -> WorkerSpec:
    """The spec with the endpoints as this host reaches them: control is the join port; a gateway on
    a wildcard host (the kernel listens on every address, nothing advertised) is on the joined host."""
    host = join.removeprefix("tcp://").rpartition(":")[0]
    gateways = []
    for endpoint in spec.gateways:
        there, _, port = endpoint.removeprefix("tcp://").rpartition(":")
        gateways.append(f"tcp://{host if there in ('0.0.0.0', '*', '[::]', '::') else there}:{port}")
    return msgspec.structs.replace(spec, control=join, gateways=gateways)


def start_over(delay: float = 0.0) -> None:
    """Run this command again as a fresh process (same pid): a clean join, a clean plugin."""
    if delay:
        time.sleep(delay)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "kernel.cli", *sys.argv[1:]])


def run(plugin_id: str, join: str, server_key: str, key: str) -> int:
    """The ``kernel worker`` command: join, serve, and join again whenever the link is lost."""
    from kernel.worker.__main__ import serve

    try:
        keys = ClientKeys.load(server_key, key)
        log.info("plugin '%s': joining the kernel at %s with key %s", plugin_id, join, fingerprint(keys.public))
        spec = reachable(join_kernel(plugin_id, join, keys), join)
    except (ConfigError, Refused) as exc:
        print(f"kernel worker: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    log.info("plugin '%s': admitted as %s", plugin_id, spec.worker_id)
    install_crash_handlers(plugin_id)
    if spec.settings.tracing.enabled:  # as a local worker's start-up does (``kernel.launch.start_child``)
        from kernel.tracing import start_tracing

        start_tracing(spec.settings.tracing, role="worker", name=spec.name, plugin_id=plugin_id)
    keys = dataclasses.replace(keys, timeout=spec.settings.workers.heartbeat_timeout)
    link = RemoteLink(secure=keys.apply, on_lost=start_over)
    install_event_loop_policy()
    try:
        code = asyncio.run(serve(spec, link))
    except BootError as exc:
        log.error("plugin '%s' failed to start: %s", plugin_id, exc)
        return 3
    if (link.told_to_stop and not link.leaving) or code != 0:  # drained on the kernel's word, or the link failed
        start_over(REJOIN_DELAY if code else 0.0)
    return code
