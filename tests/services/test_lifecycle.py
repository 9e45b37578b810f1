"""``core.lifecycle``: before-shutdown hooks run while the kernel still takes requests, shutdown hooks after."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse

from kernel.api import HttpRouter, Lifecycle, core_services, create_plugin
from kernel.testing import KernelProcess, TestBackend, make_package, start_test_backend, wait_for
from tests import plugins
from tests.conftest import base_config


def test_before_shutdown_runs_while_requests_still_flow_in_a_real_kernel(tmp_path: Path) -> None:
    site = make_package(tmp_path / "site", "kernel-test-farewell", {"test_farewell": plugins.FAREWELL},
                        {"farewell": "test_farewell:plugin"})  # fmt: skip
    record = tmp_path / "record"
    config = {**base_config(), "farewell": {"record": str(record)}}
    kernel = KernelProcess(config, paths=[site]).start()
    try:
        wait_for(lambda: kernel.readiness()[0] == 200, timeout=10, message="ready")
    finally:
        assert kernel.stop() == 0, kernel.output()
    # the hook's own request to the kernel was answered: the gateway had not stopped taking requests;
    # its readiness already said 503, so that load balancers turn away before the drain
    assert record.read_text().splitlines() == ["before_shutdown 200 ready 503", "shutdown"], kernel.output()


async def test_before_shutdown_runs_while_requests_still_flow_in_the_test_backend() -> None:
    plugin = create_plugin("farewell")
    backends: list[TestBackend] = []
    seen: list[str] = []

    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    @plugin.init(router=core_services.http_router, lifecycle=core_services.lifecycle)
    async def init(router: HttpRouter, lifecycle: Lifecycle) -> None:
        async def before_shutdown() -> None:
            seen.append(f"before_shutdown {(await backends[0].client.get('/api/farewell/ping')).status_code}")

        lifecycle.add_before_shutdown_hook(before_shutdown)
        lifecycle.add_shutdown_hook(lambda: seen.append("shutdown"))
        router.add_route("/ping", ping)
        router.add_auth_policy("/ping", allow="unauthenticated")

    backend = await start_test_backend([plugin])
    backends.append(backend)
    assert (await backend.client.get("/api/farewell/ping")).text == "pong"
    await backend.stop()
    assert seen == ["before_shutdown 200", "shutdown"]
