"""WebSockets through the proxy, in a real kernel, to a real WebSocket upstream on 127.0.0.1.

One kernel (the default server, ``auto``: WebSockets on uvicorn's protocol) serves every endpoint
(module fixture ``env``); one more on hypercorn shows a caller's close reaching the upstream as 1001.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from proxy_support import AUTH, assert_error, kernel_config, make_ca, refused_url, start_kernel
from ws_upstream import WsUpstream, header

from kernel.testing import KernelProcess, wait_for_async

OPEN = "dangerously-allow-unauthenticated"


@dataclass
class Env:
    kernel: KernelProcess
    up: WsUpstream

    def ws(self, path: str) -> str:
        return self.kernel.url.replace("http://", "ws://") + "/api/proxy" + path


def endpoints(up: WsUpstream, tls: WsUpstream, ca: Path) -> dict[str, Any]:
    return {
        "/ws": {"target": f"{up.url}/base", "ws": True, "headers": {"X-Custom-Source": "kernel"}},
        "/ws-open": {"target": up.url, "ws": True, "credentials": OPEN},
        "/ws-forward": {"target": up.url, "ws": True, "credentials": "forward"},
        "/ws-post-only": {"target": up.url, "ws": True, "allowedMethods": ["POST"]},
        "/plain": {"target": up.url},
        "/ws-refused": {"target": refused_url(), "ws": True, "retries": {"count": 0}},
        "/ws-failover": {"target": [refused_url(), up.url], "ws": True},
        "/wss": {"target": tls.url, "ws": True, "ca": str(ca)},
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("proxy-ws")
    ca, server_tls = make_ca(root / "tls")
    up, tls = WsUpstream().start(), WsUpstream(tls=server_tls).start()
    kernel = start_kernel(kernel_config(root, {"endpoints": endpoints(up, tls, ca)}))
    yield Env(kernel, up)
    kernel.stop()
    up.stop()
    tls.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        yield s


def upgrade(env: Env, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A raw WebSocket handshake: a refused one is an HTTP answer whose body can be read."""
    key = base64.b64encode(os.urandom(16)).decode()
    hs = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key}
    return httpx.get(f"{env.kernel.url}/api/proxy{path}", headers={**hs, **(headers or {})}, timeout=20)


# ---------------------------------------------------------------------------- messages, subprotocols, headers


async def test_text_and_bytes_echo_with_the_subprotocol_the_upstream_chose(
    env: Env, session: aiohttp.ClientSession
) -> None:
    url = env.ws("/ws/room/7?x=1")
    async with session.ws_connect(url, headers=AUTH, protocols=["x", "chat.v2", "chat.v1"]) as ws:
        assert ws.protocol == "chat.v2"  # the upstream's choice among the caller's offers
        await ws.send_str("héllo")
        assert await ws.receive_str() == "héllo"
        blob = os.urandom(1 << 20)
        await ws.send_bytes(blob)
        assert await ws.receive_bytes() == blob
    hs = env.up.handshakes[-1]
    assert hs["path"] == "/base/room/7?x=1" and hs["protocol"] == "chat.v2"
    assert header(hs, "sec-websocket-protocol") == ["x,chat.v2,chat.v1"]
    assert header(hs, "x-custom-source") == ["kernel"]
    assert header(hs, "authorization") == []  # credentials: require, not forwarded
    assert header(hs, "x-forwarded-for") == ["127.0.0.1"] and header(hs, "x-forwarded-proto") == ["http"]
    assert header(hs, "x-forwarded-host") == [f"127.0.0.1:{env.kernel.port}"]
    assert header(hs, "host") == [f"127.0.0.1:{env.up.port}"]


async def test_forward_passes_the_callers_authorization_upstream(env: Env, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(env.ws("/ws-forward/f"), headers=AUTH) as ws:
        await ws.send_str("hi")
        assert await ws.receive_str() == "hi"
    assert header(env.up.handshakes[-1], "authorization") == [AUTH["authorization"]]


async def test_many_messages_arrive_all_and_in_order(env: Env, session: aiohttp.ClientSession) -> None:
    n = 3000  # far more than the kernel's credit window: the relay waits, nothing is dropped
    async with session.ws_connect(env.ws(f"/ws/flood?n={n}"), headers=AUTH) as ws:
        got = [int(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
        assert got == list(range(n))
        assert ws.close_code == 1000
    async with session.ws_connect(env.ws("/ws/echo"), headers=AUTH) as ws:
        for i in range(n):
            await ws.send_str(str(i))
        assert [int(await ws.receive_str()) for _ in range(n)] == list(range(n))


async def test_wss_with_a_ca_bundle_and_failover_over_a_refused_target(
    env: Env, session: aiohttp.ClientSession
) -> None:
    for route in ("/wss/t", "/ws-failover/f"):
        async with session.ws_connect(env.ws(route), headers=AUTH) as ws:
            await ws.send_str(route)
            assert await ws.receive_str() == route


# ---------------------------------------------------------------------------- credentials and refusals


def test_require_without_credentials_is_401_before_any_upstream_call(env: Env) -> None:
    before = len(env.up.handshakes)
    assert_error(upgrade(env, "/ws/x"), 401, "AuthenticationError")
    assert_error(upgrade(env, "/ws/x", {"authorization": "Bearer wrong"}), 401, "AuthenticationError")
    assert len(env.up.handshakes) == before


async def test_an_open_endpoint_needs_no_credentials(env: Env, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(env.ws("/ws-open/o")) as ws:
        await ws.send_str("anyone")
        assert await ws.receive_str() == "anyone"


def test_an_endpoint_without_ws_answers_404_and_methods_still_apply(env: Env) -> None:
    assert "ws: true" in assert_error(upgrade(env, "/plain/x", AUTH), 404, "NotFoundError")
    assert_error(upgrade(env, "/nowhere/x", AUTH), 404, "NotFoundError")
    assert_error(upgrade(env, "/ws-post-only/x", AUTH), 405, "MethodNotAllowedError")


def test_an_upstream_refusing_the_handshake_is_502(env: Env) -> None:
    message = assert_error(upgrade(env, "/ws/refuse", AUTH), 502, "BadGatewayError")
    assert "'/ws'" in message and "refused the WebSocket (HTTP 403" in message
    assert "127.0.0.1" not in message  # the target is logged, not answered
    message = assert_error(upgrade(env, "/ws-refused/x", AUTH), 502, "BadGatewayError")
    assert "unreachable" in message


# ---------------------------------------------------------------------------- closing


async def test_the_upstreams_close_code_and_reason_reach_the_caller(env: Env, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(env.ws("/ws/c"), headers=AUTH) as ws:
        await ws.send_str("close")
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE and (msg.data, msg.extra) == (4000, "bye")


async def test_the_callers_close_code_reaches_the_upstream(env: Env, session: aiohttp.ClientSession) -> None:
    ws = await session.ws_connect(env.ws("/ws/leaving"), headers=AUTH)
    await ws.send_str("ping")
    assert await ws.receive_str() == "ping"
    await ws.close(code=4321, message=b"done")
    closed = await wait_for_async(lambda: env.up.closes.get("/base/leaving"), message="the upstream was never closed")
    assert closed == (4321, "done")


async def test_an_upstream_dying_mid_session_closes_the_caller_with_1014(
    env: Env, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(env.ws("/ws/d"), headers=AUTH) as ws:
        await ws.send_str("before")
        assert await ws.receive_str() == "before"
        await ws.send_str("die")
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1014
        assert "'/ws' went away" in (msg.extra or "")
    await wait_for_async(lambda: "ended without a close handshake" in env.kernel.output(), message=env.kernel.output)
    async with session.ws_connect(env.ws("/ws/after"), headers=AUTH) as ws:  # the worker lives on
        await ws.send_str("after")
        assert await ws.receive_str() == "after"


async def test_the_callers_close_closes_the_upstream_as_going_away_under_hypercorn(tmp_path: Path) -> None:
    up = WsUpstream().start()
    config = kernel_config(tmp_path, {"endpoints": {"/ws": {"target": up.url, "ws": True, "credentials": OPEN}}})
    config["backend"]["gateway"]["server"] = "hypercorn"
    kernel = start_kernel(config)
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(kernel.url.replace("http://", "ws://") + "/api/proxy/ws/u")
            await ws.send_bytes(b"\x00\x01")
            assert await ws.receive_bytes() == b"\x00\x01"
            await ws.close(code=4321, message=b"done")
        closed = await wait_for_async(lambda: up.closes.get("/u"), message="the upstream was never closed")
        assert closed == (1001, "")  # hypercorn reports 1006 for every caller's close: 1001 (going away) upstream
    finally:
        kernel.stop()
        up.stop()
