"""``kernel bench``: the benchmarks as a ``kernel`` subcommand, added through ``kernel_cli_commands``.

Every argument after ``bench`` goes to ``benchmarks.cli.main`` untouched (``kernel bench --help``
is the benchmark's help). Registered as an entry point of the kernel distribution, so every
``kernel`` process loads this module: it imports nothing until the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kernel.hookspecs import hookimpl
from kernel.hooktypes import CliCommand

PROG = "kernel bench"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the arguments of python -m benchmarks")
    # No option is this parser's own, not even -h: with no prefix characters every argument,
    # "--help" included, is a positional one and reaches the benchmark's own parser.
    parser.prefix_chars = ""


def _run(args: argparse.Namespace) -> int:
    from kernel_benchmarks.cli import main

    return main(args.args, prog=PROG)


@hookimpl
def kernel_cli_commands() -> Sequence[CliCommand]:
    return [CliCommand("bench", "run the load benchmarks (kernel bench --help)", _run, _arguments)]
