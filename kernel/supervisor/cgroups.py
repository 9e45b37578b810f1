"""A cgroup per plugin under a subtree the kernel owns: CPU, process count and memory bounded per plugin.

``Cgroups.open`` makes ``<name>-<kernel pid>`` (``backend.workers.cgroupName``) below the kernel's own
cgroup, in each hierarchy that has the ``cpu``, ``pids`` and ``memory`` controllers: cgroup v1 (one
mount per controller, as on this project's machines) or v2 (one unified mount; there the kernel first
moves itself into ``<subtree>/supervisor``, as a delegated service does, since a v2 cgroup holding
processes cannot hand controllers to its children: it must be the only process in its cgroup). Each
plugin gets ``<subtree>/<pluginId>`` with its limits (``kernel.settings.WorkerLimits``), and each of its
workers goes in before it reads its spec, so before any plugin code runs (``add``), spawned and
zygote-forked alike; what those workers fork stays in it:

- ``cpuPercent``: ``cpu.max`` (v1 ``cpu.cfs_quota_us``), a share of one core for all the plugin's workers;
- ``cpuWeight``: ``cpu.weight`` (v1 ``cpu.shares``): under contention each plugin gets its weight's
  share of the CPU, however many processes it runs (100 each by default: plugins share equally);
- ``maxProcesses``: ``pids.max``, processes and threads together: a fork bomb gets ``EAGAIN``;
- ``memoryMaxMb``: ``memory.max`` (v1 ``memory.limit_in_bytes``, and the swap with it): above it the
  Linux kernel's OOM killer ends a process of that plugin only (``oom_kills`` counts them).

When the kernel stops (``close``), what is left in a plugin's cgroup is killed and the subtree removed;
a subtree whose kernel is gone (killed) is removed by the next kernel with the same name.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from kernel.transport.endpoints import pid_alive

CONTROLLERS = ("cpu", "pids", "memory")
_PERIOD_US = 100_000


@dataclass(frozen=True)
class Bounds:
    """One plugin's cgroup limits; ``0``: none."""

    cpu_percent: int = 0
    cpu_weight: int = 100
    max_processes: int = 0
    memory_max_mb: int = 0

    def describe(self) -> str:
        parts = [f"CPU {self.cpu_percent}% of a core" if self.cpu_percent else "CPU uncapped"]
        parts.append(f"weight {self.cpu_weight}")
        parts.append(f"{self.max_processes} processes" if self.max_processes else "processes unbounded")
        parts.append(f"memory {self.memory_max_mb} MB" if self.memory_max_mb else "memory unbounded")
        return ", ".join(parts)


def _mounts() -> tuple[dict[str, Path], Path | None]:
    """The v1 mount point of each controller, and the v2 (unified) mount point, from ``/proc/self/mountinfo``."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        point = Path(fields[4].replace("\\040", " "))
        if rest[0] == "cgroup2":
            v2 = point
        elif rest[0] == "cgroup":
            for option in rest[2].split(","):
                if option in CONTROLLERS:
                    v1[option] = point
    return v1, v2


def _own_paths() -> tuple[dict[str, str], str | None]:
    """The kernel's own cgroup path per v1 controller, and in v2, from ``/proc/self/cgroup``."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if number == "0" and not controllers:
            v2 = path
        for controller in controllers.split(","):
            v1[controller] = path
    return v1, v2


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class Cgroups:
    """The kernel's subtree: ``dirs`` maps each controller to the subtree's directory in its hierarchy."""

    def __init__(self, version: int, dirs: dict[str, Path], *, moved_from: Path | None = None) -> None:
        self.version = version
        self.dirs = dirs
        self._moved_from = moved_from  # v2: the cgroup the kernel left for ``<subtree>/supervisor``
        self._enabled: list[str] = []  # v2: the controllers it enabled there (none that were on before)
        self._plugins: dict[str, Bounds] = {}

    @classmethod
    def open(cls, name: str) -> tuple[Cgroups | None, str]:
        """The subtree made, or ``None`` and why not (for the start-up line)."""
        try:
            v1_mounts, v2_mount = _mounts()
            v1_own, v2_own = _own_paths()
        except OSError as exc:
            return None, f"cgroups cannot be read ({exc})"
        sub = f"{name}-{os.getpid()}"
        try:
            if all(c in v1_mounts and c in v1_own for c in CONTROLLERS):
                dirs = {}
                for c in CONTROLLERS:
                    base = v1_mounts[c] / v1_own[c].lstrip("/")
                    _clean_stale(base, name)
                    (base / sub).mkdir(exist_ok=True)
                    dirs[c] = base / sub
                return cls(1, dirs), f"cgroup v1 under {dirs['pids'].parent}"
            if v2_mount is not None and v2_own is not None:
                return cls._open_v2(v2_mount / v2_own.lstrip("/"), name, sub, is_root=v2_own == "/")
        except OSError as exc:
            return None, f"cgroups not writable here ({exc.strerror}: {exc.filename})"
        missing = [c for c in CONTROLLERS if c not in v1_mounts]
        return None, f"no cgroup hierarchy with the {', '.join(missing)} controller(s) is mounted"

    @classmethod
    def _open_v2(cls, own: Path, name: str, sub: str, *, is_root: bool) -> tuple[Cgroups | None, str]:
        available = (own / "cgroup.controllers").read_text().split()
        missing = [c for c in CONTROLLERS if c not in available]
        if missing:
            return None, f"cgroup v2 at {own} lacks the {', '.join(missing)} controller(s)"
        others = [p for p in (own / "cgroup.procs").read_text().split() if int(p) != os.getpid()]
        if others and not is_root:  # the root cgroup may hold processes; any other must be the kernel's alone
            return None, f"cgroup v2 at {own} holds other processes ({len(others)}): give the kernel one of its own"
        _clean_stale(own, name)
        tree = own / sub
        (tree / "supervisor").mkdir(parents=True, exist_ok=True)
        _write(tree / "supervisor" / "cgroup.procs", str(os.getpid()))
        had = (own / "cgroup.subtree_control").read_text().split()
        enabled = [c for c in CONTROLLERS if c not in had]  # only these are handed back at close
        if enabled:
            _write(own / "cgroup.subtree_control", " ".join(f"+{c}" for c in enabled))
        _write(tree / "cgroup.subtree_control", " ".join(f"+{c}" for c in CONTROLLERS))
        made = cls(2, dict.fromkeys(CONTROLLERS, tree), moved_from=own)
        made._enabled = enabled
        return made, f"cgroup v2 under {own}"

    def path(self, plugin_id: str) -> Path:
        return self.dirs["pids"] / plugin_id

    def prepare(self, plugin_id: str, bounds: Bounds) -> None:
        """``plugin_id``'s cgroup, made (once) with ``bounds``."""
        if self._plugins.get(plugin_id) == bounds:
            return
        for c in CONTROLLERS:
            (self.dirs[c] / plugin_id).mkdir(exist_ok=True)
        for file, value in self._files(bounds):
            path = self.dirs[file.partition(".")[0]] / plugin_id / file
            if path.exists():
                _write(path, value)
        self._plugins[plugin_id] = bounds

    def _files(self, b: Bounds) -> list[tuple[str, str]]:
        memory = str(b.memory_max_mb * 1024 * 1024) if b.memory_max_mb else "max"
        if self.version == 2:
            cpu = f"{b.cpu_percent * _PERIOD_US // 100} {_PERIOD_US}" if b.cpu_percent else f"max {_PERIOD_US}"
            return [
                ("cpu.max", cpu),
                ("cpu.weight", str(b.cpu_weight)),
                ("pids.max", str(b.max_processes) if b.max_processes else "max"),
                ("memory.max", memory),
                ("memory.swap.max", "0" if b.memory_max_mb else "max"),
            ]
        v1_memory = memory if b.memory_max_mb else "-1"
        return [
            ("cpu.cfs_period_us", str(_PERIOD_US)),
            ("cpu.cfs_quota_us", str(b.cpu_percent * _PERIOD_US // 100) if b.cpu_percent else "-1"),
            ("cpu.shares", str(max(2, b.cpu_weight * 1024 // 100))),
            ("pids.max", str(b.max_processes) if b.max_processes else "max"),
            ("memory.limit_in_bytes", v1_memory),
            ("memory.memsw.limit_in_bytes", v1_memory),  # no escape to swap (where swap is accounted)
        ]

    def add(self, plugin_id: str, pid: int) -> None:
        """Process ``pid`` (a new worker) into ``plugin_id``'s cgroup, in every hierarchy."""
        for directory in {self.dirs[c] for c in CONTROLLERS}:
            _write(directory / plugin_id / "cgroup.procs", str(pid))

    def oom_kills(self, plugin_id: str) -> int:
        """How many processes of ``plugin_id`` the OOM killer ended for its memory limit."""
        memory = self.dirs["memory"] / plugin_id
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (memory / name).read_text()
        except OSError:
            return 0
        found = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
        return int(found.group(1)) if found else 0

    def bounds(self, plugin_id: str) -> Bounds | None:
        return self._plugins.get(plugin_id)

    def close(self) -> None:
        """Kill what is left in the plugins' cgroups, then remove the subtree."""
        for plugin_id in list(self._plugins):
            _empty(self.path(plugin_id))
        if self._moved_from is not None:  # v2: controllers handed back, then the kernel back where it was
            with contextlib.suppress(OSError):
                _write(self.dirs["pids"] / "cgroup.subtree_control", " ".join(f"-{c}" for c in CONTROLLERS))
            if self._enabled:
                with contextlib.suppress(OSError):
                    _write(self._moved_from / "cgroup.subtree_control", " ".join(f"-{c}" for c in self._enabled))
            with contextlib.suppress(OSError):
                _write(self._moved_from / "cgroup.procs", str(os.getpid()))
        for directory in {self.dirs[c] for c in CONTROLLERS}:
            _remove_tree(directory)
        self._plugins.clear()


def _empty(group: Path) -> None:
    """Every process in ``group`` killed, and waited for (up to 2 s)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _remove_tree(directory: Path) -> None:
    """``directory`` and the cgroups below it removed, deepest first (a cgroup is removed by ``rmdir``)."""
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.is_dir():
            _remove_tree(child)
    for _ in range(50):  # the last processes may take a moment to leave
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


def _clean_stale(base: Path, name: str) -> None:
    """Subtrees ``<name>-<pid>`` under ``base`` whose kernel is gone: what is in them killed, then removed."""
    pattern = re.compile(rf"^{re.escape(name)}-(\d+)$")
    for child in base.iterdir() if base.is_dir() else ():
        found = pattern.match(child.name)
        if found is None or not child.is_dir() or pid_alive(int(found.group(1))):
            continue
        for group in child.iterdir():
            if group.is_dir():
                _empty(group)
        _remove_tree(child)
