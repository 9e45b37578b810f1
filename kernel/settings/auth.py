"""``backend.auth``: the credentials other systems present (``externalAccess``) and the plugins' signing keys.

``read_auth_settings`` checks the generic shape of every ``externalAccess`` entry, whatever its type
(each type checks its own ``options``); what an entry's ``accessRestrictions`` allow is read by
``kernel.settings.access``.

A contract module: it imports msgspec, the standard library, ``kernel.errors`` and ``kernel.settings.base``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from kernel.errors import ConfigError
from kernel.settings.base import HasGetOptional, read_section

__all__ = [
    "AccessRestriction",
    "AuthSettings",
    "ExternalAccess",
    "PluginKeyStore",
    "StaticKey",
    "StaticKeys",
    "read_auth_settings",
]


class AccessRestriction(msgspec.Struct, rename="camel", frozen=True):
    """One entry of ``accessRestrictions``: the plugin a credential may reach, optionally narrowed."""

    #: a plugin the credential may call
    plugin: str
    #: the permissions allowed in it (a list, or names separated by commas or spaces)
    permission: str | list[str] | None = None
    #: `{action: [...]}`: the actions (create, read, update, delete) allowed in it
    permission_attribute: dict[str, str | list[str]] | None = None


class ExternalAccess(msgspec.Struct, rename="camel", frozen=True):
    """One entry of ``backend.auth.externalAccess``; ``options`` are the ``type``'s own (checked by it)."""

    #: `static`, `legacy` or `jwks` (README, "Security defaults")
    type: str
    #: the type's options: `token` and `subject` for `static`, ...
    options: dict[str, Any] = {}
    #: the plugins (and permissions) the credential may reach; absent: every plugin
    access_restrictions: list[AccessRestriction] | None = None


class StaticKey(msgspec.Struct, rename="camel", frozen=True, forbid_unknown_fields=True):
    """A key pair from files: ``publicKeyFile`` (SPKI PEM), ``privateKeyFile`` (PKCS#8 PEM, to sign with)."""

    #: SPKI PEM file of the public key
    public_key_file: str
    #: the `kid` of the tokens signed with it
    key_id: str
    #: PKCS#8 PEM file of the private key (the first key, which signs, needs one)
    private_key_file: str | None = None
    #: the signing algorithm (only ES256)
    algorithm: Literal["ES256"] = "ES256"


class StaticKeys(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: the key pairs; the first one signs, every one is published
    keys: list[StaticKey] = []


class PluginKeyStore(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``backend.auth.pluginKeyStore`` (the reference system's key): where plugins' signing keys come from.

    ``database`` (default): each worker makes its own, published through the plugin's database.
    ``static``: ``static.keys`` from files, the first one signs (it needs its private key file),
    every one is published; the same files can serve several backends.
    """

    #: `database` or `static` (see above)
    type: Literal["database", "static"] = "database"
    static: StaticKeys = StaticKeys()


class AuthSettings(msgspec.Struct, rename="camel", frozen=True):
    """``backend.auth``; other keys belong to the token system's packages and are ignored here."""

    #: tokens other systems present (`Authorization: Bearer ...`); none by default
    external_access: list[ExternalAccess] = []
    #: how long a plugin signs with one key (and its tokens live at most); a new key follows
    key_duration_seconds: float = 3600.0
    plugin_key_store: PluginKeyStore = PluginKeyStore()


def read_auth_settings(config: HasGetOptional) -> AuthSettings:
    """``backend.auth``: the generic shape of every ``externalAccess`` entry, whatever its type."""
    auth = config.get_optional("backend.auth")  # the parent: a worker's scoped config withholds externalAccess
    access = auth.get("externalAccess") if isinstance(auth, dict) else None
    if access is not None and not isinstance(access, list):
        raise ConfigError("Invalid config: backend.auth.externalAccess must be a list")
    for i, raw in enumerate(access or ()):
        where = f"backend.auth.externalAccess[{i}]"
        if not isinstance(raw, dict) or "type" not in raw:
            raise ConfigError(f"Invalid config: {where} must be an object with a 'type'")
        restrictions = raw.get("accessRestrictions")
        if restrictions is not None and (
            not isinstance(restrictions, list)
            or not all(isinstance(r, dict) and isinstance(r.get("plugin"), str) for r in restrictions)
        ):
            raise ConfigError(f"Invalid config: {where}.accessRestrictions must be a list of {{plugin: <id>}}")
    return read_section(config, "backend.auth", AuthSettings)
