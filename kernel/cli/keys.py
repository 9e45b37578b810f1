"""``kernel keys generate DIR --name NAME``: CurveZMQ certificates for remote workers and the kernel.

Writes pyzmq's certificate files: ``DIR/NAME.key`` (the public key: give it to the other side) and
``DIR/NAME.key_secret`` (the pair, mode 0600: it stays where it was made). ``--plugin`` (repeatable)
binds a worker key to the plugins it may serve (docs/remote-workers.md).
"""

from __future__ import annotations

import argparse
import sys

from kernel.errors import ConfigError
from kernel.transport.curve import fingerprint, generate, load_public


def arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    gen = sub.add_parser("generate", help="write a new key pair: DIR/NAME.key and DIR/NAME.key_secret")
    gen.add_argument("directory", metavar="DIR", help="where to write the two files (created if missing)")
    gen.add_argument("--name", required=True, help="the files' name, e.g. server, or worker-catalog")
    gen.add_argument(
        "--plugin", action="append", metavar="ID", help="a worker key: the plugin it may serve (repeat for more)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        public, secret = generate(args.directory, args.name, args.plugin)
    except (ConfigError, OSError) as exc:
        print(f"kernel keys: {exc}", file=sys.stderr)
        return 2
    print(f"public key {fingerprint(load_public(public))} in {public}")
    print(f"secret key in {secret} (mode 0600: keep it on this host)")
    return 0
