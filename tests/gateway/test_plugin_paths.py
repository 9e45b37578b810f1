"""``httpRouter``'s ``getPath`` through a real kernel: every plugin at ``/plugins/<pluginId>``.

A package's ``kernel_http_router_options`` chooses the paths; the gateway routes by them, the
workers serve under them, discovery hands them out, and plugin-to-plugin calls (whose tokens the
gateway checks against the caller's keys, found through discovery) follow them.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from kernel.api import ConfigError, HttpRouterOptions, create_plugin, hookimpl
from kernel.testing import KernelProcess, make_package, start_test_backend
from tests import plugins
from tests.conftest import TOKEN, assert_error_shape, base_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("paths")
    for dist, module, source, plugin_id in (
        ("kernel-test-caller", "test_caller", plugins.CALLER, "caller"),
        ("kernel-test-callee", "test_callee", plugins.CALLEE, "callee"),
        ("kernel-test-serviced", "test_serviced", plugins.SERVICED, "serviced"),
    ):
        make_package(root, dist, {module: source}, {plugin_id: f"{module}:plugin"})
    make_package(root, "kernel-test-paths", {"test_paths": plugins.PLUGIN_PATHS}, {"paths": "test_paths"})
    config = base_config()
    config["backend"]["baseUrl"] = "https://backstage.example.com"
    config["serviced"] = {"greeting": "hi"}
    config["backend"]["database"] = {"connection": {"directory": str(root / "db")}}
    with KernelProcess(config, paths=[root]) as k, httpx.Client(base_url=k.url, timeout=20) as c:
        c.headers["x-kernel-port"] = str(k.port)
        yield c


def test_a_plugin_is_served_at_the_chosen_path_only(client: httpx.Client) -> None:
    assert client.get("/plugins/callee/whoami", headers=AUTH).json() == {
        "type": "service",
        "subject": "external:ci-bot",
        "actor": "",
    }
    assert_error_shape(client.get("/api/callee/whoami", headers=AUTH), 404, "NotFoundError")
    assert_error_shape(client.get("/plugins/nobody/whoami", headers=AUTH), 404, "NotFoundError")
    # the auth policies are the plugin's, relative to its path: /show is open, /whoami is not
    assert client.get("/plugins/serviced/show").status_code == 200
    assert_error_shape(client.get("/plugins/callee/whoami"), 401, "AuthenticationError")


def test_discovery_hands_out_the_chosen_paths(client: httpx.Client) -> None:
    shown = client.get("/plugins/serviced/show").json()
    assert shown["internal"] == f"http://127.0.0.1:{client.headers['x-kernel-port']}/plugins/catalog"
    assert shown["external"] == "https://backstage.example.com/plugins/catalog"


def test_plugins_call_each_other_at_the_chosen_paths(client: httpx.Client) -> None:
    got = client.get("/plugins/caller/call", params={"target": "callee", "path": "/whoami"}).json()
    assert got == {"status": 200, "body": {"type": "service", "subject": "plugin:caller", "actor": ""}}
    # the plugin's keys are published under its path too
    assert client.get("/plugins/caller/.backstage/auth/v1/jwks.json").json()["keys"]


class _BadPaths:
    @hookimpl
    def kernel_http_router_options(self) -> HttpRouterOptions:
        return HttpRouterOptions(get_path=lambda plugin_id: f"plugins/{plugin_id}/")


async def test_a_path_function_answering_nonsense_stops_the_start_naming_the_plugin() -> None:
    plugin = create_plugin("wrongly-placed")

    @plugin.init()
    def init() -> None:
        pass

    with pytest.raises(ConfigError, match="getPath gave 'plugins/wrongly-placed/' for plugin 'wrongly-placed'"):
        async with start_test_backend([plugin, _BadPaths()]):
            pass
