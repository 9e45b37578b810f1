"""Checking requests against a plugin's OpenAPI document, in its worker, before the handler runs.

``ValidatingApp`` wraps the plugin's app when it asked for it (``OpenApi(validate=True)``). A request
to a documented operation is checked in this order, and the first violation is a 400 ``InputError``
in the kernel's error shape naming the field (``query parameter 'limit': "x" is not of type
"integer"``, ``body.title: "" is shorter than 1 character``):

1. path parameters, 2. query parameters (a missing required one, a wrong type), 3. header
parameters, 4. the body: required, of a documented media type, JSON that is valid against its schema.

Parameters arrive as strings: one whose schema admits only integers, numbers, booleans or null is
converted first (``?limit=5`` is the integer 5); an array parameter is every occurrence
(``?tag=a&tag=b``). Query parameters the document does not name are let through (the handler ignores
what it does not read). A request that matches no documented operation goes on unchecked: the
router answers it (404, 405). Schemas are JSON Schema 2020-12 (OpenAPI 3.1), checked by
``jsonschema-rs`` (the ``openapi`` extra), each compiled once when the plugin's app is built (one that
cannot be compiled stops the plugin's start, naming it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel.errors import InputError, PluginDeclarationError
from kernel.openapi.document import METHODS

#: the document's URI inside the validator's registry: each schema is a ``$ref`` into it
DOCUMENT_URI = "urn:kernel:openapi"
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_SCALARS = {"integer", "number", "boolean", "null"}
#: what a JSON pointer keeps unencoded in a URI fragment (RFC 3986 pchar, and "/" and "?")
_FRAGMENT_SAFE = "/?:@!$&'()*+,;=-._~"


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass
class _Param:
    name: str
    where: str  # path | query | header
    required: bool
    pointer: str
    array: bool
    #: the scalar types a string may be converted to (empty: keep the string)
    types: frozenset[str]


@dataclass
class _Operation:
    params: list[_Param]
    body_required: bool = False
    #: media type -> pointer of its schema (``None``: any content)
    body: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.in_query = any(p.where == "query" for p in self.params)
        self.in_headers = any(p.where == "header" for p in self.params)


class RequestValidator:
    """The documented operations of one document, and the check of a request against one of them."""

    def __init__(self, document: dict[str, Any], label: str = "OpenAPI document") -> None:
        import jsonschema_rs  # the 'openapi' extra, checked where OpenApi(validate=True) was declared

        self._jsonschema = jsonschema_rs
        self._document = document
        self._registry = jsonschema_rs.Registry([(DOCUMENT_URI, document)])
        self._validators: dict[str, Any] = {}
        Routes = list[tuple[re.Pattern[str], list[str], dict[str, _Operation]]]
        literal: Routes = []
        templated: Routes = []
        for path, item in (document.get("paths") or {}).items():
            if not isinstance(item, dict):
                continue
            ops = {
                method.upper(): self._operation(path, method, item, op)
                for method, op in item.items()
                if method in METHODS and isinstance(op, dict)
            }
            if "GET" in ops and "HEAD" not in ops:
                ops["HEAD"] = ops["GET"]
            names = re.findall(r"{([^}/]+)}", path)
            parts = re.split(r"{[^}/]+}", path)
            regex = re.compile(
                "".join(re.escape(part) + ("([^/]+)" if i < len(names) else "") for i, part in enumerate(parts))
            )
            (templated if names else literal).append((regex, names, ops))
        #: (regex, its groups' parameter names, operations by method); paths without parameters first
        self._routes: Routes = literal + templated
        self._compile(label)

    # -- building ---------------------------------------------------------------------------------
    def _resolve(self, node: Any) -> Any:
        """Follow local ``$ref``s (``#/components/...``) of the document; anything else as it is."""
        seen = 0
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
            seen += 1
            if seen > 32:
                break
            target: Any = self._document
            for part in node["$ref"][2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, dict) else None
            node = target
        return node

    def _types(self, schema: Any, depth: int = 0) -> set[str]:
        """The JSON types a schema admits, as far as the first levels tell (``anyOf``/``oneOf``/``enum``)."""
        schema = self._resolve(schema)
        if not isinstance(schema, dict) or depth > 4:
            return {"string"}  # unknown: keep the string
        found: set[str] = set()
        kind = schema.get("type")
        if isinstance(kind, str):
            found.add(kind)
        elif isinstance(kind, list):
            found.update(k for k in kind if isinstance(k, str))
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in schema.get(key) or ():
                found |= self._types(branch, depth + 1)
        for value in [*(schema.get("enum") or ()), *([schema["const"]] if "const" in schema else [])]:
            found.add(_json_type(value))
        return found or {"string"}

    def _operation(self, path: str, method: str, item: dict[str, Any], op: dict[str, Any]) -> _Operation:
        params: dict[tuple[str, str], _Param] = {}
        for level, listed in (("path-item", item.get("parameters")), ("operation", op.get("parameters"))):
            for index, raw in enumerate(listed or ()):
                param = self._resolve(raw)
                if not isinstance(param, dict) or param.get("in") not in ("path", "query", "header"):
                    continue
                base = ("paths", path) if level == "path-item" else ("paths", path, method)
                pointer = _pointer(*base, "parameters", str(index), "schema")
                if isinstance(raw, dict) and "$ref" in raw:  # a shared parameter: its schema where it lives
                    pointer = raw["$ref"][1:] + "/schema"
                schema = self._resolve(param.get("schema", {}))
                array = isinstance(schema, dict) and schema.get("type") == "array"
                types = self._types(schema.get("items", {}) if array and isinstance(schema, dict) else schema)
                name = str(param.get("name", ""))
                where = str(param["in"])
                params[(where, name.lower() if where == "header" else name)] = _Param(
                    name=name,
                    where=where,
                    required=bool(param.get("required")) or where == "path",
                    pointer=pointer if "schema" in param else "",
                    array=array,
                    types=frozenset() if "string" in types else frozenset(types & _SCALARS),
                )
        checked = _Operation(list(params.values()))
        body = self._resolve(op.get("requestBody"))
        if isinstance(body, dict) and isinstance(body.get("content"), dict):
            checked.body_required = bool(body.get("required"))
            ref = op["requestBody"].get("$ref")  # a shared body: its schema where it lives
            at = ref[1:] if isinstance(ref, str) else _pointer("paths", path, method, "requestBody")
            for media, content in body["content"].items():
                has_schema = isinstance(content, dict) and "schema" in content
                checked.body[media.lower()] = at + _pointer("content", media, "schema") if has_schema else None
        return checked

    # -- checking ---------------------------------------------------------------------------------
    def match(self, method: str, path: str) -> tuple[_Operation, dict[str, str]] | None:
        """The documented operation of a request, and its raw path parameters; ``None``: not documented."""
        for regex, names, ops in self._routes:
            found = regex.fullmatch(path)
            if found is None:
                continue
            values = dict(zip(names, found.groups()))
            op = ops.get(method)
            return (op, values) if op is not None else None
        return None

    def _compile(self, label: str) -> None:
        """A validator for every schema of every operation, now: a schema that cannot be one fails the boot."""
        pointers = {p.pointer for _, _, ops in self._routes for op in ops.values() for p in op.params if p.pointer}
        pointers |= {p for _, _, ops in self._routes for op in ops.values() for p in op.body.values() if p}
        for pointer in sorted(pointers):
            ref = {"$ref": DOCUMENT_URI + "#" + quote(pointer, safe=_FRAGMENT_SAFE)}
            try:
                self._validators[pointer] = self._jsonschema.Draft202012Validator(ref, registry=self._registry)
            except Exception as exc:  # jsonschema-rs: a bad reference, a bad pattern, not a schema
                message = str(exc).split("\n", 1)[0]
                raise PluginDeclarationError(
                    f"{label}: the OpenAPI schema at {pointer} is not valid: {message}"
                ) from None

    def _check(self, pointer: str, value: Any, where: str) -> None:
        validator = self._validators[pointer]
        if validator.is_valid(value):
            return
        error = next(iter(validator.iter_errors(value)))
        at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path)
        raise InputError(f"{where}{at}: {error.message}")

    def check_parameters(
        self, op: _Operation, path_values: dict[str, str], query: bytes, headers: Iterable[tuple[bytes, bytes]]
    ) -> None:
        """Raise ``InputError`` for the first parameter that is missing or invalid."""
        if not op.params:
            return
        query_values: dict[str, list[str]] = {}
        if query and op.in_query:
            for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                query_values.setdefault(k, []).append(v)
        header_values: dict[str, list[str]] = {}
        if op.in_headers:
            for name, value in headers:
                header_values.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        for param in op.params:
            if param.where == "path":
                values = [path_values[param.name]] if param.name in path_values else []
            elif param.where == "query":
                values = query_values.get(param.name, [])
            else:
                values = header_values.get(param.name.lower(), [])
            where = f"{param.where} parameter '{param.name}'"
            if not values:
                if param.required:
                    raise InputError(f"{where} is required")
                continue
            if not param.pointer:
                continue
            converted: Any = [_convert(v, param.types) for v in values]
            for raw, value in zip(values, converted):
                if param.types and isinstance(value, str):  # no type it may have fits the string
                    kinds = " or ".join(f'"{t}"' for t in sorted(param.types))
                    raise InputError(f"{where}: {msgspec.json.encode(raw).decode()} is not of type {kinds}")
            self._check(param.pointer, converted if param.array else converted[-1], where)

    def check_body(self, op: _Operation, content_type: str, body: bytes) -> None:
        """Raise ``InputError`` if the body is missing when required, of an undocumented type, or invalid."""
        if not body:
            if op.body_required:
                raise InputError("a request body is required")
            return
        media = content_type.partition(";")[0].strip().lower()
        if media not in op.body:
            wildcard = [m for m in op.body if m.endswith("/*") and media.startswith(m[:-1])] or (
                ["*/*"] if "*/*" in op.body else []
            )
            if not wildcard:
                expected = " or ".join(sorted(op.body))
                raise InputError(f"the request body must be {expected}, not {media or 'without a content type'}")
            media = wildcard[0]
        pointer = op.body[media]
        if pointer is None:
            return
        if media == "application/json" or media.endswith("+json"):
            try:
                value = msgspec.json.decode(body)
            except msgspec.DecodeError as exc:
                raise InputError(f"the request body is not valid JSON: {exc}") from None
            self._check(pointer, value, "body")


class ValidatingApp:
    """The plugin's app behind request validation; ``validator()`` is the one in force (it follows ``set_openapi``)."""

    def __init__(self, app: ASGIApp, validator: Callable[[], RequestValidator | None]) -> None:
        self.app = app
        self.validator = validator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        validator = self.validator()
        if scope["type"] != "http" or validator is None:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        found = validator.match(scope["method"], path)
        if found is None:
            await self.app(scope, receive, send)
            return
        op, path_values = found
        validator.check_parameters(op, path_values, scope.get("query_string", b""), scope["headers"])
        if op.body:
            body = await _read_body(receive)
            content_type = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), "")
            validator.check_body(op, content_type, body)
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (bounded by the gateway's body limit)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` giving the body read already, then what the client sends next (its disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "object"


def _convert(raw: str, types: frozenset[str]) -> Any:
    """A parameter's string as the scalar its schema admits (left a string when none fits: the schema says why)."""
    if not types:
        return raw
    if "integer" in types and _INTEGER.fullmatch(raw):
        return int(raw)
    if "number" in types and _NUMBER.fullmatch(raw):
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    if "boolean" in types and raw in ("true", "false"):
        return raw == "true"
    if "null" in types and raw in ("", "null"):
        return None
    return raw
