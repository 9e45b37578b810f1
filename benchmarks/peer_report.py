"""The kernel against Backstage (the ``peers`` scenario's rows): ``x Backstage`` ratios and their targets.

A leaf like ``benchmarks.report``, which calls it: rows in, figures out, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Row = dict[str, Any]

__all__ = ["add_backstage_ratios", "backstage_targets"]

PREFIX = "backstage-"
#: hello on the kernel's default server (``auto``; hypercorn too), and on uvicorn: at least this many times
#: Backstage's req/s
HELLO_NEED = {"auto": 1.5, "uvicorn": 3.0}
HELLO_NEED_OTHERS = 1.5
P99_NEED = 0.5  # hello's p99 at most this fraction of Backstage's
PROXY_NEED = 3.0  # small GET through the proxy, req/s
PROXY_BIG_NEED = 1.5  # the big download through the proxy, MB/s


def _kernel_scenario(backstage: str) -> tuple[str, str | None]:
    """The kernel row a Backstage row is compared with: (scenario, variant or None for any)."""
    name = backstage.removeprefix(PREFIX)
    return (name, "1gw/1wk") if name == "hello" else (name, None)


def _pairs(rows: list[Row], server: str) -> Iterator[tuple[Row, Row]]:
    """(kernel row, Backstage row) for every Backstage load row of ``server`` that has its kernel row."""
    for peer in rows:
        if peer["server"] != server or not peer["scenario"].startswith(PREFIX) or peer["scenario"] == "backstage-pss":
            continue
        name, variant = _kernel_scenario(peer["scenario"])
        for r in rows:
            if r["server"] == server and r["scenario"] == name and (variant is None or r["variant"] == variant):
                yield r, peer
                break


def _big(scenario: str) -> bool:
    return scenario.startswith("proxy-")


def add_backstage_ratios(rows: list[Row]) -> None:
    """``x_backstage``: the kernel row's req/s (MB/s for the big download) over Backstage's; ``p99_x_backstage``:
    its p99 over Backstage's (small requests only)."""
    for server in dict.fromkeys(r["server"] for r in rows):
        for mine, peer in _pairs(rows, server):
            key = "mb_s" if _big(mine["scenario"]) else "rps"
            if mine.get(key) and peer.get(key):
                mine["x_backstage"] = round(mine[key] / peer[key], 2)
            if not _big(mine["scenario"]) and mine.get("p99_ms") and peer.get("p99_ms"):
                mine["p99_x_backstage"] = round(mine["p99_ms"] / peer["p99_ms"], 2)


def backstage_targets(rows: list[Row], server: str) -> list[tuple[str, str, bool]]:
    """(target, measured, met) of the kernel against Backstage on ``server``; auth and PSS are figures."""
    out: list[tuple[str, str, bool]] = []
    for mine, peer in _pairs(rows, server):
        name, x, p99 = mine["scenario"], mine.get("x_backstage"), mine.get("p99_x_backstage")
        if x is None:
            continue
        p99_text = f", p99 {p99:.2f}x" if p99 is not None else ""
        if name == "hello":
            need = HELLO_NEED.get(server, HELLO_NEED_OTHERS)
            out.append((f"{server}: hello >= {need:g}x Backstage req/s", f"{x:.2f}x ({peer['rps']} req/s)", x >= need))
            if p99 is not None:
                out.append(
                    (
                        f"{server}: hello p99 <= {P99_NEED:g}x Backstage's p99",
                        f"{p99:.2f}x ({mine['p99_ms']} vs {peer['p99_ms']} ms)",
                        p99 <= P99_NEED,
                    )
                )
        elif name == "proxy":
            need = PROXY_NEED
            out.append((f"{server}: proxy >= {need:g}x Backstage's proxy req/s", f"{x:.2f}x{p99_text}", x >= need))
        elif _big(name):
            need = PROXY_BIG_NEED
            text = f"{x:.2f}x ({mine['mb_s']:.0f} vs {peer['mb_s']:.0f} MB/s)"
            ok = x >= need and not mine["errors"] and not peer["errors"]
            out.append((f"{server}: {name} >= {need:g}x Backstage's proxy MB/s", text, ok))
        else:  # auth: a figure
            out.append((f"{server}: {name} vs Backstage's static token (no target)", f"{x:.2f}x{p99_text}", True))
    for pss in [r for r in rows if r["server"] == server and r["scenario"] == "backstage-pss"]:
        out.append(
            (
                f"{server}: Backstage PSS, idle / under load (a figure; the memory targets use it)",
                f"{pss['pss_mb']:.1f} / {pss['pss_load_mb']:.1f} MB",
                True,
            )
        )
    return out
