"""``isolation``: what isolating every plugin costs ``hello``, in one run (the promise: next to nothing).

Two kernels serve the bench plugin side by side (``kernel_benchmarks.side_by_side``): ``hello-open``
with every isolation switched off (``backend.workers.scopeConfig``, ``cgroups`` and ``sandbox``
false: each worker gets the whole config and shares the kernel's cgroup and filesystem), and
``hello-isolated`` with every worker in a bubblewrap sandbox (``backend.workers.sandbox``; spawned,
not forked from the zygote), a cgroup per plugin where the machine allows (the default) and the scoped
config (the default). Without ``bwrap`` the second kernel runs without the sandbox, and its note says
so. Each row also has the total PSS of its kernel's processes, taken after the load: what the sandbox
costs in memory (no zygote pages shared). Target: hello-isolated at least 0.95x hello-open.
"""

from __future__ import annotations

from typing import Any

from kernel.supervisor.sandbox import unavailable
from kernel_benchmarks.memory import total_pss
from kernel_benchmarks.procs import Kernel
from kernel_benchmarks.rows import Row
from kernel_benchmarks.scenario import Bench
from kernel_benchmarks.side_by_side import Side, side_by_side

OPEN = {"backend": {"workers": {"scopeConfig": False, "cgroups": False, "sandbox": False}}}


def _pss(kernel: Kernel) -> dict[str, Any]:
    return {"pss_mb": total_pss(kernel)[0]}


def isolation_rows(bench: Bench, server: str) -> list[Row]:
    why_not = unavailable()
    isolated = {"backend": {"workers": {"sandbox": why_not is None}}}
    note = "sandbox, cgroup per plugin where possible, scoped config"
    if why_not is not None:
        note = f"no sandbox ({why_not}); cgroup per plugin where possible, scoped config"
    return side_by_side(
        bench,
        server,
        Side("hello-open", OPEN, "no scoped config, no cgroups, no sandbox"),
        Side("hello-isolated", isolated, note),
        measure=_pss,
    )
