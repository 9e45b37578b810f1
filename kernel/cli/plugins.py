"""``kernel plugins``: the installed plugins (from the discovery report), or (``--url``) a running
kernel's plugins and worker states."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from kernel.cli.common import installed
from kernel.plugin_scan.parent import Installed


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--url", help="ask a running kernel (e.g. http://localhost:7007) for worker states")
    parser.add_argument("--token", help="bearer token for --url (default: $KERNEL_TOKEN)")


def cmd_plugins(args: argparse.Namespace) -> int:
    if args.url:
        return _running_plugins(args)
    reg: Installed = installed()
    rows: list[dict[str, Any]] = [
        {
            "id": p.id,
            "distribution": p.distribution,
            "version": p.version,
            "module": p.module,
            "modules": [{"id": m.module_id, "distribution": m.distribution} for m in p.modules],
        }
        for p in sorted(reg.plugins.values(), key=lambda p: p.id)
    ]
    failures = [{"name": f.name, "distribution": f.distribution, "reason": f.reason} for f in reg.failures]
    if args.json:
        print(json.dumps({"plugins": rows, "failures": failures, "providers": reg.providers}, indent=2))
        return 0
    width = max([len(r["id"]) for r in rows] + [2])
    for r in rows:
        modules = ", ".join(f"{m['id']} ({m['distribution']})" for m in r["modules"])
        print(
            f"{r['id']:<{width}}  {r['distribution']} {r['version']}  ({r['module']})"
            + (f"  modules: {modules}" if modules else "")
        )
    for f in reg.failures:
        print(f"FAILED {f}")
    return 1 if failures else 0


def _running_plugins(args: argparse.Namespace) -> int:
    """The plugins of a running kernel with their worker states (``/.kernel/instance/v1/plugins``)."""
    import urllib.error
    import urllib.request

    token = args.token or os.environ.get("KERNEL_TOKEN", "")
    request = urllib.request.Request(args.url.rstrip("/") + "/.kernel/instance/v1/plugins")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            report = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        print(f"kernel: {args.url} answered {exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kernel: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for p in report["plugins"]:
        workers = ", ".join(f"{w}: {state}" for w, state in p["workers"].items()) or "no worker"
        print(f"{p['id']:<16} {p['version']:<10} {p['state']:<9} {workers}  {p['reason']}".rstrip())
    return 0 if all(p["state"] == "ready" for p in report["plugins"]) else 1
