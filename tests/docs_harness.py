"""The docs' checks that run inside one page's folder (``tests/test_docs.py`` copies this file there).

``tests/test_docs.py`` writes every ```python block of a page to a file of a fresh folder (the path its
first line names, ``# kernel_todo/__init__.py``, else ``<page>_L<line>.py``) and runs pytest there with
``python_files = *.py``: each block is imported, so its top-level code runs, and its ``test_*``
functions run as tests. Beside them it writes ``docs_manifest.json`` and this module, which adds:

- ``test_block_boots``: a block with no tests of its own is imported and started: every plugin and
  module it declares (a module's plugin may come from another block of the page), and the block itself
  when it implements hooks, behind ``start_test_backend``, configured by the page's ```yaml blocks
  for those plugins; readiness must answer 200;
- ``test_yaml_block``: each ```yaml block is loaded as an app-config file (``${VAR}`` given a value)
  and validated as ``kernel config check`` does: the kernel's settings, the credential verifiers, the
  keys installed packages declare (``kernel_config_schemas``), ``backend.database``, and each other
  top-level key by the ``config_schema`` of its plugin (of the page, or installed);
- ``test_toml_block``: each ```toml block parses, and its ``kernel.plugins`` entry points name
  objects the page's blocks define (a plugin under its own id).

Never collected in ``tests/`` (its name does not start with ``test_``); it reads the manifest beside it.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from kernel.api import BackendModule, BackendPlugin, read_section, read_settings
from kernel.config import load_config, validate_plugin_config
from kernel.registry import Registry, load_registry
from kernel.testing import start_test_backend

MANIFEST_PATH = Path(__file__).with_name("docs_manifest.json")
MANIFEST: dict[str, Any] = json.loads(MANIFEST_PATH.read_text()) if MANIFEST_PATH.exists() else {}
PAGE = str(MANIFEST.get("page", ""))
BLOCKS: list[dict[str, Any]] = MANIFEST.get("python", [])
YAML: list[dict[str, Any]] = MANIFEST.get("yaml", [])
TOML: list[dict[str, Any]] = MANIFEST.get("toml", [])
#: top-level config keys that nothing validates (the app's own title, as in conf/app-config.yaml)
FREE_KEYS = {"app"}


def _id(block: dict[str, Any]) -> str:
    return f"{PAGE}:L{block['line']}"


def _modules() -> list[ModuleType]:
    """The page's blocks, imported; one that does not import is left out (pytest reports it on its own)."""
    found = []
    for block in BLOCKS:
        try:
            found.append(importlib.import_module(block["module"]))
        except Exception:
            continue
    return found


def _page_plugins() -> dict[str, BackendPlugin]:
    found: dict[str, BackendPlugin] = {}
    for module in _modules():
        for value in vars(module).values():
            if isinstance(value, BackendPlugin):
                found.setdefault(value.id, value)
    return found


def _implements_hooks(module: ModuleType) -> bool:
    return any(callable(v) and hasattr(v, "kernel_impl") for v in vars(module).values())


def _page_config(plugin_ids: set[str]) -> dict[str, Any]:
    """The page's ```yaml blocks for these plugins (their top-level keys), merged."""
    config: dict[str, Any] = {}
    for block in YAML:
        data = yaml.safe_load(block["text"]) or {}
        config.update({k: v for k, v in data.items() if k in plugin_ids})
    return config


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b["tests"]], ids=_id)
async def test_block_boots(block: dict[str, Any]) -> None:
    module = importlib.import_module(block["module"])
    values = list(vars(module).values())
    plugins = [v for v in values if isinstance(v, BackendPlugin)]
    modules = [v for v in values if isinstance(v, BackendModule)]
    elsewhere = _page_plugins()
    for m in modules:
        if m.plugin_id not in {p.id for p in plugins}:
            assert m.plugin_id in elsewhere, f"module {m!r}: no block of {PAGE} declares plugin '{m.plugin_id}'"
            plugins.append(elsewhere[m.plugin_id])
    hooks: list[object] = [module] if _implements_hooks(module) else []
    config = _page_config({p.id for p in plugins})
    async with start_test_backend([*plugins, *modules, *hooks], config=config) as backend:
        ready = await backend.client.get("/.kernel/health/v1/readiness")
        assert ready.status_code == 200, ready.text


@functools.cache
def _installed() -> Registry:
    """Every installed package's plugins and hooks, as ``kernel serve`` loads them."""
    return load_registry()


def _hooks() -> Any:
    manager = _installed().manager
    assert manager is not None
    return manager.hook


def _declared_schemas() -> dict[str, Any]:
    """The keys installed packages and the page's hook modules declare (``kernel_config_schemas``)."""
    results: list[dict[str, Any]] = _hooks().kernel_config_schemas()
    for module in _modules():
        declare = getattr(module, "kernel_config_schemas", None)
        if callable(declare) and hasattr(declare, "kernel_impl"):
            results.insert(0, declare())
    return {key: schema for found in reversed(results) for key, schema in found.items()}


@pytest.mark.parametrize("block", YAML, ids=_id)
def test_yaml_block(block: dict[str, Any], tmp_path: Path) -> None:
    from kernel_services.database import read_settings as read_database_settings

    text: str = block["text"]
    path = tmp_path / "app-config.yaml"
    path.write_text(text)
    env = {name: "docs-example-value" for name in re.findall(r"\$\{(\w+)\}", text)}
    config = load_config([path], env=env)
    read_settings(config)
    _hooks().kernel_credential_verifiers(config=config)  # a bad backend.auth entry raises ConfigError
    declared = _declared_schemas()
    for key, schema in declared.items():
        if config.has(key):
            read_section(config, key, schema)
    if config.has("backend.database"):
        read_database_settings(config, "docs")
    installed = {e.id: e.plugin for e in _installed().plugins.values()}
    plugins = {**installed, **_page_plugins()}
    top_level: list[str] = config.keys()
    for key in top_level:
        if key == "backend" or key in FREE_KEYS or any(d.split(".")[0] == key for d in declared):
            continue
        plugin = plugins.get(key)
        assert plugin is not None, f"top-level key '{key}' is neither the kernel's, a declared one nor a plugin's"
        if plugin.config_schema is not None:
            assert validate_plugin_config(config, key, plugin.config_schema) == []


@pytest.mark.parametrize("block", TOML, ids=_id)
def test_toml_block(block: dict[str, Any]) -> None:
    data = tomllib.loads(block["text"])
    points = data.get("project", {}).get("entry-points", {}).get("kernel.plugins", {})
    for name, value in points.items():
        module_name, _, attribute = value.partition(":")
        target = importlib.import_module(module_name.strip())
        obj = getattr(target, attribute.strip()) if attribute else target
        if isinstance(obj, BackendPlugin):
            assert obj.id == name, f"entry point '{name}' names plugin '{obj.id}': name it as the plugin's id"
        elif isinstance(obj, BackendModule):
            assert name.startswith(obj.plugin_id), f"entry point '{name}' of module {obj!r}"
        else:
            assert isinstance(obj, ModuleType) and _implements_hooks(obj), f"{value} is no plugin, module nor hooks"
