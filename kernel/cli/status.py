"""``kernel status``: what the dashboard shows, as tables in a terminal, for a running kernel.

Reads the dashboard's snapshot (``/.kernel/dashboard/v1/snapshot``, operators only: see
``backend.dashboard``) from ``--url``, by default the address ``backend.listen`` of the config
(``--config``, else ``conf/app-config.yaml``) gives, with the token of ``--token`` or ``$KERNEL_TOKEN``.
CPU % needs two samples: the command reads the snapshot again until the supervisor's next tick
(``backend.workers.heartbeatInterval``) and shows the growth of CPU time between the two.
``--json`` prints the raw snapshot. A kernel that cannot be reached, or that refuses the token,
is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from kernel.cli.common import add_config_option, config_paths
from kernel.cli.operator_http import OperatorCallError, call
from kernel.dashboard.paths import SNAPSHOT
from kernel.errors import ConfigError

#: seconds to wait for a second sample (for CPU %) before showing the lifetime average instead
SECOND_SAMPLE_WAIT = 3.0
#: the exit code of a config that does not load (as ``kernel serve`` and ``kernel config``)
CONFIG_ERROR = 2


class StatusError(Exception):
    """What to tell the operator when the snapshot cannot be had."""


def arguments(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument("--url", help="the kernel's address (default: backend.listen of the config)")
    parser.add_argument("--token", help="an operator's bearer token (default: $KERNEL_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the raw snapshot (JSON)")
    parser.add_argument(
        "--insecure", action="store_true", help="accept any TLS certificate (a development kernel's self-signed one)"
    )


def default_url(config_files: Sequence[str] | None) -> str:
    """Where ``backend.listen`` (and ``backend.https``) of the config says the kernel listens."""
    from kernel.config import load_config
    from kernel.settings import Listen, read_section

    config = load_config(config_paths(config_files))
    listen = read_section(config, "backend.listen", Listen)
    https = config.get_optional("backend.https")
    scheme = "https" if https not in (None, False, "false") else "http"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen.host, listen.host)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{listen.port}"


def fetch_snapshot(url: str, token: str, *, insecure: bool = False) -> dict[str, Any]:
    """The snapshot of the kernel at ``url``; ``StatusError`` saying why not."""
    try:
        return call(url, SNAPSHOT, token, insecure=insecure)
    except OperatorCallError as exc:
        if exc.status == 404:
            raise StatusError(
                f"{url} has no dashboard snapshot (404): backend.dashboard.enabled is false, or this is not a kernel"
            ) from None
        raise StatusError(str(exc)) from None


def cpu_percents(first: dict[str, Any], second: dict[str, Any] | None) -> dict[int, float]:
    """pid -> CPU % from the growth of CPU time between two snapshots, else over each process's life."""
    before = {p["pid"]: p["cpuSeconds"] for p in _processes(first)} if second is not None else {}
    latest = second if second is not None else first
    span = (latest["sampledAt"] or 0) - (first["sampledAt"] or 0)
    out: dict[int, float] = {}
    for p in _processes(latest):
        if p["pid"] in before and span > 0:
            out[p["pid"]] = max(0.0, (p["cpuSeconds"] - before[p["pid"]]) / span * 100)
        elif p.get("startedAt") and latest["sampledAt"] and latest["sampledAt"] > p["startedAt"]:
            out[p["pid"]] = p["cpuSeconds"] / (latest["sampledAt"] - p["startedAt"]) * 100
    return out


def _processes(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    workers = [w for p in snapshot["plugins"] for w in p["workers"] if w["pid"] is not None]
    supervisor = [snapshot["supervisor"]] if snapshot.get("supervisor") else []
    return [*supervisor, *snapshot["gateways"], *workers]


# ---------------------------------------------------------------------------- the tables


def _bytes(n: float) -> str:
    if not n:
        return "-"
    if n < 1024:
        return f"{n:.0f} B"
    units = ["KiB", "MiB", "GiB", "TiB"]
    n /= 1024
    while n >= 1024 and len(units) > 1:
        n /= 1024
        units.pop(0)
    return f"{n:.1f} {units[0]}"


def _ms(v: float) -> str:
    return f"{v:.2f} ms" if v else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _pct(cpu: dict[int, float], pid: int | None) -> str:
    return f"{cpu[pid]:.1f}%" if pid is not None and pid in cpu else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; the columns in ``right`` aligned right (numbers)."""
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def render(snapshot: dict[str, Any], cpu: dict[int, float], url: str) -> str:
    """The snapshot as the terminal shows it."""
    kernel = snapshot["kernel"]
    plugins = snapshot["plugins"]
    workers = sum(len(p["workers"]) for p in plugins)
    counts = [
        _plural(len(plugins), "plugin"),
        _plural(workers, "worker"),
        _plural(len(snapshot["gateways"]), "gateway"),
    ]
    out = [f"kernel {kernel['version']} at {url} · up {_duration(kernel['uptimeSeconds'])} · " + " · ".join(counts)]
    if snapshot["sampledAt"] is None:
        out.append("(the supervisor has sent no figures yet: pids and figures follow within a heartbeat)")
    rows: list[list[object]] = []
    for p in plugins:
        if not p["workers"]:
            rows.append([p["id"], "-", "-", p["state"], "-", "-", "-", "-", "-", "-", p["restarts"]])
        for w in p["workers"]:
            rows.append(
                [
                    p["id"],
                    w["id"],
                    w["pid"] if w["pid"] is not None else "-",
                    w["state"],
                    _bytes(w["rssBytes"]),
                    _pct(cpu, w["pid"]),
                    w["inFlight"],
                    f"{w['rps']:.1f}",
                    _ms(w["p50Ms"]),
                    _ms(w["p99Ms"]),
                    p["restarts"],
                ]
            )
    headers = ["PLUGIN", "WORKER", "PID", "STATE", "RSS", "CPU", "IN-FLIGHT", "REQ/S", "P50", "P99", "RESTARTS"]
    out += ["", table(headers, rows, right=(2, 4, 5, 6, 7, 8, 9, 10))]
    apart = [p for p in plugins if p.get("isolation")]
    if apart:
        keys = ("runsAs", "cgroup", "config", "database", "cache")
        rows = [[p["id"], *(p["isolation"].get(k, "-") for k in keys)] for p in apart]
        out += ["", table(["ISOLATION", "RUNS AS", "CGROUP", "CONFIG", "DATABASE", "CACHE"], rows)]
    if snapshot["failed"]:
        failed = [[f["id"], f["reason"]] for f in snapshot["failed"]]
        out += ["", table(["FAILED PLUGIN", "WHY"], failed)]
    processes = [*([snapshot["supervisor"]] if snapshot.get("supervisor") else []), *snapshot["gateways"]]
    if processes:
        rows = [
            [
                "supervisor" if p is snapshot.get("supervisor") else p["id"],
                p["pid"],
                p["state"],
                _bytes(p["rssBytes"]),
                _pct(cpu, p["pid"]),
                _duration(snapshot["now"] - p["startedAt"]) if p.get("startedAt") else "-",
            ]
            for p in processes
        ]
        out += ["", table(["PROCESS", "PID", "STATE", "RSS", "CPU", "UP"], rows, right=(1, 3, 4, 5))]
    if snapshot["recentErrors"]:
        rows = [
            [
                time.strftime("%H:%M:%S", time.localtime(e["at"])),
                e["status"],
                e["method"],
                e["path"],
                e["pluginId"] or "-",
            ]
            for e in snapshot["recentErrors"][:10]
        ]
        out += ["", table(["RECENT ERROR", "STATUS", "METHOD", "PATH", "PLUGIN"], rows)]
        if len(snapshot["recentErrors"]) > len(rows):
            out.append(f"(and {len(snapshot['recentErrors']) - len(rows)} earlier; --json shows them all)")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("KERNEL_TOKEN", "")
    try:
        url = args.url or default_url(args.config)
    except ConfigError as exc:  # as the other commands say it
        print(f"kernel: config error: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    try:
        first = fetch_snapshot(url, token, insecure=args.insecure)
        if args.json:
            print(json.dumps(first, indent=2))
            return 0
        second = None
        deadline = time.monotonic() + SECOND_SAMPLE_WAIT
        while first["sampledAt"] is not None and time.monotonic() < deadline:
            time.sleep(0.1)
            latest = fetch_snapshot(url, token, insecure=args.insecure)
            if latest["sampledAt"] != first["sampledAt"]:
                second = latest
                break
    except StatusError as exc:
        print(f"kernel: {exc}", file=sys.stderr)
        return 1
    print(render(second or first, cpu_percents(first, second), url))
    return 0
