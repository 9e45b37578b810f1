"""Request handlers shared by the benchmark plugin and the in-process baseline app.

Only Starlette is imported here: the baseline must not pay for the kernel.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.websockets import WebSocket

#: the streamed body is one block sent again and again: constant memory at any size
BLOCK_SIZE = 64 * 1024
MAX_BLOCK = 4 * 1024 * 1024
MAX_DOWNLOAD = 64 * 1024**3


@functools.lru_cache(maxsize=4)
def _piece(block: int) -> bytes:
    return b"x" * block  # made on first use: an idle worker does not carry it


async def hello(request: Request) -> Response:
    """Small JSON, the same as the example plugin's ``/hello``."""
    name = request.query_params.get("name", "world")
    return JSONResponse({"message": f"hello, {name}"})


async def echo(request: Request) -> Response:
    """Parse the posted JSON and send it back."""
    return JSONResponse(await request.json())


async def _blocks(size: int, block: int) -> AsyncIterator[bytes]:
    piece = _piece(block)
    full, rest = divmod(size, block)
    for _ in range(full):
        yield piece
    if rest:
        yield piece[:rest]


async def download(request: Request) -> Response:
    """``?size=N`` bytes streamed in ``?block=B`` byte pieces (default 64 KiB), no Content-Length."""
    try:
        size = int(request.query_params.get("size", "1048576"))
        block = int(request.query_params.get("block", str(BLOCK_SIZE)))
    except ValueError:
        size = block = -1
    if not 0 <= size <= MAX_DOWNLOAD or not 1 <= block <= MAX_BLOCK:
        return JSONResponse({"error": f"size must be 0..{MAX_DOWNLOAD}, block 1..{MAX_BLOCK}"}, status_code=400)
    return StreamingResponse(_blocks(size, block), media_type="application/octet-stream")


async def upload(request: Request) -> Response:
    """Read the body as a stream and discard it: ``{"bytes": N}``, and ``"sha256"`` of it with ``?sha256=1``.

    Constant memory at any size; the digest is asked for only (it costs about a second of CPU per GiB).
    """
    digest = hashlib.sha256() if request.query_params.get("sha256") == "1" else None
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if digest is not None:
            digest.update(chunk)
    answer: dict[str, int | str] = {"bytes": size}
    if digest is not None:
        answer["sha256"] = digest.hexdigest()
    return JSONResponse(answer)


async def ws_echo(websocket: WebSocket) -> None:
    """Every message sent back as it came (text or bytes) until the client closes."""
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message.get("bytes") or b"")
