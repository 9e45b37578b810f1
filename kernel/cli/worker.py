"""``kernel worker``: serve one plugin of a running kernel from this host (``kernel.worker.remote``).

Each option has an environment variable for containers: ``KERNEL_PLUGIN``, ``KERNEL_JOIN``,
``KERNEL_SERVER_KEY``, ``KERNEL_WORKER_KEY``.
"""

from __future__ import annotations

import argparse
import os
import sys

OPTIONS = (
    ("--plugin", "KERNEL_PLUGIN", "ID", "the plugin this worker serves (its package is installed here)"),
    ("--join", "KERNEL_JOIN", "tcp://HOST:PORT", "the kernel's join port (backend.workers.remote.listen)"),
    ("--server-key", "KERNEL_SERVER_KEY", "FILE", "the kernel's public certificate (server.key)"),
    ("--key", "KERNEL_WORKER_KEY", "FILE", "this worker's certificate with its secret key (NAME.key_secret)"),
)


def arguments(parser: argparse.ArgumentParser) -> None:
    for flag, env, metavar, text in OPTIONS:
        parser.add_argument(flag, metavar=metavar, default=os.environ.get(env), help=f"{text}; default ${env}")


def run(args: argparse.Namespace) -> int:
    from kernel.logs import configure
    from kernel.worker.remote import run as run_remote

    missing = [f"{flag} (or ${env})" for flag, env, _, _ in OPTIONS if not getattr(args, flag[2:].replace("-", "_"))]
    if missing:
        print(f"kernel worker: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    if not args.join.startswith("tcp://"):
        print(f"kernel worker: --join must be tcp://HOST:PORT, got {args.join!r}", file=sys.stderr)
        return 2
    configure(os.environ.get("KERNEL_LOG_LEVEL", "info"))
    return run_remote(args.plugin, args.join, args.server_key, args.key)
