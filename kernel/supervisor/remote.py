"""Workers on other hosts: admitting them on the join port, and the handle the supervisor keeps of each.

With ``backend.workers.remote`` the supervisor's control socket also listens on ``tcp://`` as a CURVE
server (``kernel.transport.curve``): only keys in ``allowedKeys`` complete a handshake. A remote
worker (``kernel worker --join``, ``kernel.worker.remote``) greets it with a ``Hello`` naming its
plugin from a routing id of its own choosing; ``RemoteJoins.join`` admits it as a worker of that
plugin when the plugin is installed here and its key may serve it, and answers ``Joined``: a worker
spec like a local worker's (its id, secret, routing id on the gateways, the gateways' ``tcp://``
endpoints, its plugin's scoped config). The worker then connects to every gateway and comes back on
the control socket under its worker id with the secret, exactly as a local worker does.

Its identity is bound on the wire: the ``Child`` remembers the CURVE key it joined with, and the
control channel drops any message for that worker id that comes with another key (or with none);
its routing id on the gateways carries a secret only it and the gateways know. A remote worker
counts as gone when it leaves (``Shutdown`` back, after draining), or after ``heartbeatTimeout``
without a heartbeat (a cut network); the supervisor never restarts one: it joins again itself. A
worker whose key leaves ``allowedKeys`` is retired like a recycled one: it drains, and its next join
is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import msgspec

from kernel.config import Config
from kernel.protocol import Error, Hello, Joined, Message
from kernel.settings import RemoteWorkers
from kernel.supervisor.children import Child, Launcher
from kernel.supervisor.table import PluginRecord
from kernel.transport.connection import hello_refusal
from kernel.transport.curve import AllowedKeys, fingerprint

log = logging.getLogger("kernel")


class RemoteProcess:
    """The supervisor's handle of a remote worker: it has no local pid; stopping it is a message."""

    def __init__(self, stop: Callable[[], object]) -> None:
        self._stop = stop
        self._code: int | None = None

    @property
    def pid(self) -> int:
        return 0  # not a process of this host: no /proc figures, no signals

    def exit_code(self) -> int | None:
        return self._code

    def left(self) -> None:
        """It said it leaves, having drained."""
        if self._code is None:
            self._code = 0

    def terminate(self) -> None:
        self._stop()  # best effort: it drains and joins again
        self.left()

    def kill(self) -> None:
        """Count it as gone now (cut off, or over a limit): it is told to stop if it can still hear."""
        self._stop()
        if self._code is None:
            self._code = -9

    def wait(self) -> int:
        return self._code if self._code is not None else 0


class RemoteJoins:
    """Admits remote workers of the installed ``plugins`` into ``children``, with keys from ``allowed``."""

    def __init__(
        self,
        settings: RemoteWorkers,
        launcher: Launcher,
        plugins: Mapping[str, PluginRecord],
        children: dict[str, Child],
        config: Callable[[], Config],
        stop: Callable[[Child], object],
        allowed: AllowedKeys | None = None,
    ) -> None:
        self.settings = settings
        self.launcher = launcher
        self.plugins = plugins
        self.children = children
        self.config = config
        self.stop = stop
        #: the keys that may join, and the plugins each may serve (shared with the socket's ZAP handler)
        self.allowed = allowed or AllowedKeys(settings.allowed_keys)
        gateways = launcher.settings.gateway.processes
        #: where workers are told to reach the gateways (a wildcard host: the host they joined)
        self.gateways = [settings.gateway_endpoint(i, advertised=True) for i in range(gateways)]

    def join(self, peer: bytes, hello: Message, key: str) -> Message:
        """The answer to a remote worker's first ``Hello`` on the join port: ``Joined``, or an ``Error``."""
        refused = hello_refusal(hello, f"join from key {fingerprint(key)}")
        if refused is not None:
            return refused
        assert isinstance(hello, Hello)
        who = f"a remote worker (pid {hello.pid}, key {fingerprint(key)})"
        allowed = self.allowed.lookup(key)
        reason = ""
        if allowed is None:  # removed from allowedKeys since its handshake
            reason = f"key {fingerprint(key)} is no longer in allowedKeys"
        elif hello.role != "worker":
            reason = f"only workers join here, not a {hello.role}"
        elif hello.plugin_id not in self.plugins:
            reason = (
                f"no plugin '{hello.plugin_id}' runs in this kernel (installed: {', '.join(self.plugins) or 'none'})"
            )
        elif not allowed.allows(hello.plugin_id):
            reason = f"key {allowed.name} may serve only {', '.join(sorted(allowed.plugins or ()))}"
        if reason:
            log.error("refused %s of plugin '%s': %s", who, hello.plugin_id, reason)
            return Error(0, "NotAllowedError", reason)
        record = self.plugins[hello.plugin_id]
        worker_id = f"{record.id}.remote.{self.launcher.next_number()}"
        workers = msgspec.structs.replace(
            self.launcher.settings.workers, heartbeat_timeout=self.settings.heartbeat_timeout
        )
        spec = self.launcher.spec(record.entry, worker_id, self.config(), control="remote", gateways=self.gateways)
        spec = msgspec.structs.replace(spec, settings=msgspec.structs.replace(spec.settings, workers=workers))
        child = Child(
            worker_id, "worker", RemoteProcess(lambda: None), plugin_id=record.id, slot=-1,
            secret=spec.secret, route=spec.route, key=key,
        )  # fmt: skip
        child.process = RemoteProcess(lambda: self.stop(child))
        self.children[worker_id] = child
        assert allowed is not None
        log.info("remote worker %s of plugin '%s' joins (pid %d, key %s: %s)", worker_id, record.id, hello.pid,
                 fingerprint(key), allowed.name)  # fmt: skip
        return Joined(msgspec.json.encode(spec))

    def revoked(self) -> list[Child]:
        """The remote workers whose key no longer lets them serve their plugin (removed from allowedKeys)."""
        found = []
        for child in self.children.values():
            if child.key and not child.retiring and not child.recycling:
                allowed = self.allowed.lookup(child.key)
                if allowed is None or not allowed.allows(child.plugin_id):
                    found.append(child)
        return found
