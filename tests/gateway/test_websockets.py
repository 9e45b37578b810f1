"""WebSockets through the gateway and a worker: auth on the upgrade, messages both ways, every way a socket ends.

Also auth policies a plugin changes after start-up (the gateways follow without a restart).
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from kernel.testing import KernelProcess, make_package, wait_for, wait_for_async
from tests import plugins
from tests.conftest import TOKEN, base_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    root = tmp_path_factory.mktemp("chat-site")
    make_package(root, "kernel-test-chat", {"test_chat": plugins.CHAT}, {"chat": "test_chat:plugin"})
    k = KernelProcess(base_config(), paths=[root]).start()
    yield k
    k.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        yield s


def ws_url(kernel: KernelProcess, path: str) -> str:
    return kernel.url.replace("http://", "ws://") + path


def upgrade(kernel: KernelProcess, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A raw WebSocket handshake: a refused one is an HTTP answer whose body can be read."""
    key = base64.b64encode(os.urandom(16)).decode()
    hs = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key}
    return httpx.get(kernel.url + path, headers={**hs, **(headers or {})}, timeout=10)


def assert_refusal(resp: httpx.Response, status: int, name: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["name"] == name
    assert body["response"] == {"statusCode": status}


async def test_text_and_bytes_round_trip_with_the_chosen_subprotocol(
    chat: KernelProcess, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH, protocols=["x", "kernel.v1"]) as ws:
        assert ws.protocol == "kernel.v1"
        await ws.send_str("héllo")
        assert await ws.receive_str() == "héllo"
        blob = bytes(range(256)) * 1024
        await ws.send_bytes(blob)
        assert await ws.receive_bytes() == blob
        await ws.send_str("who")
        assert await ws.receive_str() == "external:ci-bot"  # the principal reached the handler


def test_the_upgrade_needs_credentials_like_any_request(chat: KernelProcess) -> None:
    resp = upgrade(chat, "/api/chat/echo")
    assert_refusal(resp, 401, "AuthenticationError")
    assert resp.headers["www-authenticate"] == "Bearer"
    assert_refusal(upgrade(chat, "/api/chat/echo", {"Authorization": "Bearer wrong"}), 401, "AuthenticationError")
    assert_refusal(upgrade(chat, "/api/nobody/echo", AUTH), 404, "NotFoundError")
    assert_refusal(upgrade(chat, "/api/chat/public/%2E%2E/echo"), 400, "InputError")


async def test_an_open_policy_opens_the_socket(chat: KernelProcess, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(ws_url(chat, "/api/chat/public/echo")) as ws:
        await ws.send_str("who")
        assert await ws.receive_str() == ""  # nobody


def test_a_plugin_refusing_the_handshake_answers_in_the_error_shape(chat: KernelProcess) -> None:
    assert_refusal(upgrade(chat, "/api/chat/refuse", AUTH), 403, "NotAllowedError")
    resp = upgrade(chat, "/api/chat/invalid", AUTH)
    assert_refusal(resp, 400, "InputError")
    assert "?room" in resp.json()["error"]["message"]
    assert_refusal(upgrade(chat, "/api/chat/no-such-socket", AUTH), 404, "NotFoundError")


async def test_close_codes_travel_both_ways(chat: KernelProcess, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH) as ws:
        await ws.send_str("close")
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4000 and msg.extra == "bye"

    async def closes_seen() -> int:
        async with session.get(chat.url + "/api/chat/stats", headers=AUTH) as r:
            return len((await r.json())["closed_by_client"])

    ws = await session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH)
    await ws.send_str("ping")
    assert await ws.receive_str() == "ping"
    await ws.close(code=4321)

    async def handler_saw_the_code() -> bool:  # the handler reads websocket.disconnect, with the client's code
        async with session.get(chat.url + "/api/chat/stats", headers=AUTH) as r:
            return 4321 in (await r.json())["closed_by_client"]

    await wait_for_async(handler_saw_the_code, message="the client's close code never reached the handler")


async def test_a_handler_that_raises_closes_with_1011_and_the_worker_lives(
    chat: KernelProcess, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH) as ws:
        await ws.send_str("boom")
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1011
    async with session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH) as ws:
        await ws.send_str("still here")
        assert await ws.receive_str() == "still here"
    assert "the chat handler broke" in chat.output()


async def test_many_messages_arrive_all_and_in_order(chat: KernelProcess, session: aiohttp.ClientSession) -> None:
    n = 2000  # far more than the credit window: the sender waits for the gateway, nothing is dropped
    async with session.ws_connect(ws_url(chat, f"/api/chat/flood?n={n}"), headers=AUTH) as ws:
        got = [int(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
        assert got == list(range(n))
        assert ws.close_code == 1000

    async with session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH) as ws:
        for i in range(n):  # the client side: credit from the worker paces the gateway
            await ws.send_str(str(i))
        assert [int(await ws.receive_str()) for _ in range(n)] == list(range(n))


async def test_a_dying_worker_closes_its_sockets_with_1012_and_others_stay_served(
    chat: KernelProcess, session: aiohttp.ClientSession
) -> None:
    bystander = await session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH)
    victim = await session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH)
    await victim.send_str("die")
    msg = await victim.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1012  # service restart: reconnect
    msg = await bystander.receive()  # same worker: the same fate, never a hang
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1012

    async def reconnects() -> bool:
        async with session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH) as ws:
            await ws.send_str("back")
            return await ws.receive_str() == "back"

    await wait_for_async(reconnects, timeout=20, ignore=(aiohttp.WSServerHandshakeError,))


def test_auth_policies_changed_at_run_time_reach_the_gateway(chat: KernelProcess) -> None:
    with httpx.Client(base_url=chat.url, timeout=10) as c:
        assert c.get("/api/chat/dyn").status_code == 401
        assert c.post("/api/chat/policies/open", params={"path": "/dyn"}, headers=AUTH).text == "opened"
        wait_for(lambda: c.get("/api/chat/dyn").status_code == 200, message="the new open policy never applied")
        assert c.post("/api/chat/policies/close", params={"path": "/dyn"}, headers=AUTH).text == "closed"
        wait_for(lambda: c.get("/api/chat/dyn").status_code == 401, message="the removed policy still applies")
        assert c.post("/api/chat/policies/close", params={"path": "/dyn"}, headers=AUTH).text == "none"
    assert "plugin 'chat' changed its auth policies" in chat.output()


async def test_a_stopping_kernel_closes_open_sockets_with_1001(tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-chat", {"test_chat": plugins.CHAT}, {"chat": "test_chat:plugin"})
    k = KernelProcess(base_config(), paths=[tmp_path]).start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(ws_url(k, "/api/chat/echo"), headers=AUTH)
            await ws.send_str("hi")
            assert await ws.receive_str() == "hi"
            assert k.proc is not None
            k.proc.send_signal(15)
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
    finally:
        assert k.stop() == 0


async def test_a_message_over_the_limit_is_refused_by_the_gateway(
    chat: KernelProcess, session: aiohttp.ClientSession
) -> None:
    """A message over 16 MiB never reaches the worker: the gateway closes with 1009 (message too big)."""
    async with session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH, max_msg_size=0) as ws:
        await ws.send_bytes(b"x" * (16 * 1024 * 1024 + 1))
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009
    async with session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=AUTH) as ws:
        await ws.send_str("fine")
        assert await ws.receive_str() == "fine"


async def test_hypercorn_carries_sockets_too(tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-chat", {"test_chat": plugins.CHAT}, {"chat": "test_chat:plugin"})
    with KernelProcess(base_config(server="hypercorn"), paths=[tmp_path]) as k:
        assert_refusal(upgrade(k, "/api/chat/echo"), 401, "AuthenticationError")
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(ws_url(k, "/api/chat/echo"), headers=AUTH)
            await ws.send_bytes(b"\x00\x01")
            assert await ws.receive_bytes() == b"\x00\x01"
            await ws.close(code=4321)

            async def handler_saw_a_close() -> bool:  # hypercorn reports 1006 for any client close, not its code
                async with session.get(k.url + "/api/chat/stats", headers=AUTH) as r:
                    return (await r.json())["closed_by_client"] == [1006]

            await wait_for_async(handler_saw_a_close, message="the client's close never reached the handler")


async def test_a_socket_has_a_request_id_and_one_access_log_line(
    chat: KernelProcess, session: aiohttp.ClientSession
) -> None:
    headers = {**AUTH, "X-Request-Id": "ws-trace-7"}
    async with session.ws_connect(ws_url(chat, "/api/chat/echo"), headers=headers) as ws:
        assert ws._response.headers["x-request-id"] == "ws-trace-7"  # on the handshake's answer
        await ws.send_str("hi")
        assert (await ws.receive()).data == "hi"
    line = await wait_for_async(
        lambda: next(
            (ln for ln in chat.output().splitlines() if "request_id=ws-trace-7" in ln and "kernel.access" in ln), None
        ),
        10,
        "no access-log line for the socket",
    )
    assert "WEBSOCKET /api/chat/echo status=101" in line and "plugin_id=chat" in line and "principal=service" in line
