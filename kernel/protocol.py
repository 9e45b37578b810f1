"""The wire protocol between gateway, supervisor and workers.

Pure data and codec: no sockets, no event loop. Every message is one ZeroMQ frame, a
tagged ``msgspec.Struct`` encoded as msgpack (array-like, small integer
tags); the two body messages are followed by one more frame carrying the
bytes themselves, so large chunks are never copied into an envelope. ``Hello`` opens every conversation and carries
``PROTOCOL_VERSION``; its layout never changes, so a peer of another version
can always read it and answer with a clear ``Error``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from kernel.errors import ProtocolError

PROTOCOL_VERSION = 5
#: flow control, the same on both sides: a sender may have WINDOW body chunks (or WebSocket
#: messages) of a stream unacknowledged; a receiver returns credit after consuming ACK_EVERY (< WINDOW)
WINDOW = 16
ACK_EVERY = 4

Headers = list[tuple[bytes, bytes]]


class _Msg(msgspec.Struct, frozen=True, array_like=True, tag_field="t"):
    pass


class PermissionRestriction(msgspec.Struct, frozen=True, array_like=True):
    """What an external credential may do within one plugin (``accessRestrictions`` of its config entry)."""

    plugin: str
    #: permission names it may be granted; ``None``: any
    permission_names: list[str] | None = None
    #: values of the permissions' ``action`` attribute it may be granted; ``None``: any
    actions: list[str] | None = None


class Principal(msgspec.Struct, frozen=True, array_like=True):
    """Who is calling: ``none``, a ``user`` (subject: user entity ref) or a ``service``.

    A service is ``plugin:<id>`` or ``external:<subject>``. A user reached through another
    plugin (a plugin token on behalf of the user) names that plugin as ``actor``.
    """

    type: Literal["none", "user", "service"] = "none"
    subject: str = ""
    #: plugin ids a service principal is limited to; ``None`` means unrestricted
    access_restrictions: list[str] | None = None
    ownership_refs: list[str] = []
    #: the service acting on the user's behalf (``plugin:<id>``), if any
    actor: str = ""
    #: permission limits per plugin of an external service principal; ``None`` means unrestricted
    permission_restrictions: list[PermissionRestriction] | None = None


NO_PRINCIPAL = Principal()


class AuthPolicy(msgspec.Struct, frozen=True, array_like=True):
    """A path prefix (relative to the plugin mount) opened with ``allow``."""

    path: str
    allow: Literal["unauthenticated", "user-cookie"]


class Hello(_Msg, tag=0, frozen=True):
    """First message on every connection: who the sender is, and which version it speaks."""

    version: int
    role: Literal["worker", "gateway", "supervisor"]
    plugin_id: str = ""
    worker_id: str = ""
    pid: int = 0
    policies: list[AuthPolicy] = []
    #: to the supervisor: the secret it handed this child at launch (proves which child it is)
    secret: str = ""


class RequestHead(_Msg, tag=1, frozen=True):
    """Start of a request stream (gateway -> worker); small bodies travel inline.

    With ``websocket`` it opens a WebSocket instead (no body): the worker answers ``WsAccept``,
    or refuses with a ``ResponseHead`` (the HTTP answer to the upgrade) or a ``WsClose``.
    """

    stream: int
    method: str
    path: str
    query: bytes
    headers: Headers
    client: tuple[str, int] | None
    scheme: str
    principal: Principal
    body: bytes = b""
    more_body: bool = False
    root_path: str = ""
    http_version: str = "1.1"
    websocket: bool = False
    #: the path as the client sent it (percent-encoded; ``path`` is decoded), when the server gave it
    raw_path: bytes = b""


class RequestBody(_Msg, tag=2, frozen=True):
    """A chunk of the request body (gateway -> worker); the bytes follow in the next frame."""

    stream: int
    more: bool


class ResponseHead(_Msg, tag=3, frozen=True):
    """Status and headers (worker -> gateway); small bodies travel inline."""

    stream: int
    status: int
    headers: Headers
    body: bytes = b""
    more_body: bool = False


class ResponseBody(_Msg, tag=4, frozen=True):
    """A chunk of the response body (worker -> gateway); the bytes follow in the next frame."""

    stream: int
    more: bool


class End(_Msg, tag=5, frozen=True):
    """The stream is abandoned by the sender (client gone, deadline passed)."""

    stream: int


class Error(_Msg, tag=6, frozen=True):
    """A failure: of a stream (``stream`` > 0) or of the connection (``stream`` == 0)."""

    stream: int
    name: str
    message: str
    stack: str = ""


class Credit(_Msg, tag=7, frozen=True):
    """Flow control: the receiver has consumed ``chunks`` more body chunks of ``stream``."""

    stream: int
    chunks: int


class Heartbeat(_Msg, tag=8, frozen=True):
    """Liveness, both ways between supervisor and worker; a worker adds its own readiness."""

    sent_at: float
    ready: bool = True
    reason: str = ""
    #: a worker's requests and WebSockets started so far (for ``maxRequests`` recycling)
    served: int = 0
    #: a worker's requests and WebSockets open now
    in_flight: int = 0
    #: handler time of the requests a worker finished in its last ten beats, median and 99th percentile
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    #: an answer to the supervisor's beat sent at this time (its round trip), else 0
    echo: float = 0.0


class Shutdown(_Msg, tag=9, frozen=True):
    """Stop taking new work, finish in-flight requests within ``grace`` seconds, exit.

    From a remote worker to the supervisor (``kernel.supervisor.remote``): with a ``grace``, it asks to
    leave (the supervisor answers with its own once no gateway routes to it); with 0, it has drained and left.
    """

    grace: float


class BeforeShutdown(_Msg, tag=21, frozen=True):
    """The kernel is about to stop: a worker runs its ``before_shutdown`` hooks while requests still
    flow, and answers with the same message once they ran; the ``Shutdown`` that follows stops it."""


PluginStateName = Literal["starting", "ready", "degraded", "failed", "stopping"]


class PluginState(msgspec.Struct, frozen=True, array_like=True):
    """What a gateway needs to know of one plugin."""

    id: str
    state: PluginStateName
    policies: list[AuthPolicy]
    workers: list[str]
    reason: str = ""
    distribution: str = ""
    version: str = ""
    #: worker id -> "starting" | "ready" | "unready: <why>" | "draining"
    worker_states: dict[str, str] = {}
    #: workers being replaced: no new requests, but the streams they serve run to their end
    draining: list[str] = []
    #: worker id -> its routing id on the gateways' sockets (secret: a stream answers only to it)
    routes: dict[str, str] = {}
    #: what keeps the plugin apart (who its workers run as, cgroup, config, logins), for the dashboard
    isolation: dict[str, str] = {}


class WorkerTable(_Msg, tag=10, frozen=True):
    """The supervisor's view of every plugin, published to gateways on each change."""

    generation: int
    plugins: list[PluginState]
    accepting: bool
    #: the instance is leaving (SIGTERM, ``backend.lifecycle.serverShutdownDelay``) or the kernel is stopping
    #: (its before-shutdown hooks run): readiness is 503 while requests are still served (``accepting``)
    leaving: bool = False


class ConfigUpdate(_Msg, tag=11, frozen=True):
    """The supervisor loaded a changed config; every gateway and worker switches to it."""

    #: ``kernel.config.ConfigSnapshot`` as msgpack: data plus the file each key came from
    snapshot: bytes


class Policies(_Msg, tag=12, frozen=True):
    """A worker's auth policies changed after start-up (worker -> supervisor, which republishes them)."""

    policies: list[AuthPolicy]


class TableApplied(_Msg, tag=16, frozen=True):
    """A gateway routes by the worker table of ``generation`` now (gateway -> supervisor)."""

    generation: int


class Joined(_Msg, tag=22, frozen=True):
    """The supervisor admitted a remote worker (supervisor -> worker, on its join link).

    ``spec`` is its ``kernel.launch.WorkerSpec`` as JSON: its worker id, routing id and secret, the
    gateways' ``tcp://`` endpoints, the settings and its plugin's scoped config, as a local worker gets
    on its stdin.
    """

    spec: bytes


class ProcessSample(msgspec.Struct, frozen=True, array_like=True):
    """One process of the kernel as the supervisor saw it at its last tick."""

    kind: Literal["supervisor", "gateway", "worker"]
    ident: str
    pid: int
    plugin_id: str = ""
    #: "starting" | "ready" | "unready: <why>" | "draining" (workers), "ready" | "starting" (gateways)
    state: str = ""
    started_at: float = 0.0
    rss_bytes: int = 0
    cpu_seconds: float = 0.0
    #: the last heartbeat's round trip through the control channel
    heartbeat_rtt_ms: float = 0.0
    served: int = 0
    in_flight: int = 0
    #: requests started per second over the last tick
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0


class Stats(_Msg, tag=17, frozen=True):
    """Every process's figures and each plugin's restart counts, sent to gateways every tick."""

    at: float
    processes: list[ProcessSample]
    #: plugin id -> workers restarted after dying, since the kernel started
    restarts: dict[str, int]
    #: plugin id -> workers replaced on purpose (reload, memory or request limits)
    recycles: dict[str, int]
    #: cause (``rate``, ``backlog``) -> plugin id (``kernel``: kernel processes) -> log lines dropped
    log_lines_dropped: dict[str, dict[str, int]] = {}


class RolloutRequest(_Msg, tag=18, frozen=True):
    """An operator asked a gateway for a rollout (gateway -> supervisor, ``kernel.supervisor.rollout``).

    ``plugins``: the plugins whose workers are replaced, one after the other (``all_plugins``: every
    running one); else, with ``gateways``, the gateway processes, one at a time. ``id`` is the
    gateway's name for it, in every ``Rollouts``.
    """

    id: str
    plugins: list[str] = []
    gateways: bool = False
    all_plugins: bool = False
    #: who asked (the operator's subject), for the log
    by: str = ""


RolloutStateName = Literal["running", "succeeded", "failed", "refused"]


class RolloutStep(msgspec.Struct, frozen=True, array_like=True):
    """One thing a rollout did, as the operator reads it."""

    at: float
    message: str


class RolloutState(msgspec.Struct, frozen=True, array_like=True):
    """Where one rollout is: ``running``, ``succeeded``, ``failed`` (``error`` says why) or ``refused``."""

    id: str
    state: RolloutStateName
    plugins: list[str]
    gateways: bool
    requested_at: float
    steps: list[RolloutStep] = []
    error: str = ""
    finished_at: float = 0.0


class Rollouts(_Msg, tag=19, frozen=True):
    """The supervisor's latest rollouts, newest last (supervisor -> every gateway, on each change)."""

    rollouts: list[RolloutState]


class Retire(_Msg, tag=20, frozen=True):
    """A gateway being replaced: stop taking connections, finish the open ones within ``grace`` seconds, exit.

    Unlike ``Shutdown``, requests on its open connections are served as usual (not refused): the other
    gateways, or the one replacing it, take the new connections.
    """

    grace: float


class WsAccept(_Msg, tag=13, frozen=True):
    """The plugin accepted the WebSocket of ``stream`` (worker -> gateway)."""

    stream: int
    subprotocol: str | None = None
    headers: Headers = []


class WsMessage(_Msg, tag=14, frozen=True):
    """One WebSocket message, either way; its bytes (UTF-8 when ``text``) follow in the next frame."""

    stream: int
    text: bool


class WsClose(_Msg, tag=15, frozen=True):
    """The WebSocket of ``stream`` closes, either way, with a close code and reason."""

    stream: int
    code: int = 1000
    reason: str = ""


Message = (
    Hello
    | RequestHead
    | RequestBody
    | ResponseHead
    | ResponseBody
    | End
    | Error
    | Credit
    | Heartbeat
    | Shutdown
    | BeforeShutdown
    | WorkerTable
    | ConfigUpdate
    | Policies
    | TableApplied
    | Stats
    | WsAccept
    | WsMessage
    | WsClose
    | RolloutRequest
    | Rollouts
    | Retire
    | Joined
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)

encode = _encoder.encode


def decode(frame: bytes | memoryview) -> Message:
    """Decode one frame, raising ``ProtocolError`` with a readable reason."""
    try:
        return _decoder.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 in a string: msgspec raises the latter
        raise ProtocolError(
            f"undecodable frame ({exc}); is the peer speaking protocol version {PROTOCOL_VERSION}?"
        ) from exc


def check_hello(msg: Message) -> Hello:
    """Return ``msg`` if it is a ``Hello`` of our version, else raise ``ProtocolError``."""
    if not isinstance(msg, Hello):
        raise ProtocolError(f"expected Hello first, got {type(msg).__name__}")
    if msg.version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version mismatch: peer {' '.join(filter(None, (msg.role, msg.worker_id)))} speaks "
            f"version {msg.version}, this side speaks {PROTOCOL_VERSION}"
        )
    return msg
