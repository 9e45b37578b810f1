"""The permissions registry of one plugin: its permissions, resource types and rules, declared at init."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import msgspec

from kernel.api import GetResources, Permission, PermissionRule, PluginDeclarationError

#: the registry of each plugin of this process that made one, for its metadata route


class PluginPermissionsRegistry:
    """A ``kernel.api.PermissionsRegistryService``: a mistake is a ``PluginDeclarationError`` naming the plugin.

    Rule names are unique within the plugin; a rule is for a resource type declared before it.
    """

    def __init__(self, plugin_id: str) -> None:
        self.plugin_id = plugin_id
        self._permissions: dict[str, Permission] = {}
        self._resource_types: dict[str, GetResources | None] = {}
        self._rules: dict[str, PermissionRule] = {}

    def _fail(self, message: str) -> NoReturn:
        raise PluginDeclarationError(f"plugin '{self.plugin_id}': {message}")

    def add_permissions(self, permissions: Sequence[Permission]) -> None:
        for permission in permissions:
            if not isinstance(permission, Permission):
                self._fail(f"{permission!r} is not a Permission (use kernel.api.create_permission)")
            known = self._permissions.get(permission.name)
            if known is not None and known != permission:
                self._fail(f"permission '{permission.name}' declared twice, differently: {known} and {permission}")
            self._permissions[permission.name] = permission

    def add_resource_type(
        self,
        resource_type: str,
        *,
        permissions: Sequence[Permission] = (),
        rules: Sequence[PermissionRule] = (),
        get_resources: GetResources | None = None,
    ) -> None:
        if not isinstance(resource_type, str) or not resource_type:
            self._fail(f"resource type must be a non-empty string, not {resource_type!r}")
        if resource_type in self._resource_types:
            self._fail(f"resource type '{resource_type}' declared twice")
        for permission in permissions:
            if getattr(permission, "resource_type", None) != resource_type:
                self._fail(f"permission {permission!r} is not a permission of resource type '{resource_type}'")
        self._resource_types[resource_type] = get_resources
        self.add_permissions(permissions)
        self.add_permission_rules(rules)

    def add_permission_rules(self, rules: Sequence[PermissionRule]) -> None:
        for rule in rules:
            if not isinstance(rule, PermissionRule):
                self._fail(f"{rule!r} is not a PermissionRule")
            if rule.resource_type not in self._resource_types:
                self._fail(
                    f"permission rule '{rule.name}' is for unknown resource type '{rule.resource_type}' "
                    "(declare it first with add_resource_type)"
                )
            if rule.name in self._rules:
                self._fail(f"permission rule '{rule.name}' declared twice")
            if rule.params is not None:
                try:
                    msgspec.json.schema(rule.params)
                except TypeError as exc:
                    self._fail(f"permission rule '{rule.name}': params must be a msgspec type: {exc}")
            self._rules[rule.name] = rule

    def get_permission_rule(self, name: str) -> PermissionRule | None:
        return self._rules.get(name)

    def list_permissions(self) -> list[Permission]:
        return list(self._permissions.values())

    def list_permission_rules(self) -> list[PermissionRule]:
        return list(self._rules.values())

    async def get_resources(self, resource_type: str, resource_refs: Sequence[str]) -> list[Any | None]:
        load = self._resource_types.get(resource_type)
        if load is None:
            return [None] * len(resource_refs)
        found = list(await load(list(resource_refs)))
        if len(found) != len(resource_refs):
            raise ValueError(
                f"plugin '{self.plugin_id}': get_resources of '{resource_type}' returned {len(found)} "
                f"resources for {len(resource_refs)} refs"
            )
        return found
