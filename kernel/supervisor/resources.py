"""The supervisor's side of the plugins' cgroups (``kernel.supervisor.cgroups``): from settings to limits in force.

``Resources`` opens the kernel's subtree when ``backend.workers.cgroups`` allows, puts each new worker
in its plugin's cgroup, tells a worker the OOM killer ended for its plugin's memory limit from any other
death, says what is in force (the start-up line, ``kernel status``), and removes the subtree at exit.
"""

from __future__ import annotations

import logging

from kernel.settings import Settings
from kernel.supervisor.cgroups import Bounds, Cgroups

log = logging.getLogger("kernel")


class Resources:
    """The plugins' cgroups of one kernel, or why there are none."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cgroups: Cgroups | None = None
        #: why there are none, or where they are (for the start-up line)
        self.why = "not opened"
        self._ooms: dict[str, int] = {}

    def open(self) -> bool:
        """The subtree made where the settings and the machine allow; ``False``: it must be and cannot."""
        wanted = self.settings.workers.cgroups
        if wanted is False:
            self.why = "backend.workers.cgroups is false"
            return True
        self.cgroups, self.why = Cgroups.open(self.settings.workers.cgroup_name)
        if self.cgroups is None and wanted:
            log.error("kernel not started: backend.workers.cgroups is true and %s", self.why)
            return False
        return True

    def bounds(self, plugin_id: str) -> Bounds:
        """``plugin_id``'s cgroup limits, from its ``limits`` (``memoryMaxMb`` unset: derived, see settings)."""
        limits = self.settings.limits(plugin_id)
        memory = limits.memory_max_mb
        if memory is None:
            memory = limits.memory_hard_mb * (self.settings.replicas(plugin_id) + 1)
        return Bounds(limits.cpu_percent, limits.cpu_weight, limits.max_processes, memory)

    def join(self, plugin_id: str, pid: int) -> None:
        """New worker ``pid`` into its plugin's cgroup (made with its limits on first use)."""
        if self.cgroups is None:
            return
        try:
            self.cgroups.prepare(plugin_id, self.bounds(plugin_id))
            self._ooms.setdefault(plugin_id, self.cgroups.oom_kills(plugin_id))
            self.cgroups.add(plugin_id, pid)
        except OSError as exc:
            log.error("worker pid %d of plugin '%s' runs outside its cgroup: %s", pid, plugin_id, exc)

    def death_note(self, plugin_id: str) -> str:
        """``", killed by the OOM killer ..."`` when the OOM killer ended a process of ``plugin_id`` since
        the last call, else ``""``."""
        if self.cgroups is None:
            return ""
        count = self.cgroups.oom_kills(plugin_id)
        seen = self._ooms.get(plugin_id, 0)
        self._ooms[plugin_id] = count
        if count <= seen:
            return ""
        bounds = self.cgroups.bounds(plugin_id)
        limit = f" of {bounds.memory_max_mb} MB" if bounds else ""
        return f", killed by the OOM killer: its plugin's cgroup is over its memory limit{limit} (memoryMaxMb)"

    def line(self, plugin_ids: list[str]) -> str:
        """The resources part of the start-up line."""
        if self.cgroups is None:
            return f"resources: cgroups off ({self.why}); CPU and processes unbounded"
        shown = {self.bounds(pid).describe() for pid in plugin_ids}
        each = shown.pop() if len(shown) == 1 else "per plugin, as kernel status shows"
        return f"resources: a cgroup per plugin ({self.why}): {each}"

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.close()
            self.cgroups = None
