"""The ``kernel`` command: its subcommands come from the ``kernel_cli_commands`` hook.

The built-in ones (``serve``, ``plugins``, ``config check|print``) register in
``kernel.cli.commands`` exactly as an installed package adds its own. The command imports
no plugin: a child process discovers the installed packages (``kernel.plugin_scan``), and only
the hook providers it names are imported here. The child starts first thing, so the command's
own imports overlap with it: keep this module's top-level imports to the standard library.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kernel import __version__


def main(argv: Sequence[str] | None = None) -> int:
    from kernel.plugin_scan.spawn import start

    first = start()  # at once: the imports below run while the child imports the plugins

    from kernel.cli.common import installed
    from kernel.errors import BootError
    from kernel.hooktypes import CliCommand
    from kernel.registry import in_registration_order

    parser = argparse.ArgumentParser(prog="kernel", description="A plugin microkernel for backend services.")
    parser.add_argument("--version", action="version", version=f"kernel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    try:
        manager = installed(first).manager
    except BootError as exc:
        print(f"kernel: {exc}", file=sys.stderr)
        return 1
    results: list[Sequence[CliCommand]] = manager.hook.kernel_cli_commands()
    for command in in_registration_order(results):
        command_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        command.arguments(command_parser)
        command_parser.set_defaults(run=command.run)
    args = parser.parse_args(argv)
    return int(args.run(args))
