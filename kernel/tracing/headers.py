"""W3C trace context (``traceparent``, ``tracestate``, ``baggage``) in and out of ASGI header lists.

The propagator is OpenTelemetry's global one (W3C trace context and baggage unless
``OTEL_PROPAGATORS`` says otherwise); its ``fields`` are the headers it reads and writes.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator

__all__ = ["context_of", "field_names", "with_context"]

Header = tuple[bytes, bytes]


def field_names(propagator: TextMapPropagator) -> frozenset[bytes]:
    """The header names ``propagator`` reads and writes, as ASGI spells them (lowercase bytes)."""
    return frozenset(name.lower().encode("latin-1") for name in propagator.fields)


def context_of(headers: Iterable[Header], propagator: TextMapPropagator, fields: frozenset[bytes]) -> Context:
    """The caller's context from ``headers`` (an empty one, so a new trace, when they carry none)."""
    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in fields}
    return propagator.extract(carrier) if carrier else Context()


def with_context(
    headers: Iterable[Header], context: Context, propagator: TextMapPropagator, fields: frozenset[bytes]
) -> list[Header]:
    """``headers`` with the caller's trace fields replaced by those of ``context``."""
    carrier: dict[str, str] = {}
    propagator.inject(carrier, context=context)
    kept = [header for header in headers if header[0] not in fields]
    kept.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in carrier.items())
    return kept
