"""The ``permissions`` service of one plugin: asks the policy, applies restrictions and conditions.

Like Backstage's ``ServerPermissionClient`` and permission backend together, in the plugin's worker:

- a ``service`` principal (another plugin, an external caller) is never put to the policy: it is
  allowed what its ``permission_restrictions`` for this plugin admit, everything without any;
- otherwise, with ``permission.enabled`` false (the default) everything is allowed;
- otherwise the policy decides, given the user (``None`` for a caller without credentials).

``authorize`` turns a CONDITIONAL answer into ALLOW or DENY by applying the conditions, with this
plugin's rules, to the request's ``resource`` (or what the resource type's ``get_resources``
loads for its ``resource_ref``); without a resource, or with conditions of another plugin, DENY.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from kernel.api import (
    ALLOWED,
    DENIED,
    AuthorizeRequest,
    ConditionalDecision,
    ConfigReader,
    Credentials,
    DefinitiveDecision,
    InputError,
    Logger,
    Permission,
    PermissionPolicy,
    PermissionRestriction,
    PermissionsRegistryService,
    PolicyDecision,
    PolicyQuery,
    PolicyUser,
    Principal,
    QueryRequest,
    apply_conditions,
)

ENABLED_KEY = "permission.enabled"


def _admits(restriction: PermissionRestriction, permission: Permission) -> bool:
    if restriction.permission_names is not None and permission.name not in restriction.permission_names:
        return False
    return restriction.actions is None or permission.attributes.get("action") in restriction.actions


def service_decision(plugin_id: str, principal: Principal, permission: Permission) -> DefinitiveDecision:
    """A service principal's answer: ALLOW unless its restrictions for ``plugin_id`` leave ``permission`` out."""
    own = [r for r in principal.permission_restrictions or () if r.plugin == plugin_id]
    if not own:
        return ALLOWED
    return ALLOWED if any(_admits(r, permission) for r in own) else DENIED


def policy_user(principal: Principal) -> PolicyUser | None:
    """What the policy learns of the caller: a user, or ``None``."""
    if principal.type != "user":
        return None
    refs = list(principal.ownership_refs) or [principal.subject]
    return PolicyUser(principal=principal, user_entity_ref=principal.subject, ownership_entity_refs=refs)


def _permission(request: AuthorizeRequest | QueryRequest) -> Permission:
    permission = request.get("permission")
    if not isinstance(permission, Permission):
        raise InputError(f"a permission request needs a 'permission' (a kernel.api.Permission), got {permission!r}")
    return permission


class PolicyPermissions:
    """A ``kernel.api.PermissionsService`` for plugin ``plugin_id``; reads ``permission.enabled`` on each call."""

    def __init__(
        self,
        plugin_id: str,
        config: ConfigReader,
        registry: PermissionsRegistryService,
        policy: PermissionPolicy,
        logger: Logger,
    ) -> None:
        self.plugin_id = plugin_id
        self._config = config
        self._registry = registry
        self.policy = policy
        self._logger = logger

    def _enabled(self) -> bool:
        return bool(self._config.get_optional_boolean(ENABLED_KEY))

    async def authorize(
        self, requests: Sequence[AuthorizeRequest], *, credentials: Credentials
    ) -> list[DefinitiveDecision]:
        decisions = await self._decide([_permission(r) for r in requests], credentials.principal)
        return [await self._settle(r, d) for r, d in zip(requests, decisions)]

    async def authorize_conditional(
        self, requests: Sequence[QueryRequest], *, credentials: Credentials
    ) -> list[PolicyDecision]:
        return await self._decide([_permission(r) for r in requests], credentials.principal)

    async def _decide(self, permissions: list[Permission], principal: Principal) -> list[PolicyDecision]:
        """Services by their restrictions; anyone else: allowed while permissions are off, else the policy."""
        if principal.type == "service":
            return [service_decision(self.plugin_id, principal, p) for p in permissions]
        if not self._enabled():
            return [ALLOWED for _ in permissions]
        user = policy_user(principal)
        return list(await asyncio.gather(*(self._ask(p, user) for p in permissions)))

    async def _ask(self, permission: Permission, user: PolicyUser | None) -> PolicyDecision:
        """The policy's answer; one that cannot be (CONDITIONAL for another resource type) is DENY."""
        decision = await self.policy.handle(PolicyQuery(permission), user)
        if isinstance(decision, DefinitiveDecision):
            return decision
        if isinstance(decision, ConditionalDecision) and decision.resource_type == permission.resource_type:
            return decision
        self._logger.error(
            f"permission policy answered {decision!r} for permission '{permission.name}'; denied",
            permission=permission.name,
        )
        return DENIED

    async def _settle(self, request: AuthorizeRequest, decision: PolicyDecision) -> DefinitiveDecision:
        if isinstance(decision, DefinitiveDecision):
            return decision
        if decision.plugin_id != self.plugin_id:
            self._logger.warning(
                f"conditions of plugin '{decision.plugin_id}' cannot be applied in plugin '{self.plugin_id}'; denied",
                permission=request["permission"].name,
            )
            return DENIED
        if "resource" in request:
            resource = request["resource"]
        elif "resource_ref" in request:
            [resource] = await self._registry.get_resources(decision.resource_type, [request["resource_ref"]])
        else:
            return DENIED  # nothing to apply the conditions to
        try:
            allowed = apply_conditions(decision, self._registry.list_permission_rules(), resource)
        except InputError as exc:  # the policy's conditions do not fit this plugin's rules
            self._logger.error(f"permission conditions could not be applied: {exc}; denied")
            return DENIED
        return ALLOWED if allowed else DENIED
