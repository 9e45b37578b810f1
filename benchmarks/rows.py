"""The rows of the report and the small HTTP checks every scenario uses (a leaf: no scenario, no runner)."""

from __future__ import annotations

import json
import statistics
import urllib.error
import urllib.request
from typing import Any

from kernel_benchmarks.loadgen import Load

Row = dict[str, Any]

ROW_KEYS = (
    "scenario",
    "variant",
    "server",
    "rps",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "errors",
    "rss_mb",
    "gateway_rss_mb",
    "worker_rss_mb",
    "pss_mb",
    "mb_s",
    "rss_growth_mb",
    "gateway_rss_growth_mb",
    "worker_rss_growth_mb",
    "seconds",
    "ratio",
    "ratio_of",
    "p99_ratio",
    "x_backstage",
    "p99_x_backstage",
    "pss_mb",
    "pss_load_mb",
    "loadgen",
    "note",
)


def new_row(scenario: str, server: str, variant: str = "", **values: Any) -> Row:
    row: Row = dict.fromkeys(ROW_KEYS)
    row.update(scenario=scenario, variant=variant, server=server, errors=0)
    row.update(values)
    return row


def echo_body(size: int = 1024) -> bytes:
    """A JSON object of exactly ``size`` bytes (compact separators)."""
    doc: dict[str, Any] = {"id": 42, "kind": "bench", "tags": ["a", "b", "c"], "payload": ""}
    base = len(json.dumps(doc, separators=(",", ":")))
    doc["payload"] = "x" * max(0, size - base)
    return json.dumps(doc, separators=(",", ":")).encode()


def http_status(
    url: str, timeout: float = 5.0, data: bytes | None = None, headers: dict[str, str] | None = None
) -> int:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def http_text(url: str, timeout: float = 10.0) -> str:
    """The body of a GET that must succeed."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def check(load: Load) -> None:
    """One request before the load: the route must answer 200, or the figures would be of errors."""
    status = http_status(load.url, data=load.body or None, headers=dict(load.headers))
    if status != 200:
        raise RuntimeError(f"{load.method} {load.url} answered {status} before the load; not measuring errors")


#: merged over rounds by their sum; the peaks by their maximum; the other figures by their median
_SUMMED = ("errors",)
_PEAKS = ("rss_mb", "gateway_rss_mb", "worker_rss_mb", "rss_growth_mb", "gateway_rss_growth_mb", "worker_rss_growth_mb")


def merge_rounds(rounds: list[list[Row]]) -> list[Row]:
    """One row per (server, scenario, variant) from the rows of every round, in order of first appearance.

    Errors are summed, RSS peaks and growths are the largest, every other figure is the median
    over the rounds that have it; text is the first round's (a "MOSTLY ERRORS" note of any round is kept).
    """
    if len(rounds) == 1:
        return rounds[0]
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for rows in rounds:
        for r in rows:
            groups.setdefault((r["server"], r["scenario"], r["variant"]), []).append(r)
    merged = []
    for same in groups.values():
        row = dict(same[0])
        for key, first in same[0].items():
            values = [r[key] for r in same if isinstance(r.get(key), int | float) and not isinstance(r[key], bool)]
            if not values or not isinstance(first, int | float) or isinstance(first, bool):
                continue
            if key in _SUMMED:
                row[key] = sum(values)
            elif key in _PEAKS:
                row[key] = max(values)
            else:
                median = statistics.median(values)
                row[key] = round(median) if all(isinstance(v, int) for v in values) else round(median, 3)
        errors = [r["note"] for r in same if str(r.get("note") or "").startswith("MOSTLY ERRORS")]
        if errors:
            row["note"] = errors[0]
        row["rounds"] = len(same)
        merged.append(row)
    return merged
