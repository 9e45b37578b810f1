"""``GET /.well-known/backstage/permissions/metadata`` on the router of each plugin that uses permissions.

Backstage's permission integration router: the plugin's permissions and the rules policies may use,
each rule with the JSON schema of its params. Protected like every route (credentials needed).
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import HttpRouter, Operation, Permission, PermissionRule, PermissionsRegistryService

METADATA_PATH = "/.well-known/backstage/permissions/metadata"
NO_PARAMS: dict[str, Any] = {"type": "object", "properties": {}}


class PermissionJson(msgspec.Struct, rename="camel"):
    type: str
    name: str
    attributes: dict[str, Any]
    resource_type: str | msgspec.UnsetType = msgspec.UNSET


class RuleJson(msgspec.Struct, rename="camel"):
    name: str
    description: str
    resource_type: str
    params_schema: dict[str, Any]


class Metadata(msgspec.Struct):
    """The plugin's permissions, and the rules a policy may use with the JSON Schema of their params."""

    permissions: list[PermissionJson]
    rules: list[RuleJson]


METADATA_OPERATION = Operation(
    summary="The plugin's permissions and permission rules", tags=["permissions"], response=Metadata
)


def permission_json(permission: Permission) -> dict[str, Any]:
    """A permission as Backstage writes it: ``type``, ``name``, ``attributes`` and ``resourceType``."""
    out: dict[str, Any] = {"type": permission.type, "name": permission.name, "attributes": permission.attributes}
    if permission.resource_type is not None:
        out["resourceType"] = permission.resource_type
    return out


def rule_json(rule: PermissionRule) -> dict[str, Any]:
    schema = msgspec.json.schema(rule.params) if rule.params is not None else NO_PARAMS
    return {
        "name": rule.name,
        "description": rule.description,
        "resourceType": rule.resource_type,
        "paramsSchema": schema,
    }


def metadata(registry: PermissionsRegistryService) -> dict[str, Any]:
    return {
        "permissions": [permission_json(p) for p in registry.list_permissions()],
        "rules": [rule_json(r) for r in registry.list_permission_rules()],
    }


def add_metadata_route(registry: PermissionsRegistryService, router: HttpRouter) -> None:
    """Serve the metadata of the plugin whose ``registry`` this is (built when the plugin asks for permissions)."""

    async def serve(request: Request) -> JSONResponse:
        return JSONResponse(metadata(registry))

    router.add_route(METADATA_PATH, serve, methods=["GET"], openapi=METADATA_OPERATION)
