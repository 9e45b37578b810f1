"""Load generators: ``wrk`` when it is on PATH, else an asyncio HTTP/1.1 generator of ours (a lower bound).

Both run a fixed number of keep-alive connections for a fixed time against
one URL and report requests, bytes, errors and latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Load:
    """One load to drive: method, URL, body, headers."""

    url: str
    method: str = "GET"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class LoadResult:
    requests: int
    seconds: float
    bytes: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mb_s(self) -> float:
        return self.bytes / self.seconds / (1024 * 1024) if self.seconds else 0.0


class LoadGenerator:
    name = "?"

    def run(self, load: Load, *, duration: int, connections: int) -> LoadResult:
        raise NotImplementedError


# -- wrk -----------------------------------------------------------------------------------

_LUA = r"""
wrk.method = "{method}"
{body}
{headers}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50": %.1f, "p90": %.1f, "p99": %.1f, "p999": %.1f, ' ..
    '"max": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max))
end
"""


def _lua_string(value: str | bytes) -> str:
    """A double-quoted Lua string literal: printable ASCII as is, everything else as ``\\ddd``."""
    data = value.encode() if isinstance(value, str) else value
    out = []
    for b in data:
        ch = chr(b)
        if ch in ('"', "\\") or not 32 <= b < 127:
            out.append(f"\\{b:03d}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class Wrk(LoadGenerator):
    """``wrk --latency`` with a Lua ``done()`` that prints every figure (p99.9 included) as JSON."""

    def __init__(self, path: str, threads: int = 1, timeout: int = 10) -> None:
        self.path = path
        self.threads = threads
        self.timeout = timeout
        out = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
        first = (out.stdout or out.stderr).splitlines()
        self.version = first[0].split(" [")[0] if first else "wrk"
        self.name = f"wrk ({self.version}, -t{threads})"

    def run(self, load: Load, *, duration: int, connections: int) -> LoadResult:
        body = f"wrk.body = {_lua_string(load.body)}" if load.body else ""
        headers = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in load.headers)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(_LUA.format(method=load.method, body=body, headers=headers))
            script = f.name
        try:
            cmd = [
                self.path,
                f"-t{min(self.threads, connections)}",
                f"-c{connections}",
                f"-d{max(1, int(duration))}s",
                f"--timeout={self.timeout}s",
                "--latency",
                "-s",
                script,
                load.url,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + self.timeout + 30)
        finally:
            Path(script).unlink(missing_ok=True)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        return parse_wrk(proc.stdout)


def parse_wrk(out: str) -> LoadResult:
    """Figures from our ``done()`` line; the ``--latency`` table and summary lines if it is missing."""
    m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if m:
        d = json.loads(m.group(1))
        return LoadResult(
            requests=d["requests"],
            seconds=d["duration_us"] / 1e6,
            bytes=d["bytes"],
            errors=d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"],
            p50_ms=d["p50"] / 1000,
            p90_ms=d["p90"] / 1000,
            p99_ms=d["p99"] / 1000,
            p999_ms=d["p999"] / 1000,
            max_ms=d["max"] / 1000,
        )
    return _parse_wrk_text(out)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _parse_wrk_text(out: str) -> LoadResult:
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if not m or not pct:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    seconds = _ms(m.group(2) + m.group(3)) / 1000
    size = float(m.group(4)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}.get(m.group(5), 1)
    errors = 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if e:
        errors += sum(int(x) for x in e.groups())
    s = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if s:
        errors += int(s.group(1))
    mx = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    return LoadResult(
        requests=int(m.group(1)),
        seconds=seconds,
        bytes=int(size),
        errors=errors,
        p50_ms=pct.get("50", 0.0),
        p90_ms=pct.get("90", 0.0),
        p99_ms=pct.get("99", 0.0),
        p999_ms=pct.get("99", 0.0),
        max_ms=_ms(mx.group(1)) if mx else 0.0,
    )


# -- ours: asyncio, raw sockets, HTTP/1.1 keep-alive ----------------------------------------------


class _ResponseReader:
    """Incremental parsing of HTTP/1.1 answers on one keep-alive connection (Content-Length or chunked)."""

    def _reset_reader(self) -> None:
        self.buf = bytearray()
        self.need: int | None = None  # body bytes still expected (content-length mode)
        self.chunked = False
        self.head_done = False
        self.status = 0
        self.server_closes = False  # the last answer said Connection: close

    def _parse(self) -> bool:
        """True when a whole response is in the buffer (and consumed)."""
        buf = self.buf
        if not self.head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(buf[:end]).lower()
            del buf[: end + 4]
            self.status = int(head[9:12])
            self.head_done = True
            self.chunked = b"transfer-encoding: chunked" in head
            self.server_closes = b"connection: close" in head
            self.need = None
            if not self.chunked:
                m = re.search(rb"content-length:\s*(\d+)", head)
                self.need = int(m.group(1)) if m else 0
        if not self.chunked:
            assert self.need is not None
            if len(buf) < self.need:
                return False
            del buf[: self.need]
            return True
        while True:  # chunked: consume whole chunks, done at the zero-size one
            line = buf.find(b"\r\n")
            if line < 0:
                return False
            size = int(bytes(buf[:line]).split(b";")[0], 16)
            if size == 0:  # last chunk, then the empty line (our servers send no trailers)
                if len(buf) < line + 4:
                    return False
                del buf[: line + 4]
                return True
            if len(buf) < line + 2 + size + 2:
                return False
            del buf[: line + 2 + size + 2]


class _Conn(_ResponseReader, asyncio.Protocol):
    """One keep-alive connection sending the same request again as soon as the answer is complete.

    An answer with ``Connection: close`` (hypercorn says it after 1000 requests on a connection)
    ends the connection cleanly; its slot opens a new one, as wrk does.
    """

    def __init__(self, gen: _Run) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self._reset_reader()
        self.sent = 0.0
        self.body_bytes = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.fire()

    def fire(self) -> None:
        if self.gen.stopping:
            assert self.transport is not None
            self.transport.close()
            return
        self.head_done = False
        self.body_bytes = 0
        self.sent = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.gen.bytes += len(data)
        while self._parse():
            lat = time.perf_counter() - self.sent
            self.gen.record(lat, self.status)
            if self.server_closes:
                assert self.transport is not None
                self.transport.close()
                return
            self.fire()
            if self.transport is None or self.transport.is_closing():
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.gen.stopping and not self.server_closes:
            self.gen.errors += 1
        if not self.closed.done():
            self.closed.set_result(None)


class _Run:
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.stopping = False
        self.latencies: list[float] = []
        self.errors = 0
        self.bytes = 0

    def record(self, lat: float, status: int) -> None:
        self.latencies.append(lat)
        if not 200 <= status < 400:
            self.errors += 1


def request_bytes(load: Load) -> tuple[str, int, bytes]:
    """Host, port and the bytes of one HTTP/1.1 keep-alive request of ``load``."""
    u = urlsplit(load.url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    target = u.path + (f"?{u.query}" if u.query else "")
    lines = [f"{load.method} {target} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in load.headers]
    if load.body or load.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(load.body)}")
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + load.body


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


class PyLoad(LoadGenerator):
    """Our own generator: asyncio (uvloop when available) protocols on raw keep-alive sockets.

    A lower bound: it is Python and shares the machine's cores with the
    server, so the server may be faster than it shows.
    """

    name = "python asyncio generator (lower bound)"

    def run(self, load: Load, *, duration: int, connections: int) -> LoadResult:
        runner: Callable[..., Any] = asyncio.run
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
        result: LoadResult = runner(self._run(load, duration, connections))
        return result

    async def _run(self, load: Load, duration: float, connections: int) -> LoadResult:
        host, port, request = request_bytes(load)
        run = _Run(request)
        loop = asyncio.get_running_loop()
        conns: list[_Conn] = []
        start = time.perf_counter()

        async def slot() -> None:
            """One connection at a time for the whole run: a new one when the server ends the last."""
            while not run.stopping:
                try:
                    _, proto = await loop.create_connection(lambda: _Conn(run), host, port)
                except OSError:
                    run.errors += 1
                    return
                conns.append(proto)
                await proto.closed

        slots = [loop.create_task(slot()) for _ in range(connections)]
        await asyncio.sleep(max(0.0, duration - (time.perf_counter() - start)))
        run.stopping = True
        seconds = time.perf_counter() - start
        for c in conns:
            if c.transport is not None:
                c.transport.close()
        await asyncio.wait([c.closed for c in conns], timeout=5)
        for t in slots:
            t.cancel()
        lat = sorted(run.latencies)
        return LoadResult(
            requests=len(lat),
            seconds=seconds,
            bytes=run.bytes,
            errors=run.errors,
            p50_ms=_percentile(lat, 50) * 1000,
            p90_ms=_percentile(lat, 90) * 1000,
            p99_ms=_percentile(lat, 99) * 1000,
            p999_ms=_percentile(lat, 99.9) * 1000,
            max_ms=(lat[-1] * 1000) if lat else 0.0,
        )


def choose(kind: str, threads: int) -> LoadGenerator:
    """``auto``: wrk when on PATH, else ours."""
    if kind in ("auto", "wrk"):
        path = shutil.which("wrk")
        if path:
            return Wrk(path, threads=threads)
        if kind == "wrk":
            raise SystemExit("benchmarks: --loadgen wrk, but wrk is not on PATH (apt-get install wrk)")
    return PyLoad()
