"""``kernel config check`` and ``kernel config print``: the merged app-config, validated or shown.

``check`` validates what ``kernel serve`` validates — the kernel's settings
(``kernel.settings``), every credential verifier built from the config and the OS users workers
run as (``kernel.os_users``: they exist, and Python starts as them) —
plus the config keys installed packages declare through ``kernel_config_schemas``
(``discovery.endpoints`` of the built-in services, for one) and, for every
installed plugin with a ``config_schema``, the top-level key named after the plugin.
The plugins' schemas are applied in the discovery child (``kernel.plugin_scan``): their code
never runs in this process. ``print`` shows the merged config (YAML, or ``--json``) with
every secret as ``<secret>`` (the secret paths of the plugins' schemas come from that report);
``print --frontend`` only the values the schemas make visible to a frontend (``kernel.config.json_schema``).
``schema`` prints the JSON Schema of everything installed (``kernel.cli.config_schema``).
Both need a config file (``--config``, else ``conf/app-config.yaml``); a config that is
missing, does not load or does not validate exits 2, as ``kernel serve`` does.
``visible <pluginId>`` prints exactly what that plugin's workers get (``kernel.config.scoping``),
secrets as ``<secret>``, then every key withheld from them and why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import yaml

from kernel.cli import config_schema
from kernel.cli.common import add_config_option, config_paths, installed, no_config_file
from kernel.cli.serve import check_credentials
from kernel.config import Config, ConfigError, load_config, redact_secrets
from kernel.config.json_schema import visible
from kernel.config.scoping import plugin_config
from kernel.errors import BootError
from kernel.os_users import check_worker_users
from kernel.plugin_scan.parent import Installed, discover
from kernel.registry import LoadFailure
from kernel.settings import read_section, read_settings
from kernel_services.plugin_logins import planned_logins

#: the exit code of a config that does not load or does not validate (as ``kernel serve``)
CONFIG_ERROR = 2


def arguments(parser: argparse.ArgumentParser) -> None:
    """``config check`` and ``config print``."""
    sub = parser.add_subparsers(dest="config_command", required=True)
    check = sub.add_parser("check", help="validate the config against the kernel's and every plugin's schema")
    add_config_option(check)
    check.set_defaults(config_run=cmd_check)
    show = sub.add_parser("print", help="print the merged config with secrets redacted")
    add_config_option(show)
    show.add_argument("--json", action="store_true", help="JSON instead of YAML")
    show.set_defaults(config_run=cmd_print)
    show.add_argument("--frontend", action="store_true", help="only the values the schemas make visible to a frontend")
    schema = sub.add_parser("schema", help="print the JSON schema of the config of everything installed")
    config_schema.arguments(schema)
    schema.set_defaults(config_run=lambda args: config_schema.cmd_schema(args, installed()))
    visible = sub.add_parser("visible", help="print the config a plugin's workers get, and what is hidden from them")
    visible.add_argument("plugin_id", help="the plugin's id")
    add_config_option(visible)
    visible.add_argument("--json", action="store_true", help="JSON ({config, hidden}) instead of YAML")
    visible.set_defaults(config_run=cmd_visible)


def run(args: argparse.Namespace) -> int:
    return int(args.config_run(args))


def _load(args: argparse.Namespace) -> tuple[list[str], Config | None]:
    paths = config_paths(args.config)
    if not paths:
        print(f"kernel: config error: {no_config_file()}", file=sys.stderr)
        return paths, None
    try:
        return paths, load_config(paths)
    except ConfigError as exc:
        print(f"kernel: config error: {exc}", file=sys.stderr)
        return paths, None


def _warn_unchecked(failures: Iterable[LoadFailure]) -> None:
    for failure in failures:
        print(f"warning: {failure} (its config was not checked)", file=sys.stderr)


def _declared_schemas(reg: Installed) -> dict[str, Any]:
    results: list[Mapping[str, Any]] = reg.manager.hook.kernel_config_schemas()
    return {key: schema for found in reversed(results) for key, schema in found.items()}


def cmd_check(args: argparse.Namespace) -> int:
    paths, config = _load(args)
    if config is None:
        return CONFIG_ERROR
    reg = installed()
    try:
        report = discover(config, lost=reg.lost)  # the plugins' schemas meet the config in the discovery child
    except BootError as exc:
        print(f"kernel: {exc}", file=sys.stderr)
        return 1
    _warn_unchecked(report.failures)
    errors: list[str] = []
    checks: list[Callable[[], object]] = [
        lambda: read_settings(config),
        lambda: check_credentials(reg, config),
        # the OS users workers run as exist and can start one, as kernel serve checks before starting
        lambda: check_worker_users(read_settings(config).workers, reg.plugins),
    ]
    for key, schema in _declared_schemas(reg).items():
        if config.has(key):
            checks.append(partial(read_section, config, key, schema))
    for check in checks:
        try:
            check()
        except ConfigError as exc:
            errors.append(str(exc))
    errors.extend(report.config_problems)
    checked = len(report.schemas)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        print(f"config check failed: {len(errors)} error(s)", file=sys.stderr)
        return CONFIG_ERROR
    files = f"{len(paths)} file" if len(paths) == 1 else f"{len(paths)} files"
    print(f"config OK: {', '.join(paths)} ({files}), {checked} plugin schema(s) checked")
    return 0


def cmd_print(args: argparse.Namespace) -> int:
    _, config = _load(args)
    if config is None:
        return CONFIG_ERROR
    reg = installed()
    _warn_unchecked(reg.failures)
    data = redact_secrets(config, reg.secret_paths)
    if args.frontend:  # as the reference's config:print --frontend: what a frontend would be given
        data = visible(data, config_schema.installed_schema(reg), "frontend") or {}
    _dump(data, args.json)
    return 0


def _dump(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False))


def cmd_visible(args: argparse.Namespace) -> int:
    _, config = _load(args)
    if config is None:
        return CONFIG_ERROR
    reg = installed()
    plugin = reg.plugins.get(args.plugin_id)
    if plugin is None:
        known = ", ".join(sorted(reg.plugins)) or "none"
        print(f"kernel: no installed plugin '{args.plugin_id}' (installed: {known})", file=sys.stderr)
        return 1
    try:
        login, whys = asyncio.run(planned_logins(config, plugin.id))  # its own PostgreSQL and Redis logins, if any
        scoped = plugin_config(config, plugin, scoped=read_settings(config).workers.scope_config, login=login)
    except ConfigError as exc:
        print(f"kernel: config error: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    derived = [".".join(path) for path in config.derived]
    data = redact_secrets(scoped, [*reg.secret_paths, *derived])
    hidden = {key: why.partition(": ")[2] for key, why in sorted(scoped.hidden().items())}
    if args.json:
        _dump({"config": data, "hidden": hidden}, True)
        return 0
    _dump(data, False)
    for why in whys:
        print(f"# {why}")
    print(f"# hidden from plugin '{plugin.id}':" if hidden else f"# nothing hidden from plugin '{plugin.id}'")
    for key, why in hidden.items():
        print(f"#   {key}: {why}")
    return 0
