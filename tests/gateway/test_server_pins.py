"""The servers the edge subclasses are pinned: an upgrade that changes what we override or copy fails here.

``kernel/gateway/hypercorn_edge.py`` copies hypercorn's ``TCPServer.run`` and subclasses its HTTP/1.1
protocol (and h11's connection); ``kernel/gateway/uvicorn_edge.py`` subclasses uvicorn's
``HttpToolsProtocol`` and sets its server up as ``Server._serve`` does. Their bounds in
``pyproject.toml`` keep the next minor version out; the lock pins one version. This module holds, for
every upstream function we override, copy or whose calls into our overrides we rely on, the digest of
its source (comments and indentation aside) at the version recorded in ``RECORDED``, and

- compares each with the installed source: a change names the package, the function and what of ours
  to re-check;
- checks every method or attribute our subclasses define: one declared in ``OVERRIDES`` must still
  exist upstream, with a signature that takes every call the upstream one takes (``__init__`` aside:
  we call those ourselves, and ``CALLS`` checks how); any other must exist nowhere upstream (an
  upgrade adding a method of that name would be overridden without anyone deciding it);
- checks the upstream callables we call positionally still take those parameters in that order.

After an upgrade that fails here: read the upstream change, carry it over into our file (the message
says where), then record the new digest the message gives, and the version in ``RECORDED``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import io
import textwrap
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pytest

from kernel.gateway import hypercorn_edge, uvicorn_edge

#: the versions the digests below were taken from (the lock's)
RECORDED = {"hypercorn": "0.18.0", "uvicorn": "0.55.0", "h11": "0.16.0"}
HYPERCORN_EDGE = "kernel/gateway/hypercorn_edge.py"
UVICORN_EDGE = "kernel/gateway/uvicorn_edge.py"


@dataclass(frozen=True)
class Upstream:
    """One upstream function our code depends on closely: ``target`` is ``module:Class.method``."""

    package: str
    target: str
    recheck: str  # what of ours to re-check when it changes, and why
    digest: str


PINS = [
    Upstream(
        "hypercorn",
        "hypercorn.asyncio.tcp_server:TCPServer.run",
        f"_TCPServer.run in {HYPERCORN_EDGE}: a copy of it with our protocol wrapper and an early end",
        "1987ba7c483d1ab4",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.protocol:ProtocolWrapper.__init__",
        f"_ProtocolWrapper.__init__ in {HYPERCORN_EDGE}: builds EdgeH11Protocol with H11Protocol's arguments",
        "d7b49c8a2e6f452a",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.protocol.h11:H11Protocol.__init__",
        f"EdgeH11Protocol.__init__ in {HYPERCORN_EDGE}: replaces its h11 connection by _Connection",
        "3f11d53dcd07700f",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.protocol.h11:H11Protocol.handle",
        f"EdgeH11Protocol.handle in {HYPERCORN_EDGE}: starts the head clock before it",
        "e41c5922a9603c41",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.protocol.h11:H11Protocol._handle_events",
        f"EdgeH11Protocol in {HYPERCORN_EDGE}: relies on it calling _check_protocol, _create_stream and "
        "_send_error_response, and closing after a refusal",
        "6f615f04af40373e",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.protocol.h11:H11Protocol._check_protocol",
        f"EdgeH11Protocol._check_protocol in {HYPERCORN_EDGE}: the head is complete when it is called",
        "da56e472c66ba6ec",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.protocol.h11:H11Protocol._create_stream",
        f"EdgeH11Protocol._create_stream and _is_websocket (a copy of its WebSocket test) in {HYPERCORN_EDGE}",
        "f672c8c4b51aa67a",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.protocol.h11:H11Protocol._send_error_response",
        f"EdgeH11Protocol._send_error_response in {HYPERCORN_EDGE}: replaces its empty answer",
        "46919a8ec742aad9",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.protocol.h11:H11Protocol._send_h11_event",
        f"EdgeH11Protocol._refuse in {HYPERCORN_EDGE}: sends the refusal through it",
        "522b274aae7e1faf",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.protocol.ws_stream:Handshake.is_valid",
        f"_handshake_ok in {HYPERCORN_EDGE}: refuses in the error shape what it would refuse",
        "3bb556b1b71a7ecd",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.protocol.h11:H11Protocol.stream_send",
        f"HypercornEdge.retire in {HYPERCORN_EDGE}: past keep_alive_max_requests an answer says Connection: close",
        "2ff5654912b769aa",
    ),
    Upstream(
        "hypercorn",
        "hypercorn.asyncio.tcp_server:TCPServer._idle_timeout",
        f"HypercornEdge.retire in {HYPERCORN_EDGE}: an idle connection closes once the context is terminated",
        "38ff28bf92433259",
    ),
    Upstream(
        "h11",
        "h11:Connection.next_event",
        f"_Connection.next_event in {HYPERCORN_EDGE}: keeps the RemoteProtocolError it raises",
        "375dc8b1c1754fcd",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.__init__",
        f"EdgeHttpToolsProtocol.__init__ in {UVICORN_EDGE}",
        "bac1da17258855f3",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.connection_made",
        f"EdgeHttpToolsProtocol.connection_made in {UVICORN_EDGE}: starts the keep-alive clock after it",
        "4d399c6d55cbde37",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_response_complete",
        f"EdgeHttpToolsProtocol.connection_made in {UVICORN_EDGE}: starts the keep-alive clock as it does",
        "711703bdb94f59ec",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.timeout_keep_alive_handler",
        f"EdgeHttpToolsProtocol.retire in {UVICORN_EDGE}: re-armed with RETIRE_IDLE, it closes an idle connection",
        "347bfacb1966906c",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.connection_lost",
        f"EdgeHttpToolsProtocol.connection_lost in {UVICORN_EDGE}",
        "74b41526f21b5b38",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.handle_websocket_upgrade",
        f"EdgeHttpToolsProtocol.handle_websocket_upgrade in {UVICORN_EDGE}: takes the WebSocket protocol it installs",
        "95013fbb71ad06dc",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.data_received",
        f"EdgeHttpToolsProtocol.data_received in {UVICORN_EDGE}: counts the head's reads around it",
        "77d64a8ed713b585",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_message_begin",
        f"EdgeHttpToolsProtocol.on_message_begin in {UVICORN_EDGE}",
        "20a27ece9e762ed0",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_url",
        f"EdgeHttpToolsProtocol.on_url in {UVICORN_EDGE}",
        "d69b800a23404bb9",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_header",
        f"EdgeHttpToolsProtocol.on_header in {UVICORN_EDGE}",
        "8d610149629cb3d4",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_headers_complete",
        f"EdgeHttpToolsProtocol.on_headers_complete in {UVICORN_EDGE}",
        "8340d55da54aaa1d",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.send_400_response",
        f"EdgeHttpToolsProtocol.send_400_response in {UVICORN_EDGE}: replaces its plain-text 400",
        "970bfb7d2f3e8c93",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.send",
        f"_OneSend in {UVICORN_EDGE}: holds the head it writes first, joins it to the body it writes next",
        "037826b6d0103a80",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:RequestResponseCycle.receive",
        f"_OneSend in {UVICORN_EDGE}: the 100 Continue it writes is held for the turn like a head",
        "e8e7d1f9ef89838e",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol.handle_parser_exception",
        f"EdgeWebSocketProtocol.handle_parser_exception in {UVICORN_EDGE}: copied, but for the lingering close",
        "ccf8f7bd5e1b34e6",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol.data_received",
        f"EdgeWebSocketProtocol.data_received in {UVICORN_EDGE}: drops what comes after a refused frame",
        "beeb0d8784f39267",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol.eof_received",
        f"EdgeWebSocketProtocol.eof_received in {UVICORN_EDGE}: closes a lingering connection",
        "f2b20dd5492a52e4",
    ),
    Upstream(
        "uvicorn",
        "uvicorn.server:Server._serve",
        f"serve in {UVICORN_EDGE}: sets the server up as it does (lifespan, startup, main_loop, shutdown)",
        "37c2a1de3c24f4c2",
    ),
]

#: each subclass of ours, and the upstream members it means to override (any other must be new)
OVERRIDES: dict[type, tuple[str, ...]] = {
    hypercorn_edge.EdgeConfig: (),
    hypercorn_edge._Connection: ("next_event",),
    hypercorn_edge.EdgeH11Protocol: ("__init__", "handle", "_check_protocol", "_create_stream", "_send_error_response"),
    hypercorn_edge._ProtocolWrapper: ("__init__",),
    hypercorn_edge._TCPServer: ("run",),
    uvicorn_edge.EdgeHttpToolsProtocol: (
        "__init__",
        "connection_made",
        "connection_lost",
        "handle_websocket_upgrade",
        "data_received",
        "on_message_begin",
        "on_url",
        "on_header",
        "on_headers_complete",
        "send_400_response",
    ),
    uvicorn_edge.EdgeWebSocketProtocol: ("handle_parser_exception", "data_received", "eof_received"),
    uvicorn_edge._Parser: ("__init__", "feed_data"),
}

#: upstream callables we call with positional arguments (or by these names), and the parameters we mean
CALLS = [
    (
        "hypercorn.asyncio.tcp_server:TCPServer.__init__",
        ("app", "loop", "config", "context", "state", "reader", "writer"),
    ),
    (
        "hypercorn.protocol:ProtocolWrapper.__init__",
        ("app", "config", "context", "task_group", "state", "ssl", "client", "server", "send", "alpn_protocol"),
    ),
    (
        "hypercorn.protocol.h11:H11Protocol.__init__",
        ("app", "config", "context", "task_group", "connection_state", "ssl", "client", "server", "send"),
    ),
    ("hypercorn.protocol.ws_stream:Handshake.__init__", ("headers", "http_version")),
    ("uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.__init__", ("config", "server_state", "app_state")),
    ("uvicorn.server:Server.startup", ("sockets",)),
    ("uvicorn.server:Server.main_loop", ()),
    ("uvicorn.server:Server.shutdown", ()),
]

_OWN_DUNDERS = {"__module__", "__doc__", "__qualname__", "__annotations__", "__dict__", "__weakref__"}
_OWN_DUNDERS |= {"__firstlineno__", "__static_attributes__", "__orig_bases__", "__parameters__"}


def _resolve(target: str) -> Callable[..., Any]:
    module, _, qualname = target.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found  # type: ignore[no-any-return]


def _digest(func: Callable[..., Any]) -> str:
    """The normalised source of ``func``, hashed (16 hex digits)."""
    return hashlib.sha256(_normalised(inspect.getsource(func)).encode()).hexdigest()[:16]


def _normalised(source: str) -> str:
    """``source`` without its comments, indentation or blank lines: what a reformatting leaves alone."""
    lines = textwrap.dedent(source).splitlines(keepends=True)
    tokens = tokenize.generate_tokens(io.StringIO("".join(lines)).readline)
    for tok in reversed([t for t in tokens if t.type == tokenize.COMMENT]):
        row, col = tok.start
        lines[row - 1] = lines[row - 1][:col]
    return "\n".join(stripped for line in lines if (stripped := line.strip()))


def _installed(package: str) -> str:
    return f"{package} {version(package)}"


@pytest.mark.parametrize("pin", PINS, ids=lambda p: p.target)
def test_what_we_override_or_copy_is_unchanged_upstream(pin: Upstream) -> None:
    found = _digest(_resolve(pin.target))
    assert found == pin.digest, (
        f"{_installed(pin.package)} changed {pin.target} since {pin.package} {RECORDED[pin.package]}: re-check "
        f"{pin.recheck}; once our code matches it, record digest {found!r} for it in tests/gateway/test_server_pins.py"
    )


def _upstream_classes(cls: type) -> list[type]:
    return [c for c in cls.__mro__[1:] if c is not object and not c.__module__.startswith("kernel.")]


def _own_members(cls: type) -> list[str]:
    return sorted(n for n in vars(cls) if n not in _OWN_DUNDERS)


def _takes_every_call_of(ours: inspect.Signature, theirs: inspect.Signature) -> list[str]:
    """Why ``ours`` cannot stand in for ``theirs`` (empty: every call ``theirs`` takes binds to ``ours``)."""
    P = inspect.Parameter
    mine = list(ours.parameters.values())
    varargs = any(p.kind is P.VAR_POSITIONAL for p in mine)
    varkw = any(p.kind is P.VAR_KEYWORD for p in mine)
    positional = [p for p in mine if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    by_name = {p.name: p for p in mine if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)}
    problems = []
    theirs_positional = [
        p for p in theirs.parameters.values() if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
    ]
    for i, p in enumerate(theirs_positional):
        if i >= len(positional) and not varargs:
            problems.append(f"takes no positional argument {i} ({p.name})")
        elif i < len(positional) and p.kind is P.POSITIONAL_OR_KEYWORD and positional[i].name != p.name and not varkw:
            problems.append(f"calls positional argument {i} {positional[i].name!r}, upstream {p.name!r}")
    for p in theirs.parameters.values():
        if p.kind is P.KEYWORD_ONLY and p.name not in by_name and not varkw:
            problems.append(f"takes no keyword argument {p.name!r}")
        elif p.kind is P.VAR_POSITIONAL and not varargs:
            problems.append("takes no *args")
        elif p.kind is P.VAR_KEYWORD and not varkw:
            problems.append("takes no **kwargs")
    names = {p.name for p in theirs.parameters.values()}
    problems += [
        f"needs {p.name!r}, which upstream callers do not pass"
        for p in mine
        if p.default is P.empty and p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD) and p.name not in names
    ]
    return problems


@pytest.mark.parametrize("cls", OVERRIDES, ids=lambda c: c.__qualname__)
def test_our_subclasses_override_only_what_they_mean_to(cls: type) -> None:
    upstream = _upstream_classes(cls)
    meant = OVERRIDES[cls]
    where = {name: next((c for c in upstream if name in vars(c)), None) for name in _own_members(cls)}
    lost = [f"{name} (declared here, not defined)" for name in meant if name not in where]
    lost += [f"{name} (no longer upstream)" for name in meant if name in where and where[name] is None]
    stray = [
        f"{name} (now also {c.__module__}.{c.__qualname__}.{name})"
        for name, c in where.items()
        if c and name not in meant
    ]
    assert lost == stray == [], (
        f"{cls.__module__}.{cls.__qualname__} (with {', '.join(_installed(p) for p in RECORDED)}) no longer "
        f"overrides just what OVERRIDES declares: {lost + stray}"
    )
    for name in meant:
        ours, theirs = vars(cls)[name], getattr(where[name], name)
        if name == "__init__" or not callable(ours):
            continue  # our constructors are called by us: CALLS checks what they pass on
        problems = _takes_every_call_of(inspect.signature(ours), inspect.signature(theirs))
        assert problems == [], (
            f"{cls.__qualname__}.{name} no longer fits {where[name].__module__}.{where[name].__qualname__}.{name}"
            f"{inspect.signature(theirs)}: {problems}"
        )


@pytest.mark.parametrize(("target", "params"), CALLS, ids=[c[0] for c in CALLS])
def test_the_upstream_calls_we_make_still_fit(target: str, params: tuple[str, ...]) -> None:
    found = [p for p in inspect.signature(_resolve(target)).parameters.values() if p.name != "self"]
    names = tuple(p.name for p in found[: len(params)])
    extra = [p.name for p in found[len(params) :] if p.default is inspect.Parameter.empty and p.kind not in (
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]  # fmt: skip
    assert (names, extra) == (params, []), (
        f"{target} takes {[p.name for p in found]}; the edge passes {list(params)} (and nothing more)"
    )


def test_the_checks_notice_a_change() -> None:
    """A digest ignores comments and layout but not code; a signature that drops a parameter does not fit."""
    before = "    def f(x):\n        return x + 1  # one more\n"
    reformatted = "def f(x):\n\n    # a comment of its own\n    return x + 1\n"
    changed = "def f(x):\n    return x + 2  # one more\n"
    assert _normalised(before) == _normalised(reformatted) == "def f(x):\nreturn x + 1"
    assert _normalised(changed) != _normalised(before)
    fits = inspect.signature(lambda self, event: None)
    assert _takes_every_call_of(fits, inspect.signature(lambda self, event: None)) == []
    assert _takes_every_call_of(inspect.signature(lambda self: None), fits) == [
        "takes no positional argument 1 (event)"
    ]
