"""The worker table: what the supervisor knows of every plugin, as gateways need it to route."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kernel.protocol import AuthPolicy, PluginState, PluginStateName, WorkerTable
from kernel.registry import PluginEntry
from kernel.supervisor.children import Child
from kernel.supervisor.restarts import RestartPolicy


@dataclass
class PluginRecord:
    """One plugin: its package, how many workers it should have, its state and auth policies."""

    entry: PluginEntry
    replicas: int
    policy: str  # onPluginBootFailure: "abort" | "continue"
    restarts: RestartPolicy
    state: PluginStateName = "starting"
    reason: str = ""
    policies: list[AuthPolicy] = field(default_factory=list)
    ever_ready: bool = False
    #: cool-downs after flapping since it was last ready (each one twice as long)
    cooldowns: int = 0
    #: what keeps it apart (``kernel.supervisor.isolation.per_plugin``), once the supervisor started it
    isolation: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.entry.id


def build_table(
    generation: int,
    plugins: Iterable[PluginRecord],
    children: Iterable[Child],
    failed_at_load: Mapping[str, str],
    accepting: bool,
    leaving: bool = False,
) -> WorkerTable:
    """The table in force: each plugin's ready workers and state (``ready``, ``degraded``, ``starting``).

    A plugin ``failed`` or ``stopping`` keeps that state; plugins that failed to load are listed as failed.
    """
    workers = [c for c in children if c.kind == "worker"]
    states = []
    for p in plugins:
        mine = [c for c in workers if c.plugin_id == p.id]
        # a replacement takes traffic only when the Replacer swaps it in, in the same table as the old one leaves
        ready = [c.ident for c in mine if c.ready and not c.unready and not c.retiring and not c.replacing]
        draining = [c.ident for c in mine if c.retiring]
        reason = p.reason
        if p.state not in ("failed", "stopping"):
            # remote workers (``kernel.supervisor.remote``) come on top of the replicas
            p.state = "ready" if ready and len(ready) >= p.replicas else ("degraded" if ready else "starting")
            reason = next((c.unready for c in mine if c.unready and not c.retiring), "")
        detail = {c.ident: c.state() for c in mine}
        routes = {c.ident: c.route for c in mine if c.route and (c.ident in ready or c.ident in draining)}
        states.append(
            PluginState(
                p.id,
                p.state,
                p.policies,
                ready,
                reason,
                p.entry.distribution,
                p.entry.version,
                detail,
                draining,
                routes,
                p.isolation,
            )
        )
    for pid, reason in failed_at_load.items():
        states.append(PluginState(pid, "failed", [], [], reason))
    return WorkerTable(generation, states, accepting, leaving)
