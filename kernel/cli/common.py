"""What every ``kernel`` subcommand shares: which config files, the installed packages (discovered once)."""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Sequence

from kernel.plugin_scan.parent import Installed, find_installed

DEFAULT_CONFIG = os.path.join("conf", "app-config.yaml")


def config_paths(given: Sequence[str] | None) -> list[str]:
    """The ``--config`` files, else ``conf/app-config.yaml`` when it exists."""
    if given:
        return list(given)
    return [DEFAULT_CONFIG] if os.path.exists(DEFAULT_CONFIG) else []


def config_arguments(argv: Sequence[str]) -> list[str]:
    """The values of ``--config X`` and ``--config=X`` in ``argv`` (a ``RootConfigOptions.argv``), in order."""
    found: list[str] = []
    items = iter(argv)
    for item in items:
        if item == "--config":
            found.append(next(items, ""))
        elif item.startswith("--config="):
            found.append(item.partition("=")[2])
    return [value for value in found if value]


def no_config_file() -> str:
    """What was looked for when no config file was found, and how to pass one."""
    where = os.path.abspath(DEFAULT_CONFIG)
    return f"no config file loaded: no --config given and {where} does not exist; pass one with --config FILE"


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", action="append", metavar="FILE", help="app-config file or http(s) URL; repeat to merge"
    )


_found: list[Installed] = []


def installed(first: subprocess.Popen[bytes] | None = None) -> Installed:
    """Every installed plugin (as data, found by the discovery child) and the hook providers, once per command.

    ``first``: the discovery child ``main`` started first thing. Raises ``BootError`` when the
    discovery itself fails with no package to blame.
    """
    if not _found:
        _found.append(find_installed(first))
    return _found[0]
