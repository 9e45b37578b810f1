"""The types the kernel's hooks take and return (see ``kernel.hookspecs``).

Contract: no I/O, nothing of ours beyond the other contract modules.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kernel.errors import AuthenticationError
from kernel.protocol import PluginState, Principal, RolloutState, Stats

if TYPE_CHECKING:
    import argparse

    from starlette.types import ASGIApp

Headers = Sequence[tuple[bytes, bytes]]
#: ASGI middleware as a package adds it to the gateway: takes the app it wraps, returns the wrapped app
GatewayMiddleware = Callable[["ASGIApp"], "ASGIApp"]


@dataclass(frozen=True)
class Verified:
    """A token a verifier accepted: who presented it, and until when (epoch seconds; ``None``: no expiry).

    The gateway caches it until then (only successes are cached, bounded). ``limited``: the
    token is a limited user token, accepted only on paths opened with ``user-cookie``.
    ``audience``: the only plugin the token is for (a plugin token's ``aud``); ``None``: any.
    """

    principal: Principal
    expires_at: float | None = None
    limited: bool = False
    audience: str | None = None


class CredentialVerifier(Protocol):
    """Turns a presented token into a ``Verified``, or ``None`` if it is not one of its tokens.

    A verifier that needs I/O (fetching keys) returns an awaitable; one that recognises
    its kind of token but finds it invalid raises ``AuthenticationError`` (or
    ``ServiceUnavailableError`` when it cannot decide now). The gateway builds its
    verifiers again after every config reload.
    """

    def verify(self, token: str) -> Verified | Awaitable[Verified | None] | None: ...


async def verify_token(verifiers: Sequence[CredentialVerifier], token: str) -> Verified | None:
    """What the first verifier that knows ``token`` makes of it; ``None`` if none does.

    A verifier's ``AuthenticationError`` passes through, and so does an answer that has expired
    already (as ``AuthenticationError``): the gateway and the ``auth`` service decide the same way.
    """
    for verifier in verifiers:
        result = verifier.verify(token)
        verified = await result if inspect.isawaitable(result) else result
        if verified is not None:
            if verified.expires_at is not None and verified.expires_at <= time.time():
                raise AuthenticationError("Expired credentials")
            return verified
    return None


class GatewayView(Protocol):
    """What an endpoint at the gateway's root may ask of the gateway it runs in."""

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether this instance should get traffic, and a body saying why not."""
        ...

    def plugin_states(self) -> Sequence[PluginState]:
        """Every plugin as the supervisor last reported it, with its workers' states."""
        ...

    def recent_errors(self) -> list[dict[str, Any]]:
        """This gateway's last server errors, newest first: ``at``, ``method``, ``path``, ``status``, ``plugin_id``, ``request_id``."""
        ...

    def stats(self) -> Stats | None:
        """The supervisor's latest figures of every process (memory, CPU, load, restarts); ``None`` before its first tick."""
        ...

    async def authenticate(self, headers: Headers, plugin_id: str = "") -> Principal:
        """The caller's principal from its credentials; raises 401/403 errors like the API does."""
        ...

    def rollouts(self) -> list[RolloutState]:
        """The operators' rollouts the supervisor keeps (``kernel rollout``), newest first."""
        ...

    async def request_rollout(self, plugins: list[str] | None, gateways: bool, by: str) -> RolloutState:
        """Ask the supervisor to roll out ``plugins``' workers (``None``: every plugin's), or the gateways;
        the rollout's first state."""
        ...


@dataclass(frozen=True)
class CliCommand:
    """A ``kernel <name>`` subcommand: ``arguments`` adds its options, ``run`` returns the exit code."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None


@dataclass(frozen=True)
class RemoteConfigOptions:
    """How config loaded from a URL (``--config https://...``) is followed: read again every
    ``reload_interval_seconds`` (the reference system's ``remote.reloadIntervalSeconds``)."""

    reload_interval_seconds: float = 60.0


@dataclass(frozen=True)
class RootConfigOptions:
    """The config loader's arguments (the reference system's ``configFactory({argv, remote})``).

    ``argv``: the arguments to take ``--config`` from instead of the command line's (``None``: the
    command line's); ``remote``: how config from URLs is followed (``None``: URLs are refused).
    """

    argv: Sequence[str] | None = None
    remote: RemoteConfigOptions | None = RemoteConfigOptions()


@dataclass(frozen=True)
class HttpRouterOptions:
    """The ``httpRouter`` options (the reference system's ``httpRouterFactory({getPath})``): ``get_path(pluginId)``
    gives the path each plugin is served at (``None``: ``<backend.gateway.mount>/<pluginId>``)."""

    get_path: Callable[[str], str] | None = None
