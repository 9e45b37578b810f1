"""Which permission policy a worker uses: the one of hook ``kernel_permission_policy``, else allow-all."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from kernel.api import ALLOWED, PermissionPolicy, PolicyDecision, PolicyQuery, PolicyUser

HOOK = "kernel_permission_policy"
#: the entry point group of installed packages, and the distribution whose entry points load first
GROUP = "kernel.plugins"
KERNEL_DISTRIBUTION = "kernel"
#: the attribute ``kernel.api.hookimpl`` sets on a hook implementation
MARKER = "kernel_impl"


class AllowAllPolicy:
    """Allows everything: the policy when no installed package provides one."""

    async def handle(self, request: PolicyQuery, user: PolicyUser | None) -> PolicyDecision:
        return ALLOWED


def _load_order(ep: EntryPoint) -> tuple[bool, str, str]:
    """The kernel's order: its own entry points first, then by package and name (later wins)."""
    dist = ep.dist.name if ep.dist else ""
    return (dist != KERNEL_DISTRIBUTION, dist, ep.name)


def installed_policy() -> PermissionPolicy:
    """The policy of the package loaded last that implements ``kernel_permission_policy``; else allow-all.

    Services see the kernel only through ``kernel.api``, which has no hook caller, so this looks at
    the hook providers' entry points itself, in the kernel's order, and only at those whose module
    this process has already imported: a worker imports its plugin and every provider before it
    builds a service, so that is the set the kernel's own hooks see, and nothing new is imported.
    """
    found: Callable[[], PermissionPolicy] | None = None
    for ep in sorted(entry_points(group=GROUP), key=_load_order):
        if ep.module not in sys.modules:
            continue
        impl = getattr(ep.load(), HOOK, None)
        if callable(impl) and getattr(impl, MARKER, None) is not None:
            found = impl
    return found() if found is not None else AllowAllPolicy()
