"""The ``kernel`` command: ``serve``, ``plugins``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

from kernel.cli_config import register as register_config_commands
from kernel.config import Config, ConfigError, load_config
from kernel.registry import Registry, load_registry, split_failures
from kernel.settings import Settings, read_settings

DEFAULT_CONFIG = os.path.join("conf", "app-config.yaml")


def _config_paths(given: Sequence[str] | None) -> list[str]:
    if given:
        return list(given)
    return [DEFAULT_CONFIG] if os.path.exists(DEFAULT_CONFIG) else []


def _load(paths: list[str]) -> tuple[Config, Settings]:
    """Load and check everything the kernel itself reads, so mistakes stop startup readably."""
    from kernel.gateway.auth import static_tokens_from_config

    config = load_config(paths)
    settings = read_settings(config)
    static_tokens_from_config(config)
    return config, settings


def cmd_serve(args: argparse.Namespace) -> int:
    from kernel.supervisor import Supervisor, startup_failure_message
    from services.logger import configure, configure_from_config

    if args.dev:
        os.environ["KERNEL_ENV"] = "development"
    configure(os.environ.get("KERNEL_LOG_LEVEL", "info"))
    paths = _config_paths(args.config)
    try:
        config, settings = _load(paths)
    except ConfigError as exc:
        print(f"kernel: config error: {exc}", file=sys.stderr)
        return 2
    reg = load_registry()
    try:
        configure_from_config(config, {p.id: p.plugin.config_schema for p in reg.plugins.values()})
    except ConfigError as exc:
        print(f"kernel: config error: {exc}", file=sys.stderr)
        return 2
    fatal, tolerated = split_failures(reg.failures, settings.boot_policy)
    if fatal:
        print(startup_failure_message([str(f) for f in fatal]), file=sys.stderr)
        return 1
    for f in tolerated:
        logging.getLogger("kernel").error("%s (continuing: onPluginBootFailure is 'continue')", f)
    supervisor = Supervisor(
        settings,
        list(reg.plugins.values()),
        reg.provider_eps,
        paths,
        dev=os.environ.get("KERNEL_ENV") == "development",
        failed={f.name: str(f) for f in tolerated},
    )
    return asyncio.run(supervisor.run())  # stdlib loop: the supervisor needs SIGCHLD


def cmd_plugins(args: argparse.Namespace) -> int:
    if args.url:
        return _running_plugins(args)
    reg: Registry = load_registry()
    rows = [
        {"id": p.id, "distribution": p.distribution, "version": p.version, "module": p.module}
        for p in sorted(reg.plugins.values(), key=lambda p: p.id)
    ]
    failures = [{"name": f.name, "distribution": f.distribution, "reason": f.reason} for f in reg.failures]
    if args.json:
        print(json.dumps({"plugins": rows, "failures": failures, "providers": reg.providers}, indent=2))
        return 0
    width = max([len(r["id"]) for r in rows] + [2])
    for r in rows:
        print(f"{r['id']:<{width}}  {r['distribution']} {r['version']}  ({r['module']})")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kernel", description="A plugin microkernel for backend services.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway and every installed plugin")
    serve.add_argument("--config", action="append", metavar="FILE", help="app-config file; repeat to merge")
    serve.add_argument("--dev", action="store_true", help="development mode: readable logs, stack traces")
    serve.set_defaults(func=cmd_serve)
    plugins = sub.add_parser("plugins", help="list the installed plugins")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.add_argument("--url", help="ask a running kernel (e.g. http://localhost:7007) for worker states")
    plugins.add_argument("--token", help="bearer token for --url (default: $KERNEL_TOKEN)")
    plugins.set_defaults(func=cmd_plugins)
    register_config_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
