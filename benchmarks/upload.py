"""An upload client that sends from one reused buffer: one POST with ``Content-Length: N``, the answer read.

Raw socket, ``sendall`` of slices of a fixed 1 MiB block (not uniform: a byte pattern, so a digest
of it means something): the client's memory stays flat whatever the size, so it measures the
server's MB/s, not its own. The answer is the ``/upload`` handler's JSON (``kernel_bench.handlers``):
the byte count it read, checked against ``size``; with ``sha256=True`` the handler's digest too,
checked against the one the client computes of what it sent (that costs the client about a second
of CPU per GiB: the benchmark rows leave it off).
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

BLOCK = 1024 * 1024
_PATTERN = bytes(range(256)) * (BLOCK // 256)
#: the most of an answer kept (the handler's is a line of JSON; an error page is cut here)
MAX_ANSWER = 64 * 1024


@dataclass
class UploadResult:
    status: int
    body_bytes: int  # bytes sent
    seconds: float
    complete: bool  # the whole body went out, and the answer's count (and digest) match it
    error: str = ""
    answer: str = ""

    @property
    def mb_s(self) -> float:
        return self.body_bytes / self.seconds / (1024 * 1024) if self.seconds else 0.0


def upload(url: str, size: int, *, deadline_s: float, sha256: bool = False) -> UploadResult:
    """POST ``size`` bytes to ``url`` (until ``deadline_s`` passes), read the answer, check its count."""
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    target = u.path + (f"?{u.query}" if u.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
    )
    view = memoryview(_PATTERN)
    digest = hashlib.sha256() if sha256 else None
    start = time.monotonic()
    end_at = start + deadline_s
    sent, error = 0, ""
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(head.encode())
            while sent < size:
                if time.monotonic() >= end_at:
                    error = f"stopped after {deadline_s:g}s, {sent} of {size} bytes sent"
                    break
                piece = view[: min(BLOCK, size - sent)]
                sock.sendall(piece)
                if digest is not None:
                    digest.update(piece)
                sent += len(piece)
        except OSError as exc:  # the server answered early (413, 404) and closed: its answer says why
            error = f"{type(exc).__name__} after {sent} of {size} bytes"
        status, answer = _answer(sock, end_at) if not error.startswith("stopped") else (0, "")
    seconds = time.monotonic() - start
    if not error:
        error = _check(status, answer, size, digest.hexdigest() if digest is not None else None)
    elif status:
        error = f"{error}; status {status}: {answer[:200]}"
    return UploadResult(status, sent, seconds, not error, error, answer)


def _answer(sock: socket.socket, end_at: float) -> tuple[int, str]:
    """Status and body of the answer (read to the close: ``Connection: close``); ``(0, "")`` if none came."""
    data = bytearray()
    sock.settimeout(max(0.1, end_at - time.monotonic()))
    try:
        while len(data) < MAX_ANSWER:
            got = sock.recv(MAX_ANSWER)
            if not got:
                break
            data += got
    except OSError:
        pass
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    try:
        status = int(head[9:12])
    except ValueError:
        return 0, ""
    if b"transfer-encoding: chunked" in head.lower():  # one small JSON: a single chunk
        size_line, _, rest = body.partition(b"\r\n")
        body = rest[: int(size_line.split(b";")[0] or b"0", 16)]
    return status, body.decode("utf-8", "replace")


def _check(status: int, answer: str, size: int, sha256: str | None) -> str:
    """Empty if the answer is a 200 whose count (and digest) are what was sent, else what is wrong."""
    if status != 200:
        return f"status {status}: {answer[:200]}" if status else "no answer"
    try:
        got = json.loads(answer)
    except ValueError:
        return f"the answer is not JSON: {answer[:200]!r}"
    if got.get("bytes") != size:
        return f"the server read {got.get('bytes')} bytes of {size}"
    if sha256 is not None and got.get("sha256") != sha256:
        return f"sha256 {got.get('sha256')} is not the sent body's {sha256}"
    return ""
