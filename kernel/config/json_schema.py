"""One JSON Schema of everything installed (``kernel config schema``), and the config a visibility may see.

As the reference system's ``config:schema``: the kernel's settings (``kernel.settings.Settings``, each
section at its config key), the keys installed packages declare (``kernel_config_schemas``) and each
installed plugin's ``config_schema`` (at its plugin id), merged into one document, JSON Schema 2020-12.
Each part's ``$defs`` move to the document's, named after their owner (``kernel.Listen``,
``hello.HelloConfig``), so two parts' types of one name never clash.

Visibility, as in the reference system: a value is ``backend`` (the default), ``frontend`` or
``secret``, said by the schema's ``visibility`` keyword. A plugin marks a field with
``Annotated[str, msgspec.Meta(extra_json_schema={"visibility": "frontend"})]``; ``kernel.api.Secret``
carries ``secret``. The reference's own frontend keys keep theirs: ``app.baseUrl``, ``app.title``,
``backend.baseUrl``. ``visible(config, schema, "frontend")`` keeps only the values marked so
(``kernel config print --frontend``).

No I/O here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

__all__ = ["FRONTEND_KEYS", "kernel_parts", "merge", "part", "visible"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: where a field of ``Settings`` lives when not at ``backend.<camelName>`` (``""``: its fields one level up)
_ROOT_KEYS = {"reload": "backend.config.reload", "edge": ""}
#: keys the reference system shows the frontend, with the type the kernel gives them
FRONTEND_KEYS = {"app.baseUrl": "string", "app.title": "string", "backend.baseUrl": "string"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def part(owner: str, t: Any) -> dict[str, Any]:
    """The JSON Schema of msgspec type ``t``, its ``$defs`` named after ``owner``."""
    (schema,), defs = msgspec.json.schema_components([t], ref_template=f"#/$defs/{owner}.{{name}}")
    return {**schema, "$defs": {f"{owner}.{name}": d for name, d in defs.items()}} if defs else schema


def kernel_parts() -> list[tuple[str, dict[str, Any]]]:
    """(config key, schema) of each section of the kernel's own settings, and its frontend keys."""
    from kernel.settings import Settings

    parts: list[tuple[str, dict[str, Any]]] = []
    for field in msgspec.structs.fields(Settings):
        key = _ROOT_KEYS.get(field.name, f"backend.{_camel(field.name)}")
        if key:
            parts.append((key, part("kernel", field.type)))
            continue
        for inner in msgspec.structs.fields(field.type):  # read one level up: backend.cors, backend.csp...
            parts.append((f"backend.{_camel(inner.name)}", part("kernel", inner.type)))
    for key, kind in FRONTEND_KEYS.items():
        parts.append((key, {"type": kind, "visibility": "frontend"}))
    return parts


def merge(parts: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """One document: each part's schema at its dotted key (a later part adds to an object an earlier made)."""
    root: dict[str, Any] = {"$schema": DIALECT, "type": "object", "properties": {}}
    defs: dict[str, Any] = {}
    for key, given in parts:
        schema: dict[str, Any] = copy.deepcopy(dict(given))
        defs.update(schema.pop("$defs", {}))
        node = root
        *parents, last = key.split(".")
        for name in parents:
            props = node.setdefault("properties", {})
            node = props.setdefault(name, {"type": "object", "properties": {}})
            node = _object_of(node)
        props = node.setdefault("properties", {})
        if last in props and isinstance(props[last], dict) and "properties" in props[last]:
            props[last] = {**schema, "properties": {**props[last]["properties"], **schema.get("properties", {})}}
        else:
            props[last] = schema
    if defs:
        root["$defs"] = dict(sorted(defs.items()))
    return root


def _object_of(node: dict[str, Any]) -> dict[str, Any]:
    """The object schema to add properties to (``anyOf`` of an object and null: the object)."""
    for option in node.get("anyOf", []):
        if isinstance(option, dict) and option.get("type") == "object":
            return option
    return node


def _resolve(schema: Mapping[str, Any], doc: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(doc.get("$defs", {}).get(ref[len("#/$defs/") :], {}), doc)
    return schema


def _children(schema: Mapping[str, Any], doc: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """(named properties, the schema of any other key) of an object schema, following refs and ``anyOf``."""
    schema = _resolve(schema, doc)
    props: dict[str, Any] = {}
    other: Any = None
    for s in [schema, *schema.get("anyOf", [])]:
        s = _resolve(s, doc)
        props.update(s.get("properties", {}))
        if isinstance(s.get("additionalProperties"), dict):
            other = s["additionalProperties"]
    return props, other


def visible(config: Any, doc: Mapping[str, Any], visibility: str) -> Any:
    """The parts of ``config`` whose schema says ``visibility`` (an object keeps the keys that have some).

    ``None`` when nothing in ``config`` has it.
    """
    return _visible(config, doc, doc, visibility)


def _visible(value: Any, schema: Mapping[str, Any], doc: Mapping[str, Any], visibility: str) -> Any:
    resolved = _resolve(schema, doc)
    if resolved.get("visibility") == visibility:
        return value
    if isinstance(value, dict):
        props, other = _children(resolved, doc)
        kept = {}
        for key, child in value.items():
            sub = props.get(key, other)
            if sub is None:
                continue
            found = _visible(child, sub, doc, visibility)
            if found is not None:
                kept[key] = found
        return kept or None
    if isinstance(value, list):
        items = resolved.get("items")
        if isinstance(items, dict):
            found = [_visible(v, items, doc, visibility) for v in value]
            return found if any(f is not None for f in found) else None
    return None
