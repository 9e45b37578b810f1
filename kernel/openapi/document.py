"""A plugin's OpenAPI document: built once from its ``OpenApi`` and its router's routes, rendered per request.

Built when the worker builds the plugin's app (a mistake stops the boot, naming the plugin):

- the hand-written document, if any, is the start; what it says is kept as written;
- every ``Route`` of the router is added (``Mount``s, ``use`` fallbacks and WebSockets cannot be
  described from outside: a plugin documents those by hand): a route added with
  ``openapi=Operation(...)`` with its parameters, body and answer, one without as an undescribed
  success; path parameters always, typed by their route convertor;
- the JSON Schemas of the declared types (``msgspec.json.schema_components``) join
  ``components.schemas``, beside ``KernelError``, the error shape every operation answers by default.

Rendered for each request (cached while nothing changes): ``servers`` is the plugin's base URL, and
each operation's ``security`` follows the router's auth policies as they are now (an open path needs
no token, a ``user-cookie`` path takes the cookie too, every other one a bearer token).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from kernel.core_services import USER_COOKIE
from kernel.errors import PluginDeclarationError
from kernel.openapi_spec import ERROR_SCHEMA, OPENAPI_VERSION, OpenApi, Operation
from kernel.protocol import AuthPolicy

REF_TEMPLATE = "#/components/schemas/{name}"
ERROR_NAME = "KernelError"
ERROR_REF = {"$ref": REF_TEMPLATE.format(name=ERROR_NAME)}
BEARER, COOKIE = "bearerAuth", "userCookie"
SECURITY_SCHEMES = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user, plugin or external token",
    },
    COOKIE: {"type": "apiKey", "in": "cookie", "name": USER_COOKIE, "description": "A user's limited token"},
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: ``{name}`` or ``{name:convertor}`` in a Starlette path
PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-zA-Z_][a-zA-Z0-9_]*))?}")
#: what Starlette's convertors match (``starlette.convertors``)
CONVERTOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": {"type": "string", "pattern": "^[^/]+$"},
    "path": {"type": "string"},
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
}
_ERROR_CONTENT = {"application/json": {"schema": ERROR_REF}}


class DocumentedRoute(NamedTuple):
    """A route as the router recorded it: Starlette path, methods (upper case) and its ``Operation``."""

    path: str
    methods: tuple[str, ...]
    operation: Operation | None


def template_of(path: str) -> tuple[str, dict[str, str]]:
    """The OpenAPI path of a Starlette path, and each parameter's convertor: ``/a/{id:int}`` -> ``/a/{id}``."""
    convertors = {m.group(1): m.group(2) or "str" for m in PARAM.finditer(path)}
    return PARAM.sub(lambda m: "{" + m.group(1) + "}", path), convertors


def build_document(plugin_id: str, spec: OpenApi, routes: Sequence[DocumentedRoute]) -> dict[str, Any]:
    """The plugin's document, without ``servers`` and ``security`` (``render`` adds them)."""
    label = f"plugin '{plugin_id}'"
    doc: dict[str, Any] = copy.deepcopy(spec.base) if spec.base is not None else {"openapi": OPENAPI_VERSION}
    info = doc.setdefault("info", {})
    info.setdefault("title", spec.title or plugin_id)
    info.setdefault("version", spec.version)
    if spec.description:
        info.setdefault("description", spec.description)
    paths: dict[str, Any] = doc.setdefault("paths", {})
    components = doc.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    schemes: dict[str, Any] = components.setdefault("securitySchemes", {})
    for name, scheme in SECURITY_SCHEMES.items():
        schemes.setdefault(name, scheme)
    refs, generated = _schemas(label, routes)
    for name, schema in {**generated, ERROR_NAME: ERROR_SCHEMA}.items():
        if name in schemas and schemas[name] != schema:
            raise PluginDeclarationError(
                f"{label}: the OpenAPI schema '{name}' of its document differs from the one of a declared type"
            )
        schemas[name] = schema
    for route in routes:
        template, convertors = template_of(route.path)
        item: dict[str, Any] = paths.setdefault(template, {})
        methods = [m.lower() for m in route.methods]
        for method in methods:
            if method in item or (method == "head" and "get" in methods) or method not in METHODS:
                continue  # written by hand, declared earlier (the first route wins, as in Starlette), or implied
            item[method] = _operation(route, convertors, refs, schemas, label)
    return doc


def _schemas(label: str, routes: Sequence[DocumentedRoute]) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """The JSON Schema (or ``$ref``) of every declared type, and the components they refer to."""
    types: list[Any] = []
    for route in routes:
        op = route.operation
        if op is None:
            continue
        for kind in ("path_params", "query_params", "body", "response"):
            t = getattr(op, kind)
            if t is None or t in types:
                continue
            try:
                msgspec.json.schema(t)
            except Exception as exc:  # not a msgspec type, or annotations that do not resolve
                raise PluginDeclarationError(
                    f"{label}: route {route.path!r}: Operation {kind}={t!r} is not a msgspec type: {exc}"
                ) from None
            types.append(t)
    if not types:
        return {}, {}
    found, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    return dict(zip(types, found)), components


def _properties(t: Any, refs: dict[Any, dict[str, Any]], schemas: dict[str, Any], label: str) -> dict[str, Any]:
    """A Struct's object schema (its fields: parameters)."""
    schema = refs[t]
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = schemas[ref.rsplit("/", 1)[1]]
    if schema.get("type") != "object" or "properties" not in schema:
        raise PluginDeclarationError(f"{label}: parameters must be declared by a msgspec.Struct, not {t!r}")
    return schema


def _parameters(where: str, t: Any, refs: dict[Any, dict[str, Any]], schemas: dict[str, Any], label: str) -> list[Any]:
    schema = _properties(t, refs, schemas, label)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        param: dict[str, Any] = {"name": name, "in": where, "required": where == "path" or name in required}
        if "description" in prop:
            param["description"] = prop["description"]
        param["schema"] = prop
        out.append(param)
    return out


def _operation(
    route: DocumentedRoute,
    convertors: dict[str, str],
    refs: dict[Any, dict[str, Any]],
    schemas: dict[str, Any],
    label: str,
) -> dict[str, Any]:
    op = route.operation
    declared: list[dict[str, Any]] = []
    if op is not None and op.path_params is not None:
        declared = _parameters("path", op.path_params, refs, schemas, label)
        unknown = {p["name"] for p in declared} - set(convertors)
        if unknown:
            raise PluginDeclarationError(f"{label}: route {route.path!r} has no path parameter {sorted(unknown)}")
    named = {p["name"] for p in declared}
    parameters = declared + [
        {"name": name, "in": "path", "required": True, "schema": dict(CONVERTOR_SCHEMAS.get(conv, {"type": "string"}))}
        for name, conv in convertors.items()
        if name not in named
    ]
    error = {"description": "An error, in the kernel's error shape", "content": _ERROR_CONTENT}
    if op is None:
        out: dict[str, Any] = {"responses": {"2XX": {"description": "Success (not described)"}, "default": error}}
        if parameters:
            out["parameters"] = parameters
        return out
    if op.query_params is not None:
        parameters += _parameters("query", op.query_params, refs, schemas, label)
    out = {}
    for key, value in (("operationId", op.operation_id), ("summary", op.summary), ("description", op.description)):
        if value:
            out[key] = value
    if op.tags:
        out["tags"] = list(op.tags)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[op.body]}}}
    success: dict[str, Any] = {"description": op.summary or "Success"}
    if op.response is not None:
        success["content"] = {op.media_type: {"schema": refs[op.response]}}
    elif op.media_type != "application/json" and op.status != 204:
        success["content"] = {op.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.status): success}
    for status, why in sorted(op.errors.items()):
        responses[str(status)] = {"description": why, "content": _ERROR_CONTENT}
    responses["default"] = error
    out["responses"] = responses
    return out


def _opens(policy: AuthPolicy, path: str) -> bool:
    """Whether ``policy`` covers ``path`` (by whole segments, as the gateway matches)."""
    prefix = policy.path.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def security_of(path: str, policies: Sequence[AuthPolicy]) -> list[dict[str, list[str]]]:
    """What calling ``path`` takes, under the router's auth policies now."""
    allows = {p.allow for p in policies if _opens(p, path)}
    if "unauthenticated" in allows:
        return [{}, {BEARER: []}]  # anyone; a token is still read if sent
    if "user-cookie" in allows:
        return [{BEARER: []}, {COOKIE: []}]
    return [{BEARER: []}]


class ApiDocument:
    """The built document of one plugin, and its rendering per (auth policies, base URL)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._rendered: dict[tuple[tuple[AuthPolicy, ...], str], bytes] = {}

    def render(self, policies: Sequence[AuthPolicy], server: str) -> bytes:
        key = (tuple(policies), server)
        cached = self._rendered.get(key)
        if cached is None:
            if len(self._rendered) >= 8:  # policies changed several times (a proxy reloading): start afresh
                self._rendered.clear()
            cached = self._rendered[key] = msgspec.json.encode(self.rendered(policies, server))
        return cached

    def rendered(self, policies: Sequence[AuthPolicy], server: str) -> dict[str, Any]:
        doc = dict(self.document)
        doc["servers"] = [{"url": server, "description": "this plugin's base URL"}]
        doc["security"] = [{BEARER: []}]
        paths: dict[str, Any] = {}
        for path, item in self.document.get("paths", {}).items():
            if not isinstance(item, dict):
                paths[path] = item
                continue
            security = security_of(path, policies)
            paths[path] = {
                key: {**value, "security": security} if key in METHODS and isinstance(value, dict) else value
                for key, value in item.items()
            }
        doc["paths"] = paths
        return doc
