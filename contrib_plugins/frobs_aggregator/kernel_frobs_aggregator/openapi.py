"""``GET /summary`` in the plugin's OpenAPI document (``/api/frobs-aggregator/openapi.json``): the answer's types."""

from __future__ import annotations

from typing import Literal

import msgspec

from kernel.api import Operation

__all__ = ["SUMMARY", "Summary"]


class FrobsSummary(msgspec.Struct, rename="camel"):
    count: int
    by_status: dict[str, int]


class FlerpsSummary(msgspec.Struct, rename="camel"):
    count: int
    by_kind: dict[str, int]


class SourceState(msgspec.Struct, rename="camel"):
    #: live: asked for this answer; cached: a copy within its TTL; stale: the last good one; missing: none
    state: Literal["live", "cached", "stale", "missing"]
    fetched_at: str | None


class Sources(msgspec.Struct):
    frobs: SourceState
    flerps: SourceState


class Summary(msgspec.Struct, rename="camel"):
    """Each upstream's summary (null when missing), where it comes from, and which upstreams failed now."""

    frobs: FrobsSummary | None
    flerps: FlerpsSummary | None
    summaries_served: int
    sources: Sources
    partial: bool
    errors: dict[str, str]


SUMMARY = Operation(
    summary="Frobs by status and flerps by kind, from both upstreams (one may stand in from its last answer)",
    response=Summary,
    errors={401: "No credentials", 503: "Not configured, or no upstream answered and nothing is cached"},
)
