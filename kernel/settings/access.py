"""What a credential of ``backend.auth.externalAccess`` may reach: its ``accessRestrictions``, parsed.

``access_restrictions_of`` turns an entry's restrictions into the plugins it may call and the
``PermissionRestriction``s of the wire; ``split_names`` reads a list of names written as a string
or a list (the token types use it for their own options too).

A contract module: it imports the standard library, ``kernel.errors`` and ``kernel.protocol``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from kernel.errors import ConfigError
from kernel.protocol import PermissionRestriction

__all__ = ["ACTIONS", "access_restrictions_of", "split_names"]


#: the values ``permissionAttribute.action`` of an access restriction may take
ACTIONS = ("create", "read", "update", "delete")
_RESTRICTION_KEYS = ("plugin", "permission", "permissionAttribute")


def split_names(value: Any, where: str, allowed: Sequence[str] = ()) -> list[str] | None:
    """A string (names separated by commas or spaces) or a list of them; deduplicated, ``None`` if empty."""
    if isinstance(value, str):
        raw = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        raw = value
    else:
        raise ConfigError(f"Invalid config: {where} must be a string or a list of strings")
    names = list(dict.fromkeys(name for v in raw for name in re.split(r"[ ,]", v) if name))
    for name in names:
        if allowed and name not in allowed:
            raise ConfigError(f"Invalid config: {where} has '{name}', expected one of {', '.join(allowed)}")
    return names or None


def access_restrictions_of(
    entry: Mapping[str, Any], where: str
) -> tuple[list[str] | None, list[PermissionRestriction] | None]:
    """The plugins an ``externalAccess`` entry may reach, and what it may do in them (``None``: unrestricted).

    ``entry`` is the raw config entry (already shaped by ``read_settings``). As Backstage: only the
    keys ``plugin``, ``permission`` and ``permissionAttribute`` (whose only key is ``action``, of
    create/read/update/delete), and one entry per plugin.
    """
    restrictions = entry.get("accessRestrictions")
    if restrictions is None:
        return None, None
    plugins: list[str] = []
    permissions: list[PermissionRestriction] = []
    for j, restriction in enumerate(restrictions):
        at = f"{where}.accessRestrictions[{j}]"
        unknown = [key for key in restriction if key not in _RESTRICTION_KEYS]
        if unknown:
            expected = ", ".join(_RESTRICTION_KEYS)
            raise ConfigError(f"Invalid config: {at} has unknown key '{unknown[0]}', expected one of {expected}")
        plugin = restriction["plugin"]
        if plugin in plugins:
            raise ConfigError(
                f"Invalid config: {at} restricts plugin '{plugin}' a second time: give each plugin one entry"
            )
        names = restriction.get("permission")
        names = None if names is None else split_names(names, f"{at}.permission")
        attribute = restriction.get("permissionAttribute")
        actions = None
        if attribute is not None:
            if not isinstance(attribute, dict) or any(key != "action" for key in attribute):
                raise ConfigError(
                    f"Invalid config: {at}.permissionAttribute must be an object whose only key is 'action'"
                )
            if attribute.get("action") is not None:
                actions = split_names(attribute["action"], f"{at}.permissionAttribute.action", ACTIONS)
        plugins.append(plugin)
        if names is not None or actions is not None:
            permissions.append(PermissionRestriction(plugin, names, actions))
    return plugins, permissions or None
