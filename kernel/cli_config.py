"""``kernel config check`` and ``kernel config print``: the merged app-config, validated or shown.

``check`` validates the kernel's settings (``backend.listen/gateway/workers/startup``), the
services' settings (``backend.logging``, ``backend.config.reload``, ``discovery.endpoints``) and,
for every installed plugin with a ``config_schema``, the top-level key named after the plugin.
``print`` shows the merged config (YAML, or ``--json``) with every secret as ``<secret>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import yaml

from kernel.config import Config, ConfigError, load_config
from kernel.registry import Registry, load_registry
from kernel.settings import read_settings


def register(subparsers: Any) -> None:
    """Add ``config check`` and ``config print`` to the ``kernel`` command's subparsers."""
    parser = subparsers.add_parser("config", help="check or print the merged app-config")
    sub = parser.add_subparsers(dest="config_command", required=True)
    check = sub.add_parser("check", help="validate the config against the kernel's and every plugin's schema")
    check.add_argument("--config", action="append", metavar="FILE", help="app-config file; repeat to merge")
    check.set_defaults(func=cmd_check)
    show = sub.add_parser("print", help="print the merged config with secrets redacted")
    show.add_argument("--config", action="append", metavar="FILE", help="app-config file; repeat to merge")
    show.add_argument("--json", action="store_true", help="JSON instead of YAML")
    show.set_defaults(func=cmd_print)


def _load(args: argparse.Namespace) -> tuple[list[str], Config | None]:
    from kernel.cli import _config_paths

    paths = _config_paths(args.config)
    try:
        return paths, load_config(paths)
    except ConfigError as exc:
        print(f"kernel: config error: {exc}", file=sys.stderr)
        return paths, None


def _registry() -> Registry:
    reg = load_registry()
    for failure in reg.failures:
        print(f"warning: {failure} (its config was not checked)", file=sys.stderr)
    return reg


def _service_checks() -> list[Callable[[Config], object]]:
    from services.config import read_reload_settings
    from services.discovery import read_discovery_endpoints
    from services.logger import read_logging_settings

    return [read_settings, read_logging_settings, read_reload_settings, read_discovery_endpoints]


def cmd_check(args: argparse.Namespace) -> int:
    from services.config import validate_plugin_config

    paths, config = _load(args)
    if config is None:
        return 1
    errors: list[str] = []
    for check in _service_checks():
        try:
            check(config)
        except ConfigError as exc:
            errors.append(str(exc))
    checked = 0
    for entry in sorted(_registry().plugins.values(), key=lambda e: e.id):
        schema = entry.plugin.config_schema
        if schema is not None:
            checked += 1
            found = validate_plugin_config(config, entry.id, schema)
            errors.extend(f"{e} (package '{entry.distribution}')" for e in found)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        print(f"config check failed: {len(errors)} error(s)", file=sys.stderr)
        return 1
    print(f"config OK: {len(paths)} file(s), {checked} plugin schema(s) checked")
    return 0


def cmd_print(args: argparse.Namespace) -> int:
    from services.config import plugin_secret_paths, redact_secrets

    _, config = _load(args)
    if config is None:
        return 1
    schemas = {e.id: e.plugin.config_schema for e in _registry().plugins.values()}
    data = redact_secrets(config, plugin_secret_paths(schemas))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False))
    return 0
