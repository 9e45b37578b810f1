"""``backend.rateLimit``: at most ``incomingRequestLimit`` requests per client per ``window``, else 429.

Counting as express-rate-limit does (the reference system's middleware): a fixed window per
client that starts with its first request; the request over the limit is a 429
``TooManyRequestsError`` in the error shape with ``Retry-After`` (seconds until the window ends).
``global`` limits every plugin's requests; ``plugin.<id>`` adds that plugin's own limit.

Who the client is needs the caller's credentials, so the count happens in the dispatcher, right
after it authenticated the request and before anything reaches a worker: this middleware puts its
check in the scope (``kernel.admission``) and ``ApiDispatcher`` calls it. A request with valid
credentials counts for its principal (``user:<ref>``, ``service:<subject>``: many users behind one
proxy do not share a count), any other one for its address (``backend.trustProxy`` decides which:
``kernel.gateway.middleware.forwarded``); refused credentials count for the address too, so
guessing tokens is limited. Addresses of ``ipAllowList`` (localhost by default) are never limited.
The kernel's root endpoints (health, instance metadata) are not limited: a probe must never see
429.

The counts live in a ``Store``: ``memory`` (each gateway process its own) or ``redis`` (shared by
every gateway process and instance; ``kernel.gateway.ratelimit_stores``).

A store that cannot be reached fails closed by default, as express-rate-limit does: the request
is a 503 ``ServiceUnavailableError`` (with ``Retry-After``); ``passOnStoreError: true`` lets it
through uncounted instead. Either way the outage is logged once when it starts and once when it
ends, and counting resumes by itself when the store is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel.errors import ServiceUnavailableError, TooManyRequestsError
from kernel.protocol import Principal
from kernel.scope_keys import ADMISSION
from kernel.settings import PluginRateLimit, RateLimitSettings

log = logging.getLogger("kernel.gateway")
_COUNTED_KEY = "kernel.ratelimit.counted"
#: what the dispatcher awaits once it knows the plugin and the principal (``None``: credentials refused)
Admission = Callable[[Scope, str, Principal | None], Awaitable[None]]


class Store(Protocol):
    """Where the counts live."""

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        """Count one request for ``key``: the count in its window so far, and seconds until the window ends."""
        ...

    async def undo(self, key: str) -> None:
        """Take back one request of ``key`` (a request that is not to count after all)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Rule:
    """One limit: the global one (``prefix`` ``""``) or a plugin's (``<pluginId>:``)."""

    prefix: str
    window: float
    limit: int
    allow: frozenset[str]
    skip_successful: bool
    skip_failed: bool


def rules_of(settings: RateLimitSettings) -> tuple[Rule | None, dict[str, Rule]]:
    """The global rule (``None`` when ``global: false``) and each plugin's, unset keys taken from the global ones."""

    def rule(prefix: str, own: PluginRateLimit | None) -> Rule:
        o = own or PluginRateLimit()
        s = settings
        return Rule(
            prefix,
            s.window if o.window is None else o.window,
            s.incoming_request_limit if o.incoming_request_limit is None else o.incoming_request_limit,
            frozenset(s.ip_allow_list if o.ip_allow_list is None else o.ip_allow_list),
            s.skip_successful_requests if o.skip_successful_requests is None else o.skip_successful_requests,
            s.skip_failed_requests if o.skip_failed_requests is None else o.skip_failed_requests,
        )

    plugins = {pid: rule(f"{pid}:", own) for pid, own in settings.plugin.items()}
    return (rule("", None) if settings.global_ else None), plugins


def client_key(scope: Scope, principal: Principal | None) -> str:
    """Whom a request counts for: its principal when it has valid credentials, else its address."""
    if principal is not None and principal.type != "none":
        return f"{principal.type}:{principal.subject}"
    client = scope.get("client")
    return f"ip:{client[0] if client else '-'}"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, settings: RateLimitSettings, store: Store) -> None:
        self.app = app
        self.store = store
        self.global_rule, self.plugin_rules = rules_of(settings)
        self.pass_on_store_error = settings.pass_on_store_error
        self._down_since: float | None = None  # the store's outage, logged when it starts and ends
        rules = [r for r in (self.global_rule, *self.plugin_rules.values()) if r is not None]
        self.may_undo = any(r.skip_successful or r.skip_failed for r in rules)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope[ADMISSION] = self.admit
        if not self.may_undo or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        except Exception:
            status = status or 500
            raise
        finally:
            await self._undo(scope.get(_COUNTED_KEY, ()), status)

    async def admit(self, scope: Scope, plugin_id: str, principal: Principal | None) -> None:
        """Count the request; raises ``TooManyRequestsError`` over the limit."""
        client = scope.get("client")
        address = client[0] if client else ""
        key = client_key(scope, principal)
        counted: list[tuple[Rule, str]] = []
        for rule in (self.global_rule, self.plugin_rules.get(plugin_id)):
            if rule is None or address in rule.allow:
                continue
            try:
                count, reset = await self.store.hit(rule.prefix + key, rule.window)
            except Exception as exc:
                self._store_failed(exc)
                if self.pass_on_store_error:
                    continue
                raise ServiceUnavailableError("The rate limit store is unavailable", retry_after=1.0) from exc
            if self._down_since is not None:
                log.info("the rate limit store is back after %.1fs", time.monotonic() - self._down_since)
                self._down_since = None
            counted.append((rule, rule.prefix + key))
            scope[_COUNTED_KEY] = counted
            if count > rule.limit:
                raise TooManyRequestsError("Too many requests, please try again later", retry_after=reset)

    def _store_failed(self, exc: Exception) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            then = "requests pass uncounted" if self.pass_on_store_error else "requests get 503"
            log.warning(
                "the rate limit store is unavailable (%s: %s); %s until it is back", type(exc).__name__, exc, then
            )

    async def _undo(self, counted: object, status: int) -> None:
        """Take back the counts of rules that skip requests like this one (by its final status)."""
        if not isinstance(counted, list):
            return
        for rule, key in counted:
            failed = status >= 400 or status == 0
            if (rule.skip_failed and failed) or (rule.skip_successful and not failed):
                try:
                    await self.store.undo(key)
                except Exception:
                    pass
