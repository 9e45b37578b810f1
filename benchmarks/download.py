"""A download client that reads and discards: one GET, body counted, never kept.

Raw socket, ``recv_into`` a fixed buffer, chunked framing decoded in place:
the client's memory and CPU stay flat whatever the size, so it measures the
server's MB/s, not its own.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

BUF = 4 * 1024 * 1024


@dataclass
class DownloadResult:
    status: int
    body_bytes: int
    seconds: float
    complete: bool
    error: str = ""

    @property
    def mb_s(self) -> float:
        return self.body_bytes / self.seconds / (1024 * 1024) if self.seconds else 0.0


def download(url: str, *, deadline_s: float, headers: dict[str, str] | None = None) -> DownloadResult:
    """GET ``url``, read the body to the end (or until ``deadline_s`` passes), count its bytes."""
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    target = u.path + (f"?{u.query}" if u.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    start = time.monotonic()
    end_at = start + deadline_s
    buf = bytearray(BUF)
    view = memoryview(buf)
    status, body, complete, error = 0, 0, False, ""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        # head
        head = bytearray()
        while b"\r\n\r\n" not in head:
            n = sock.recv_into(buf)
            if n == 0:
                return DownloadResult(0, 0, time.monotonic() - start, False, "connection closed before the head")
            head += view[:n]
        cut = head.index(b"\r\n\r\n")
        lower = bytes(head[:cut]).lower()
        status = int(lower[9:12])
        rest = bytes(head[cut + 4 :])
        chunked = b"transfer-encoding: chunked" in lower
        length = None
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if not chunked:
            body = len(rest)
            while (length is None or body < length) and time.monotonic() < end_at:
                n = sock.recv_into(buf)
                if n == 0:
                    break
                body += n
            complete = length is None or body >= length
        else:
            decoder = _Chunked()
            decoder.feed(memoryview(rest), len(rest))
            while not decoder.done and time.monotonic() < end_at:
                n = sock.recv_into(buf)
                if n == 0:
                    error = "connection closed mid-body"
                    break
                decoder.feed(view, n)
            body, complete = decoder.body, decoder.done
    if not complete and not error:
        error = f"stopped after {deadline_s:g}s"
    return DownloadResult(status, body, time.monotonic() - start, complete, error)


class _Chunked:
    """Chunked transfer decoding that only counts: ``remaining`` body bytes of the current chunk."""

    def __init__(self) -> None:
        self.body = 0
        self.remaining = 0  # data bytes left in the current chunk
        self.skip = 0  # the CRLF after a chunk's data
        self.line = bytearray()  # a size line split across reads
        self.last = False
        self.done = False

    def feed(self, view: memoryview, n: int) -> None:
        pos = 0
        while pos < n and not self.done:
            if self.remaining:
                take = min(self.remaining, n - pos)
                self.remaining -= take
                self.body += take
                pos += take
                if not self.remaining:
                    self.skip = 2
                continue
            if self.skip:
                take = min(self.skip, n - pos)
                self.skip -= take
                pos += take
                continue
            # a size line (or, after the last chunk, the final empty line)
            nl = bytes(view[pos : min(n, pos + 1024)]).find(b"\n")
            if nl < 0:
                self.line += view[pos:n]
                if len(self.line) > 1024:
                    raise ValueError("bad chunk size line")
                return
            self.line += view[pos : pos + nl + 1]
            pos += nl + 1
            text = bytes(self.line).strip()
            self.line.clear()
            if self.last:
                if not text:
                    self.done = True
                continue  # a trailer line
            size = int(text.split(b";")[0], 16)
            if size == 0:
                self.last = True
            else:
                self.remaining = size
