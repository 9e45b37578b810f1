"""The client through a real kernel and its proxy plugin (``contrib_plugins/proxy``) to a fake API on 127.0.0.1.

```yaml
proxy:
  endpoints:
    /myawesomeapi: http://127.0.0.1:<fake>                 # credentials: require (the default)
    /open-users: {target: ..., credentials: dangerously-allow-unauthenticated}
    /down: http://127.0.0.1:<a port nobody listens on>
```

Also a plugin (``awesome-users``, a test package) that does what the seed describes: it builds the
client ``from_config`` with a token from ``core.auth`` and lets the client's errors through, which
the kernel answers in its error shape.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from myawesomeapi_client import MyAwesomeApiClient, ResponseError, User
from myawesomeapi_support import USERS, FakeUsersApi, Override

from kernel.api import (
    AuthenticationError,
    BadGatewayError,
    NotAllowedError,
    NotFoundError,
    ServiceUnavailableError,
    merge_config,
)
from kernel.config import Config
from kernel.testing import KernelProcess, make_package

pytest.importorskip("kernel_proxy", reason="the proxy plugin (contrib_plugins/proxy) is not installed")

TOKEN = "s3cret-token-for-myawesomeapi-tests"
RESTRICTED = "token-for-the-hello-plugin-only"

PLUGIN = '''
"""Test plugin ``awesome-users``: MyAwesomeApi through the proxy, as the plugin itself or for the caller."""
from starlette.responses import JSONResponse

from kernel.api import core_services, create_plugin
from myawesomeapi_client import MyAwesomeApiClient

plugin = create_plugin("awesome-users", config_reads=("myAwesomeApi",))


@plugin.init(
    router=core_services.http_router,
    config=core_services.root_config,
    auth=core_services.auth,
    http_auth=core_services.http_auth,
    lifecycle=core_services.lifecycle,
)
async def init(router, config, auth, http_auth, lifecycle):
    async def own_token():
        own = await auth.get_own_service_credentials()
        return await auth.get_plugin_request_token(on_behalf_of=own, target_plugin_id="proxy")

    client = MyAwesomeApiClient.from_config(config, token=own_token)
    lifecycle.add_shutdown_hook(client.close, label="myawesomeapi client")

    async def names(request):
        return JSONResponse({"names": [user.name for user in await client.list_users()]})

    async def user(request):
        caller = await http_auth.credentials(request)
        token = await auth.get_plugin_request_token(on_behalf_of=caller, target_plugin_id="proxy")
        found = await client.with_token(token).get_user(request.path_params["id"])
        return JSONResponse({"name": found.name, "email": found.email})

    router.add_route("/names", names, methods=["GET"])
    router.add_route("/users/{id}", user, methods=["GET"])
'''


@pytest.fixture(scope="module")
def api() -> Iterator[FakeUsersApi]:
    fake = FakeUsersApi().start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def fresh(api: FakeUsersApi) -> None:
    api.users = {k: dict(v) for k, v in USERS.items()}
    api.override = None
    api.seen.clear()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, api: FakeUsersApi) -> Iterator[KernelProcess]:
    root = tmp_path_factory.mktemp("myawesomeapi")
    site = make_package(
        root / "site", "kernel-test-awesome-users", {"awesome_users": PLUGIN}, {"awesome-users": "awesome_users:plugin"}
    )
    nobody = FakeUsersApi()  # a free port nobody listens on
    config = {
        "backend": {
            "gateway": {"requestTimeout": 15},
            "database": {"client": "sqlite", "connection": {"directory": str(root / "data")}},
            "workers": {"heartbeatInterval": 0.2, "heartbeatTimeout": 3, "shutdownGrace": 5, "killTimeout": 2},
            "auth": {
                "externalAccess": [
                    {"type": "static", "options": {"token": TOKEN, "subject": "ci-bot"}},
                    {
                        "type": "static",
                        "options": {"token": RESTRICTED, "subject": "hello-bot"},
                        "accessRestrictions": [{"plugin": "hello"}],
                    },
                ]
            },
        },
        "proxy": {
            "endpoints": {
                "/myawesomeapi": api.url,
                "/open-users": {"target": api.url, "credentials": "dangerously-allow-unauthenticated"},
                "/down": {"target": nobody.url, "retries": {"count": 0}},
            }
        },
    }
    k = KernelProcess(config, paths=[site], env={"KERNEL_ENV": "production"})
    # the plugin's client reads backend.baseUrl: the kernel's own address, known once its port is
    written = yaml.safe_load(k.config_path.read_text())
    k.config_path.write_text(yaml.safe_dump(merge_config(written, {"backend": {"baseUrl": k.url}})))
    k.start(timeout=30)
    yield k
    k.stop()


def _config(kernel: KernelProcess) -> Config:
    """What a plugin's ``root_config`` holds: ``backend.baseUrl`` is the kernel's address."""
    return Config.from_dict({"backend": {"baseUrl": kernel.url}})


@pytest.fixture
async def client(kernel: KernelProcess) -> AsyncIterator[MyAwesomeApiClient]:
    async with MyAwesomeApiClient.from_config(_config(kernel), token=TOKEN) as c:
        yield c


def _user(data: dict[str, object]) -> User:
    return User(name=str(data["name"]), email=str(data["email"]))


async def test_list_users_through_the_proxy(client: MyAwesomeApiClient, api: FakeUsersApi) -> None:
    assert client.api_url.endswith("/api/proxy/myawesomeapi")
    assert await client.list_users() == [_user(u) for u in USERS.values()]
    assert [(s.method, s.path) for s in api.seen] == [("GET", "/users")]
    assert "authorization" not in api.seen[0].headers  # credentials: require: the token stays in the kernel


async def test_get_and_delete_a_user_through_the_proxy(client: MyAwesomeApiClient, api: FakeUsersApi) -> None:
    assert await client.get_user("42") == _user(USERS["42"])
    assert await client.delete_user("42") is True
    with pytest.raises(NotFoundError, match="HTTP 404: no such resource"):
        await client.get_user("42")
    assert [(s.method, s.path) for s in api.seen] == [
        ("GET", "/users/42"),
        ("DELETE", "/users/42"),
        ("GET", "/users/42"),
    ]


async def test_an_id_with_a_slash_reaches_the_api_as_one_segment(client: MyAwesomeApiClient, api: FakeUsersApi) -> None:
    await client.get_user("a/b c")
    assert [s.path for s in api.seen] == ["/users/a%2Fb%20c"]


async def test_without_a_token_the_kernel_answers_401(kernel: KernelProcess, api: FakeUsersApi) -> None:
    async with MyAwesomeApiClient.from_config(_config(kernel)) as c:
        with pytest.raises(AuthenticationError) as caught:
            await c.list_users()
    assert isinstance(caught.value.cause, ResponseError) and caught.value.cause.status == 401
    assert api.seen == []


async def test_a_token_restricted_to_another_plugin_is_403(kernel: KernelProcess, api: FakeUsersApi) -> None:
    async with MyAwesomeApiClient.from_config(_config(kernel), token=RESTRICTED) as c:
        with pytest.raises(NotAllowedError):
            await c.list_users()
    assert api.seen == []


async def test_an_open_endpoint_needs_no_token(kernel: KernelProcess) -> None:
    async with MyAwesomeApiClient.from_config(_config(kernel), proxy_path="/open-users") as c:
        assert await c.get_user("7") == _user(USERS["7"])


async def test_an_unknown_endpoint_is_404(kernel: KernelProcess) -> None:
    async with MyAwesomeApiClient.from_config(_config(kernel), proxy_path="/no-such-endpoint", token=TOKEN) as c:
        with pytest.raises(NotFoundError):
            await c.list_users()


async def test_an_unreachable_api_is_a_bad_gateway(kernel: KernelProcess) -> None:
    async with MyAwesomeApiClient.from_config(_config(kernel), proxy_path="/down", token=TOKEN) as c:
        with pytest.raises(BadGatewayError) as caught:
            await c.list_users()
    assert isinstance(caught.value.cause, ResponseError) and caught.value.cause.status == 502


async def test_an_api_failure_is_service_unavailable(client: MyAwesomeApiClient, api: FakeUsersApi) -> None:
    api.override = Override(500, b'{"message": "database is on fire"}')
    with pytest.raises(ServiceUnavailableError, match="HTTP 500: database is on fire"):
        await client.list_users()


def test_a_plugin_uses_the_client_with_a_token_from_core_auth(kernel: KernelProcess, api: FakeUsersApi) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    resp = httpx.get(f"{kernel.url}/api/awesome-users/names", headers=headers, timeout=20)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"names": [u["name"] for u in USERS.values()]}
    resp = httpx.get(f"{kernel.url}/api/awesome-users/users/7", headers=headers, timeout=20)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"name": USERS["7"]["name"], "email": USERS["7"]["email"]}
    assert all("authorization" not in s.headers for s in api.seen)


def test_the_clients_errors_reach_the_plugins_caller_in_the_kernels_shape(kernel: KernelProcess) -> None:
    resp = httpx.get(
        f"{kernel.url}/api/awesome-users/users/nobody", headers={"authorization": f"Bearer {TOKEN}"}, timeout=20
    )
    assert resp.status_code == 404, resp.text
    body = resp.json()
    assert body["error"]["name"] == "NotFoundError"
    assert body["error"]["message"].startswith("MyAwesomeApi GET /users/nobody failed, HTTP 404")
    assert body["response"] == {"statusCode": 404}
    assert "stack" not in body["error"]


def test_the_readmes_proxy_config_passes_config_check(tmp_path: Path) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "backend": {"baseUrl": "http://localhost:7007"},
                "proxy": {
                    "endpoints": {
                        "/myawesomeapi": {
                            "target": "https://api.myawesomeservice.com/v1",
                            "headers": {"X-Custom-Source": "kernel"},
                            "allowedMethods": ["GET", "DELETE"],
                        }
                    }
                },
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "kernel.cli", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
