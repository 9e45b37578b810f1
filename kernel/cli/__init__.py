"""The ``kernel`` command: its subcommands come from the ``kernel_cli_commands`` hook.

The built-in ones (``serve``, ``plugins``, ``config check|print``) register in
``kernel.cli.commands`` exactly as an installed package adds its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kernel import __version__
from kernel.cli.common import registry
from kernel.hooktypes import CliCommand
from kernel.registry import in_registration_order


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kernel", description="A plugin microkernel for backend services.")
    parser.add_argument("--version", action="version", version=f"kernel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    manager = registry().manager
    assert manager is not None
    results: list[Sequence[CliCommand]] = manager.hook.kernel_cli_commands()
    for command in in_registration_order(results):
        command_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        command.arguments(command_parser)
        command_parser.set_defaults(run=command.run)
    args = parser.parse_args(argv)
    return int(args.run(args))
