"""The dashboard's routes over ASGI with a stand-in gateway: the page's files, who is an operator, on and off.

What needs no worker is checked here, on the routes as ``kernel_root_routes`` gives them, behind
the gateway's error handling; ``test_snapshot.py`` and ``test_browser.py`` go through a real kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from starlette.routing import Router

from kernel.config import Config, LiveConfig
from kernel.dashboard import kernel_root_routes
from kernel.errors import AuthenticationError
from kernel.gateway.middleware.errors import ErrorMiddleware
from kernel.hooktypes import Headers
from kernel.protocol import PluginState, Principal, ProcessSample, Stats

OPERATOR = Principal("service", "external:ops")
USER = Principal("user", "user:default/alice")


class View:
    """A ``GatewayView`` with one ready plugin, whose ``authenticate`` maps tokens to principals."""

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return True, {}

    def plugin_states(self) -> Sequence[PluginState]:
        return [PluginState("echo", "ready", [], ["echo.0.1"], worker_states={"echo.0.1": "ready"})]

    def recent_errors(self) -> list[dict[str, Any]]:
        return []

    def stats(self) -> Stats | None:
        return Stats(100.0, [ProcessSample("worker", "echo.0.1", 4321, "echo", "ready", 90.0, 1 << 20)], {}, {})

    async def authenticate(self, headers: Headers, plugin_id: str = "") -> Principal:
        token = dict(headers).get(b"authorization", b"").removeprefix(b"Bearer ")
        principals = {b"ops": OPERATOR, b"alice": USER}
        if token not in principals:
            raise AuthenticationError("Missing credentials" if not token else "Invalid credentials")
        return principals[token]


def client(config: LiveConfig) -> httpx.AsyncClient:
    app = ErrorMiddleware(Router(routes=list(kernel_root_routes(gateway=View(), config=config))))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kernel")


def live(dashboard: dict[str, Any] | None) -> LiveConfig:
    return LiveConfig(Config.from_dict({"backend": {"dashboard": dashboard}} if dashboard is not None else {}))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_page_and_its_files_are_served_and_hold_no_data() -> None:
    async with client(live({"operators": ["external:ops"]})) as c:
        page = await c.get("/.kernel/dashboard")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
        # the shell: its script and style sheet as files (the CSP allows no inline ones), no figure
        assert '<script src="dashboard/static/dashboard.js" defer></script>' in page.text
        assert '<link rel="stylesheet" href="dashboard/static/dashboard.css">' in page.text
        assert "<style" not in page.text and "<script>" not in page.text and " style=" not in page.text
        assert "echo" not in page.text and "4321" not in page.text
        script = await c.get("/.kernel/dashboard/static/dashboard.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert "sessionStorage" in script.text and "innerHTML" not in script.text  # values go in as text
        css = await c.get("/.kernel/dashboard/static/dashboard.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        for missing in ("index.html", "nothing.js"):  # only the files it ships, looked up by name
            resp = await c.get(f"/.kernel/dashboard/static/{missing}")
            assert resp.status_code == 404 and resp.json()["error"]["name"] == "NotFoundError"


async def test_only_a_listed_operator_reads_the_snapshot() -> None:
    async with client(live({"operators": ["external:ops"]})) as c:
        assert (await c.get("/.kernel/dashboard/v1/snapshot")).status_code == 401
        refused = await c.get("/.kernel/dashboard/v1/snapshot", headers=auth("alice"))
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == (
            "'user:default/alice' is not an operator: only the principals of backend.dashboard.operators may read "
            "the dashboard"
        )
        ok = await c.get("/.kernel/dashboard/v1/snapshot", headers=auth("ops"))
        assert ok.status_code == 200
        echo = ok.json()["plugins"][0]
        assert echo["id"] == "echo" and echo["workers"][0]["pid"] == 4321


async def test_nobody_is_an_operator_until_one_is_configured_and_a_reload_applies_at_once() -> None:
    config = live(None)
    async with client(config) as c:
        refused = await c.get("/.kernel/dashboard/v1/snapshot", headers=auth("ops"))
        assert refused.status_code == 403
        assert refused.json()["error"]["message"].startswith("No operator is configured: list the principals")
        assert "backend.dashboard.operators" in refused.json()["error"]["message"]
        await config.replace(Config.from_dict({"backend": {"dashboard": {"operators": ["user:default/alice"]}}}))
        assert (await c.get("/.kernel/dashboard/v1/snapshot", headers=auth("alice"))).status_code == 200
        assert (await c.get("/.kernel/dashboard/v1/snapshot", headers=auth("ops"))).status_code == 403


async def test_disabled_the_page_and_the_snapshot_are_404() -> None:
    async with client(live({"enabled": False, "operators": ["external:ops"]})) as c:
        for path in ("/.kernel/dashboard", "/.kernel/dashboard/static/dashboard.js", "/.kernel/dashboard/v1/snapshot"):
            resp = await c.get(path, headers=auth("ops"))
            assert resp.status_code == 404, path
            assert resp.json()["error"] == {"name": "NotFoundError", "message": f"No route for GET {path}"}
