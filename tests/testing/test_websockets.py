"""WebSockets through the in-process test backend: the gateway's checks, the plugin's socket, the close codes."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

from kernel.testing import WebSocketDenialResponse, mock_credentials, start_test_backend
from tests import plugins
from tests.conftest import assert_error_shape, fixture_plugin

USER = mock_credentials.user.header("user:default/jane")


async def test_text_bytes_json_and_the_subprotocol() -> None:
    backend = await start_test_backend([fixture_plugin(plugins.CHAT)])
    try:
        async with backend.websocket_connect("/api/chat/echo", headers=USER, subprotocols=["kernel.v1"]) as ws:
            assert ws.accepted_subprotocol == "kernel.v1"
            await ws.send_text("hello")
            assert await ws.receive_text() == "hello"
            await ws.send_bytes(b"\x00\x01")
            assert await ws.receive_bytes() == b"\x00\x01"
            await ws.send_json({"a": 1})
            assert await ws.receive_json() == {"a": 1}
            await ws.send_text("who")  # the gateway's principal reached the plugin
            assert await ws.receive_text() == "user:default/jane"
    finally:
        await backend.stop()


async def test_the_servers_close_code_and_many_messages() -> None:
    async with start_test_backend([fixture_plugin(plugins.CHAT)]) as backend:
        async with backend.websocket_connect("/api/chat/echo", headers=USER) as ws:
            await ws.send_text("close")
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_text()
            assert (closed.value.code, closed.value.reason) == (4000, "bye")
        async with backend.websocket_connect("/api/chat/flood?n=200", headers=USER) as ws:
            assert [await ws.receive_text() for _ in range(200)] == [str(i) for i in range(200)]


async def test_the_clients_close_code_reaches_the_plugin() -> None:
    async with start_test_backend([fixture_plugin(plugins.CHAT)]) as backend:
        async with backend.websocket_connect("/api/chat/echo", headers=USER) as ws:
            await ws.send_text("ping")
            assert await ws.receive_text() == "ping"
            await ws.close(4321)
        stats = (await backend.client.get("/api/chat/stats", headers=USER)).json()
        assert stats["closed_by_client"][-1] == 4321


async def test_the_gateway_refuses_before_the_plugin() -> None:
    async with start_test_backend([fixture_plugin(plugins.CHAT)]) as backend:
        with pytest.raises(WebSocketDenialResponse) as denied:
            async with backend.websocket_connect("/api/chat/echo"):
                pass
        assert_error_shape(denied.value, 401, "AuthenticationError")
        async with backend.websocket_connect("/api/chat/public/echo") as ws:  # an open policy: no credentials
            await ws.send_text("hi")
            assert await ws.receive_text() == "hi"
        with pytest.raises(WebSocketDenialResponse) as missing:
            async with backend.websocket_connect("/api/nobody/echo", headers=USER):
                pass
        assert missing.value.status_code == 404
        with pytest.raises(WebSocketDisconnect):
            async with backend.websocket_connect("/api/chat/refuse", headers=USER):
                pass
