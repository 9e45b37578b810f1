"""Which permission policy a worker uses: the one of hook ``kernel_permission_policy``, else allow-all."""

from __future__ import annotations

from kernel.api import ALLOWED, HookCaller, PermissionPolicy, PolicyDecision, PolicyQuery, PolicyUser


class AllowAllPolicy:
    """Allows everything: the policy when no installed package provides one."""

    async def handle(self, request: PolicyQuery, user: PolicyUser | None) -> PolicyDecision:
        return ALLOWED


def installed_policy(hooks: HookCaller) -> PermissionPolicy:
    """The policy of the package loaded last that implements ``kernel_permission_policy``; else allow-all."""
    policy: PermissionPolicy | None = hooks.call("kernel_permission_policy")
    return policy if policy is not None else AllowAllPolicy()
