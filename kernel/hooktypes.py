"""The types the kernel's hooks take and return (see ``kernel.hookspecs``).

Contract: no I/O, nothing of ours beyond the other contract modules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kernel.protocol import PluginState, Principal

if TYPE_CHECKING:
    import argparse

Headers = Sequence[tuple[bytes, bytes]]


class CredentialVerifier(Protocol):
    """Turns a presented token into a principal, or ``None`` if it is not one of its tokens.

    ``cacheable``: a verified token stays valid for the life of the verifier (static
    tokens); expiring tokens (JWTs) must say ``False`` or cache with their expiry.
    The gateway builds its verifiers again after every config reload.
    """

    cacheable: bool

    def verify(self, token: str) -> Principal | None: ...


class GatewayView(Protocol):
    """What an endpoint at the gateway's root may ask of the gateway it runs in."""

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether this instance should get traffic, and a body saying why not."""
        ...

    def plugin_states(self) -> Sequence[PluginState]:
        """Every plugin as the supervisor last reported it, with its workers' states."""
        ...

    def authenticate(self, headers: Headers, plugin_id: str = "") -> Principal:
        """The caller's principal from its credentials; raises 401/403 errors like the API does."""
        ...


@dataclass(frozen=True)
class CliCommand:
    """A ``kernel <name>`` subcommand: ``arguments`` adds its options, ``run`` returns the exit code."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
