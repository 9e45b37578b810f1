"""The aggregate itself: pure functions, no I/O (the seed's ``computeAggregate``).

An upstream's answer is a JSON array; its summary is small whatever the array's size:
``{"count": <items>, "<byField>": {<value>: <items with it>}}`` (frobs by ``status``, flerps by
``kind``; an item that is not an object with a string there counts as ``"unknown"``). Summaries,
not the arrays, are what the cache keeps.

Each upstream contributes a ``Part``: ``live`` (asked for this answer), ``cached`` (a copy younger
than its TTL), ``stale`` (the upstream failed now: its last good summary stands in) or ``missing``
(failed, and nothing to stand in). ``compose`` makes the answer; ``nothing_to_show`` says when
there is no answer to make (every part missing).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["Part", "State", "compose", "nothing_to_show", "tally", "unavailable_message"]

State = Literal["live", "cached", "stale", "missing"]
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Part:
    """One upstream's share of a summary: state, summary (None when missing), when fetched, why it failed now."""

    state: State
    summary: dict[str, Any] | None = None
    fetched_at: float | None = None
    error: str | None = None


def tally(items: list[Any], field: str, key: str) -> dict[str, Any]:
    """``{"count": len(items), key: {value of field: count}}``, values sorted by name."""
    counts = Counter(
        value if isinstance(item, dict) and isinstance(value := item.get(field), str) else UNKNOWN for item in items
    )
    return {"count": len(items), key: dict(sorted(counts.items()))}


def nothing_to_show(parts: Mapping[str, Part]) -> bool:
    return all(part.summary is None for part in parts.values())


def unavailable_message(parts: Mapping[str, Part]) -> str:
    """The 503 message when nothing can be shown: each upstream and why it failed."""
    reasons = "; ".join(f"{name} {part.error}" for name, part in parts.items())
    return f"No upstream answered and nothing is cached: {reasons}"


def compose(parts: Mapping[str, Part], summaries_served: int) -> dict[str, Any]:
    """The ``/summary`` answer: each part's summary (null when missing), the database's count, where each part
    comes from, and ``partial``/``errors`` naming every upstream that failed for this answer."""
    errors = {name: part.error for name, part in parts.items() if part.error is not None}
    return {
        **{name: part.summary for name, part in parts.items()},
        "summariesServed": summaries_served,
        "sources": {name: {"state": part.state, "fetchedAt": _iso(part.fetched_at)} for name, part in parts.items()},
        "partial": bool(errors),
        "errors": errors,
    }


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
