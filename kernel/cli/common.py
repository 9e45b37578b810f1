"""What every ``kernel`` subcommand shares: which config files, the installed packages (loaded once)."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Sequence

from kernel.registry import Registry, load_registry

DEFAULT_CONFIG = os.path.join("conf", "app-config.yaml")


def config_paths(given: Sequence[str] | None) -> list[str]:
    """The ``--config`` files, else ``conf/app-config.yaml`` when it exists."""
    if given:
        return list(given)
    return [DEFAULT_CONFIG] if os.path.exists(DEFAULT_CONFIG) else []


def no_config_file() -> str:
    """What was looked for when no config file was found, and how to pass one."""
    where = os.path.abspath(DEFAULT_CONFIG)
    return f"no config file loaded: no --config given and {where} does not exist; pass one with --config FILE"


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", metavar="FILE", help="app-config file; repeat to merge")


@functools.cache
def registry() -> Registry:
    """Every installed plugin and hook provider, loaded once per command."""
    return load_registry()
