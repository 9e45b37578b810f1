"""``kernel config check`` and ``kernel config print``: the merged app-config, validated or shown.

``check`` validates what ``kernel serve`` validates — the kernel's settings
(``kernel.settings``) and every credential verifier built from the config —
plus the config keys installed packages declare through ``kernel_config_schemas``
(``discovery.endpoints`` of the built-in services, for one) and, for every
installed plugin with a ``config_schema``, the top-level key named after the plugin.
The plugins' schemas are applied in the discovery child (``kernel.discovery``): their code
never runs in this process. ``print`` shows the merged config (YAML, or ``--json``) with
every secret as ``<secret>`` (the secret paths of the plugins' schemas come from that report).
Both need a config file (``--config``, else ``conf/app-config.yaml``); a config that is
missing, does not load or does not validate exits 2, as ``kernel serve`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import yaml

from kernel.cli.common import add_config_option, config_paths, installed, no_config_file
from kernel.cli.serve import check_credentials
from kernel.config import Config, ConfigError, load_config, redact_secrets
from kernel.discovery.parent import Installed, discover
from kernel.errors import BootError
from kernel.registry import LoadFailure
from kernel.settings import read_section, read_settings

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
    checks: list[Callable[[], object]] = [lambda: read_settings(config), lambda: check_credentials(reg, config)]
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
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False))
    return 0
