"""Compression at the edge: gzip (br with the brotli extra) when asked and worth it; never SSE, never twice."""

from __future__ import annotations

import gzip
import importlib.util
import json
import zlib
from collections.abc import Iterator

import httpx
import pytest

from kernel.gateway.middleware.compression import CompressionMiddleware, choose_encoding, compressible
from kernel.testing import KernelProcess
from tests.gateway.edge_support import edge_config, edge_site

HAS_BROTLI = importlib.util.find_spec("brotli") is not None


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    k = KernelProcess(edge_config(), paths=[edge_site(tmp_path_factory.mktemp("site"))]).start()
    yield k
    k.stop()


def _raw(kernel: KernelProcess, path: str, encoding: str | None = "gzip") -> tuple[httpx.Headers, bytes]:
    headers = {"Accept-Encoding": encoding} if encoding is not None else {"Accept-Encoding": "identity"}
    with httpx.Client(base_url=kernel.url, timeout=20) as c, c.stream("GET", path, headers=headers) as resp:
        return resp.headers, b"".join(resp.iter_raw())


def test_a_big_json_answer_is_gzipped(kernel: KernelProcess) -> None:
    headers, body = _raw(kernel, "/api/edge/big")
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(body)
    plain = gzip.decompress(body)
    assert json.loads(plain)["items"][199]["id"] == 199
    assert len(body) < len(plain) / 4


def test_no_compression_unless_asked_for_and_worth_it(kernel: KernelProcess) -> None:
    for path, encoding in [
        ("/api/edge/big", None),  # the client did not ask
        ("/api/edge/big", "gzip;q=0, identity"),  # the client refused it
        ("/api/edge/small", "gzip"),  # under the threshold (1 KiB)
        ("/api/edge/binary", "gzip"),  # not a compressible type
    ]:
        headers, _ = _raw(kernel, path, encoding)
        assert "content-encoding" not in headers, (path, encoding)


def test_an_answer_already_encoded_is_left_alone(kernel: KernelProcess) -> None:
    headers, body = _raw(kernel, "/api/edge/encoded")
    assert headers.get_list("content-encoding") == ["gzip"]
    assert gzip.decompress(body) == b"already compressed " * 200  # once, not twice


def test_an_event_stream_is_never_compressed_and_arrives_event_by_event(kernel: KernelProcess) -> None:
    with (
        httpx.Client(base_url=kernel.url, timeout=20) as c,
        c.stream("GET", "/api/edge/events", headers={"Accept-Encoding": "gzip, br"}) as resp,
    ):
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in resp.headers
        events = [line for line in resp.iter_lines() if line.startswith("data:")]
    assert [e.split()[2] for e in events] == ["0", "1", "2"]


def test_a_streamed_text_is_compressed_chunk_by_chunk(kernel: KernelProcess) -> None:
    with (
        httpx.Client(base_url=kernel.url, timeout=20) as c,
        c.stream("GET", "/api/edge/text-stream?n=20", headers={"Accept-Encoding": "gzip"}) as resp,
    ):
        assert resp.headers["content-encoding"] == "gzip" and "content-length" not in resp.headers
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunks = resp.iter_raw()
        first = next(chunks)
        # each chunk is flushed: what came first already inflates to whole text, before the rest arrives
        assert inflate.decompress(first).startswith(b"the quick brown fox")
        rest = b"".join(chunks)
    text = gzip.decompress(first + rest)
    assert text == b"the quick brown fox jumps over the lazy dog\n" * 100 * 20


@pytest.mark.skipif(not HAS_BROTLI, reason="the brotli extra is not installed")
def test_brotli_when_installed_and_preferred(kernel: KernelProcess) -> None:
    import brotli

    headers, body = _raw(kernel, "/api/edge/big", "gzip, deflate, br")
    assert headers["content-encoding"] == "br"
    assert json.loads(brotli.decompress(body))["items"][0]["id"] == 0
    assert _raw(kernel, "/api/edge/big", "br;q=0.5, gzip")[0]["content-encoding"] == "gzip"


@pytest.mark.parametrize(
    ("accept", "offered", "chosen"),
    [
        ("gzip, deflate, br", ("br", "gzip"), "br"),
        ("gzip, deflate, br", ("gzip",), "gzip"),
        ("br;q=0.2, gzip;q=0.8", ("br", "gzip"), "gzip"),
        ("gzip;q=0", ("gzip",), None),
        ("*", ("gzip",), "gzip"),
        ("*;q=0, identity", ("gzip",), None),
        ("identity", ("br", "gzip"), None),
        ("GZIP", ("gzip",), "gzip"),
    ],
)
def test_choose_encoding_honours_q_values(accept: str, offered: tuple[str, ...], chosen: str | None) -> None:
    assert choose_encoding(accept.encode(), offered) == chosen


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("text/html; charset=utf-8", True),
        ("application/vnd.api+json", True),
        ("image/svg+xml", True),
        ("text/event-stream", False),
        ("application/octet-stream", False),
        ("image/png", False),
        ("application/x-unknown", False),
    ],
)
def test_compressible_types(content_type: str, expected: bool) -> None:
    assert compressible(content_type.encode()) is expected


async def test_head_and_bodiless_answers_pass_untouched() -> None:
    sent: list[dict[str, object]] = []

    async def app(scope: object, receive: object, send: object) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"5000")]
        await send({"type": "http.response.start", "status": 304, "headers": headers})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    mw = CompressionMiddleware(app)  # type: ignore[arg-type]
    for method in ("GET", "HEAD"):
        sent.clear()
        scope = {"type": "http", "method": method, "headers": [(b"accept-encoding", b"gzip")]}
        await mw(scope, None, send)  # type: ignore[arg-type]
        assert sent[0]["status"] == 304 and (b"content-encoding", b"gzip") not in sent[0]["headers"]  # type: ignore[operator]
