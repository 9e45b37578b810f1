"""The ``kernel`` command's own subcommands, registered through ``kernel_cli_commands``.

Each command's module is imported only when it runs: loading this provider
(which every kernel process does) costs nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kernel.hookspecs import hookimpl
from kernel.hooktypes import CliCommand


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    from kernel.cli.common import add_config_option

    add_config_option(parser)
    parser.add_argument(
        "--dev", action="store_true", help="development mode: readable logs, stack traces, plugins reloaded on save"
    )


def _serve(args: argparse.Namespace) -> int:
    from kernel.cli.serve import cmd_serve

    return cmd_serve(args)


def _plugins_arguments(parser: argparse.ArgumentParser) -> None:
    from kernel.cli.plugins import arguments

    arguments(parser)


def _plugins(args: argparse.Namespace) -> int:
    from kernel.cli.plugins import cmd_plugins

    return cmd_plugins(args)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    from kernel.cli.config import arguments

    arguments(parser)


def _config(args: argparse.Namespace) -> int:
    from kernel.cli.config import run

    return run(args)


def _new_arguments(parser: argparse.ArgumentParser) -> None:
    from kernel.cli.new import arguments

    arguments(parser)


def _new(args: argparse.Namespace) -> int:
    from kernel.cli.new import run

    return run(args)


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    from kernel.cli.status import arguments

    arguments(parser)


def _status(args: argparse.Namespace) -> int:
    from kernel.cli.status import run

    return run(args)


def _rollout_arguments(parser: argparse.ArgumentParser) -> None:
    from kernel.cli.rollout import arguments

    arguments(parser)


def _keys_arguments(parser: argparse.ArgumentParser) -> None:
    from kernel.cli.keys import arguments

    arguments(parser)


def _rollout(args: argparse.Namespace) -> int:
    from kernel.cli.rollout import run

    return run(args)


def _keys(args: argparse.Namespace) -> int:
    from kernel.cli.keys import run

    return run(args)


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    from kernel.cli.worker import arguments

    arguments(parser)


def _worker(args: argparse.Namespace) -> int:
    from kernel.cli.worker import run

    return run(args)


@hookimpl
def kernel_cli_commands() -> Sequence[CliCommand]:
    return [
        CliCommand("serve", "run the gateway and every installed plugin", _serve, _serve_arguments),
        CliCommand("plugins", "list the installed plugins", _plugins, _plugins_arguments),
        CliCommand("config", "check or print the merged app-config", _config, _config_arguments),
        CliCommand("new", "create a plugin or module package from a template", _new, _new_arguments),
        CliCommand("status", "a running kernel's plugins, workers and processes, live", _status, _status_arguments),
        CliCommand(
            "rollout",
            "replace a running kernel's plugin workers, or restart its gateways, with no failed request",
            _rollout,
            _rollout_arguments,
        ),
        CliCommand("keys", "generate CurveZMQ keys for remote workers", _keys, _keys_arguments),
        CliCommand("worker", "serve one plugin of a running kernel from this host", _worker, _worker_arguments),
    ]
