"""``kernel rollout``: replace a running kernel's plugin workers, or restart its gateways, with no failed request.

``kernel rollout catalog [search ...]`` replaces those plugins' workers one plugin after the other
(after installing a new version of a package, or changing the config), ``--all`` every plugin's,
``--gateways`` restarts the gateway processes one at a time. It asks the kernel at ``--url`` (by
default the address ``backend.listen`` of the config gives, as ``kernel status``) through
``POST /.kernel/rollout/v1/rollouts`` with an operator's token (``--token`` or ``$KERNEL_TOKEN``;
see ``backend.dashboard.operators``), then follows the rollout and prints each step as the
supervisor takes it. Exit code 0 once it succeeded; 1 with one readable line on stderr when it
failed (new workers that do not start: the old ones keep serving), was refused, or the kernel
cannot be reached; 2 for a config that does not load. ``--no-wait`` prints the rollout's id and
returns at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from kernel.cli.operator_http import OperatorCallError, call
from kernel.cli.status import CONFIG_ERROR, default_url
from kernel.errors import ConfigError
from kernel.rollout.paths import ROLLOUTS

#: seconds between two looks at a running rollout
POLL = 0.2
#: seconds the kernel may stay unreachable, or not know the rollout yet, while it runs (gateways restarting)
UNREACHABLE_FOR = 30.0


def arguments(parser: argparse.ArgumentParser) -> None:
    from kernel.cli.common import add_config_option

    parser.add_argument("plugins", nargs="*", metavar="PLUGIN_ID", help="the plugins whose workers are replaced")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true", help="replace every plugin's workers, one plugin after the other")
    what.add_argument("--gateways", action="store_true", help="restart the gateway processes, one at a time")
    add_config_option(parser)
    parser.add_argument("--url", help="the kernel's address (default: backend.listen of the config)")
    parser.add_argument("--token", help="an operator's bearer token (default: $KERNEL_TOKEN)")
    parser.add_argument("--no-wait", action="store_true", help="print the rollout's id and return without following it")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to follow the rollout (default: 900)")
    parser.add_argument(
        "--insecure", action="store_true", help="accept any TLS certificate (a development kernel's self-signed one)"
    )


def _show(step: dict[str, Any]) -> str:
    return f"  {time.strftime('%H:%M:%S', time.localtime(step['at']))}  {step['message']}"


def follow(base: str, rollout: dict[str, Any], token: str, *, insecure: bool, timeout: float) -> dict[str, Any]:
    """Print each step of ``rollout`` as it comes, until it ends; its last state."""
    path = f"{ROLLOUTS}/{rollout['id']}"
    shown = 0
    deadline = time.monotonic() + timeout
    trouble_since: float | None = None
    while True:
        for step in rollout["steps"][shown:]:
            print(_show(step), flush=True)
        shown = len(rollout["steps"])
        if rollout["state"] != "running":
            return rollout
        if time.monotonic() > deadline:
            raise OperatorCallError(f"rollout {rollout['id']} still runs after {timeout:g}s (--timeout); it goes on")
        time.sleep(POLL)
        try:
            rollout = call(base, path, token, insecure=insecure)["rollout"]
            trouble_since = None
        except OperatorCallError as exc:
            # a gateway restarting, or one not told of the rollout yet: look again, for a while
            if exc.status in (401, 403):
                raise
            now = time.monotonic()
            trouble_since = trouble_since or now
            if now - trouble_since > UNREACHABLE_FOR:
                raise


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("KERNEL_TOKEN", "")
    if bool(args.plugins) + args.all + args.gateways != 1:
        print("kernel: name the plugins to roll out, or --all, or --gateways (one of them)", file=sys.stderr)
        return 1
    body: dict[str, Any] = (
        {"gateways": True} if args.gateways else {"allPlugins": True} if args.all else {"plugins": args.plugins}
    )
    try:
        base = (args.url or default_url(args.config)).rstrip("/")
    except ConfigError as exc:  # as the other commands say it
        print(f"kernel: config error: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    try:
        rollout = call(base, ROLLOUTS, token, body, insecure=args.insecure)["rollout"]
        what = "the gateways" if rollout["gateways"] else "plugin " + ", ".join(f"'{p}'" for p in rollout["plugins"])
        print(f"rollout {rollout['id']} of {what} at {base}", flush=True)
        if args.no_wait:
            return 0
        rollout = follow(base, rollout, token, insecure=args.insecure, timeout=args.timeout)
    except OperatorCallError as exc:
        print(f"kernel: {exc}", file=sys.stderr)
        return 1
    seconds = (rollout["finishedAt"] or time.time()) - rollout["requestedAt"]
    if rollout["state"] != "succeeded":
        print(
            f"kernel: rollout {rollout['id']} {rollout['state']} after {seconds:.2f}s: {rollout['error']}",
            file=sys.stderr,
        )
        return 1
    print(f"rollout {rollout['id']} succeeded in {seconds:.2f}s")
    return 0
