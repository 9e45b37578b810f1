"""Compressed answers: gzip (the standard library), and brotli when the ``brotli`` package is installed.

An answer is compressed when the client accepts the encoding (``Accept-Encoding``, q-values
honoured; br preferred at equal weight), its type is compressible (``text/*`` but
``text/event-stream``, JSON, XML, JavaScript, SVG, ``+json``/``+xml``...; anything else, unknown
types included, is left alone), it has no ``Content-Encoding`` yet, no ``Cache-Control:
no-transform``, its status carries a body (not 1xx/204/206/304, not a HEAD) and it is at least
``threshold`` bytes (a streamed body of unknown size counts as large). Streamed bodies are
compressed chunk by chunk, each flushed as it goes (memory stays bounded, a client sees each
chunk at once); big chunks are compressed in a thread so the gateway's loop keeps serving. The
answer gets ``Vary: Accept-Encoding`` and loses its ``Content-Length`` when streamed.

Why not Starlette's ``GZipMiddleware``: it matches ``gzip`` anywhere in ``Accept-Encoding``
(``gzip;q=0`` included), compresses every type it does not exclude (``application/octet-stream``
too), has no second encoding, and its streaming and exclusion rules changed within the Starlette
versions this package allows; its technique (a sync flush per chunk, big chunks in a thread) is
kept here.
"""

from __future__ import annotations

import asyncio
import importlib
import zlib
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Header = tuple[bytes, bytes]
_THREAD_MINIMUM = 64 * 1024  # chunks at least this big are compressed off the event loop
_COMPRESSIBLE_APPLICATION = frozenset(
    {
        "json", "javascript", "ecmascript", "x-javascript", "xml", "xhtml+xml", "x-ndjson", "ndjson",
        "yaml", "x-yaml", "toml", "graphql", "x-www-form-urlencoded", "wasm", "vnd.ms-fontobject",
        "x-font-ttf", "x-sh", "rtf", "manifest+json", "ld+json", "geo+json", "problem+json",
    }
)  # fmt: skip
_COMPRESSIBLE_OTHER = frozenset({"image/svg+xml", "image/x-icon", "image/bmp", "font/ttf", "font/otf", "font/eot"})


def compressible(content_type: bytes) -> bool:
    """Whether a body of this ``Content-Type`` is worth compressing."""
    media = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
    kind, _, sub = media.partition("/")
    if kind == "text":
        return sub != "event-stream"
    if kind == "application":
        return sub in _COMPRESSIBLE_APPLICATION or sub.endswith(("+json", "+xml", "+yaml"))
    return media in _COMPRESSIBLE_OTHER


def choose_encoding(accept: bytes, offered: tuple[str, ...]) -> str | None:
    """The encoding of ``offered`` (in order of preference) the client weighs highest, or ``None``."""
    weights: dict[str, float] = {}
    for part in accept.decode("latin-1").lower().split(","):
        coding, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[coding.strip()] = q
    best, best_q = None, 0.0
    for coding in offered:
        q = weights.get(coding, weights.get("*", 0.0))
        if q > best_q:
            best, best_q = coding, q
    return best


class _Gzip:
    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def chunk(self, data: bytes, more: bool) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)


class _Brotli:
    def __init__(self, module: Any) -> None:
        self._b = module.Compressor(quality=4)

    def chunk(self, data: bytes, more: bool) -> bytes:
        out = self._b.process(data) + (self._b.flush() if more else self._b.finish())
        return bytes(out)


def _brotli_module() -> Any:
    """The ``brotli`` package (the ``brotli`` extra), if installed."""
    try:
        return importlib.import_module("brotli")
    except ImportError:
        return None


class CompressionMiddleware:
    def __init__(self, app: ASGIApp, *, threshold: int = 1024, level: int = 6, brotli: bool = True) -> None:
        self.app = app
        self.threshold = threshold
        self.level = level
        self._brotli = _brotli_module() if brotli else None
        self.offered: tuple[str, ...] = ("br", "gzip") if self._brotli is not None else ("gzip",)
        self._choices: dict[bytes, str | None] = {}  # Accept-Encoding value -> encoding (few distinct values)

    def _choose(self, accept: bytes) -> str | None:
        choice = self._choices.get(accept, "")
        if choice == "":
            choice = choose_encoding(accept, self.offered)
            if len(self._choices) < 256:
                self._choices[accept] = choice
        return choice

    def compressor(self, encoding: str) -> Callable[[bytes, bool], bytes]:
        return (_Brotli(self._brotli) if encoding == "br" else _Gzip(self.level)).chunk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        encoding = None
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                encoding = self._choose(value)
                break
        if encoding is None:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _Responder(self, encoding, send).send)


class _Responder:
    """One answer: holds the head until the first body chunk decides whether to compress."""

    __slots__ = ("_compress", "_encoding", "_head", "_owner", "_send")

    def __init__(self, owner: CompressionMiddleware, encoding: str, send: Send) -> None:
        self._owner = owner
        self._encoding = encoding
        self._send = send
        self._head: Message | None = None
        self._compress: Callable[[bytes, bool], bytes] | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._head = message
            return
        if kind != "http.response.body":
            await self._send(message)
            return
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        head = self._head
        if head is not None:  # the first chunk: decide
            self._head = None
            headers = self._worth_it(head, body, more)
            if headers is None:
                await self._send(head)
                await self._send(message)
                return
            self._compress = self._owner.compressor(self._encoding)
            data = await self._run(self._compress, body, more)
            if not more:
                headers.append((b"content-length", str(len(data)).encode()))
            await self._send({**head, "headers": headers})
            await self._send({"type": "http.response.body", "body": data, "more_body": more})
            return
        if self._compress is None:
            await self._send(message)
            return
        data = await self._run(self._compress, body, more)
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    @staticmethod
    async def _run(compress: Callable[[bytes, bool], bytes], body: bytes, more: bool) -> bytes:
        if len(body) >= _THREAD_MINIMUM:
            return await asyncio.get_running_loop().run_in_executor(None, compress, body, more)
        return compress(body, more)

    def _worth_it(self, head: Message, body: bytes, more: bool) -> list[Header] | None:
        """The head's headers for a compressed answer, or ``None`` to send it as it is."""
        status: int = head["status"]
        if status < 200 or status in (204, 206, 304):
            return None
        headers: list[Header] = list(head.get("headers") or [])
        typed = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-type":
                if not compressible(value):
                    return None
                typed = True
            elif (
                lower == b"content-encoding"
                or (lower == b"cache-control" and b"no-transform" in value.lower())
                or (lower == b"content-length" and value.isdigit() and int(value) < self._owner.threshold)
            ):
                return None
        if not typed or (not more and len(body) < self._owner.threshold):
            return None
        out = [(n, v) for n, v in headers if n.lower() not in (b"content-length", b"vary")]
        vary = [v for n, v in headers if n.lower() == b"vary"]
        tokens = [t.strip().lower() for v in vary for t in v.split(b",")]
        if b"*" in tokens or b"accept-encoding" in tokens:
            out += [(b"vary", v) for v in vary]
        else:
            out.append((b"vary", b", ".join([*vary, b"Accept-Encoding"])))
        out.append((b"content-encoding", self._encoding.encode()))
        return out
