"""What a plugin author declares for its OpenAPI document: ``OpenApi`` (the plugin's) and ``Operation`` (a route's).

A contract module (``kernel.api`` exports both): no sockets, no event loop. A document given as a
file is read where ``OpenApi`` is built, so a missing or malformed file fails at declaration time,
and so does ``validate=True`` without the validator installed (the ``openapi`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kernel.errors import PluginDeclarationError

#: where a plugin's document is served, relative to its mount (the reference system's path)
OPENAPI_PATH = "/openapi.json"
#: the only OpenAPI version accepted: its schemas are JSON Schema 2020-12, as msgspec writes them
OPENAPI_VERSION = "3.1.0"
#: the module ``validate=True`` needs, and the extra that installs it
VALIDATOR_MODULE = "jsonschema_rs"
VALIDATOR_EXTRA = "openapi"

#: the kernel's error shape (``kernel.errors.error_body``), the ``default`` answer of every operation
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An error, in the kernel's one error shape",
    "required": ["error", "request", "response"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["name", "message"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "examples": ["InputError"]},
                "message": {"type": "string"},
                "stack": {"type": "string", "description": "development mode only"},
            },
        },
        "request": {
            "type": "object",
            "required": ["method", "url"],
            "additionalProperties": False,
            "properties": {"method": {"type": "string"}, "url": {"type": "string"}},
        },
        "response": {
            "type": "object",
            "required": ["statusCode"],
            "additionalProperties": False,
            "properties": {"statusCode": {"type": "integer", "minimum": 100, "maximum": 599}},
        },
    },
}


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One route's part of the plugin's document (``router.add_route(..., openapi=Operation(...))``).

    Types are msgspec types (a ``msgspec.Struct``, ``list[Item]``, ``dict[str, int]``...): their JSON
    Schema goes into the document. ``path_params`` and ``query_params`` are Structs whose fields are
    the parameters (a field with a default is optional); path parameters not in ``path_params`` take
    the type of their route convertor (``{id:int}``). ``body`` is the JSON request body (required);
    ``response`` the JSON body answered with ``status`` (``None``: not described). ``errors``: error
    statuses worth naming, each with why; every operation also documents any error in the kernel's shape.
    """

    summary: str = ""
    description: str = ""
    tags: Sequence[str] = ()
    path_params: type | None = None
    query_params: type | None = None
    body: Any = None
    response: Any = None
    status: int = 200
    #: the media type of ``response``; a non-JSON one describes a string (``text/plain``) unless typed
    media_type: str = "application/json"
    errors: Mapping[int, str] = field(default_factory=dict)
    operation_id: str = ""

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 399:
            raise PluginDeclarationError(f"Operation status {self.status} must be a success (1xx-3xx)")
        for status in self.errors:
            if not 400 <= status <= 599:
                raise PluginDeclarationError(f"Operation errors: {status} is not an error status (4xx-5xx)")


@dataclass(frozen=True, kw_only=True)
class OpenApi:
    """A plugin's OpenAPI 3.1 document: ``create_plugin(id, openapi=OpenApi(...))`` or ``router.set_openapi``.

    ``document`` (a mapping, or the path of a JSON or YAML file) is written by hand; the routes added
    with ``openapi=Operation(...)``, and every other route of the router, are added to it (an
    operation the document has already is kept as written). ``validate``: check every request to a
    documented operation against it in the worker, before the handler (400 ``InputError`` naming the
    field); needs the ``openapi`` extra (``jsonschema-rs``).
    """

    title: str = ""
    version: str = "1.0.0"
    description: str = ""
    document: Mapping[str, Any] | str | os.PathLike[str] | None = None
    validate: bool = False
    #: the hand-written document as loaded (a copy), or ``None``
    base: dict[str, Any] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.validate and not validator_installed():
            raise PluginDeclarationError(
                f"OpenApi(validate=True) needs the request validator ({VALIDATOR_MODULE.replace('_', '-')}): "
                f"install the kernel's '{VALIDATOR_EXTRA}' extra (pip install 'kernel[{VALIDATOR_EXTRA}]')"
            )
        if self.document is not None:
            object.__setattr__(self, "base", load_document(self.document))


def validator_installed() -> bool:
    """Whether the request validator (the ``openapi`` extra) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(VALIDATOR_MODULE) is not None
    except (ImportError, ValueError):
        return False


def load_document(document: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A hand-written document, checked: an OpenAPI 3.1 mapping whose ``paths`` is a mapping."""
    where = "OpenAPI document"
    data: Any = document
    if not isinstance(document, Mapping):
        path = Path(document)
        where = f"OpenAPI document {str(path)!r}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PluginDeclarationError(f"{where} cannot be read: {exc.strerror or exc}") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            kind = "JSON" if path.suffix == ".json" else "YAML"
            raise PluginDeclarationError(f"{where} is not valid {kind}: {exc}") from None
    if not isinstance(data, Mapping):
        raise PluginDeclarationError(f"{where} must be a mapping, not {type(data).__name__}")
    # a plain JSON copy: nothing shared with the caller, YAML's integer status keys become strings
    copied: dict[str, Any] = json.loads(json.dumps(data, default=str))
    version = copied.get("openapi")
    if not isinstance(version, str) or not version.startswith("3.1."):
        raise PluginDeclarationError(
            f"{where}: 'openapi' is {version!r}; only OpenAPI 3.1 documents are supported (JSON Schema 2020-12)"
        )
    if not isinstance(copied.get("paths", {}), dict):
        raise PluginDeclarationError(f"{where}: 'paths' must be a mapping")
    return copied
