"""The client against a fake API on 127.0.0.1 that stands where the kernel's proxy would be.

The fake serves the seed's endpoints under ``/api/proxy/myawesomeapi``, and can answer any status
and body (the kernel's error shape included), so the error mapping is checked here exhaustively;
``test_myawesomeapi_client_proxy`` runs the same client through a real kernel and proxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from myawesomeapi_client import DEFAULT_PROXY_PATH, MyAwesomeApi, MyAwesomeApiClient, ResponseError, TokenSource, User
from myawesomeapi_support import USERS, FakeUsersApi, Override, kernel_error

from kernel.api import (
    AuthenticationError,
    BadGatewayError,
    ConfigError,
    ConflictError,
    GatewayTimeoutError,
    InputError,
    KernelError,
    NotAllowedError,
    NotFoundError,
    NotImplementedError,
    ServiceUnavailableError,
)
from kernel.config import Config

PREFIX = "/api/proxy/myawesomeapi"


@pytest.fixture(scope="module")
def api() -> Iterator[FakeUsersApi]:
    fake = FakeUsersApi(prefix=PREFIX).start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def fresh(api: FakeUsersApi) -> None:
    """Every test starts with the seed's users, no override, nothing seen."""
    api.users = {k: dict(v) for k, v in USERS.items()}
    api.override, api.delete_answer, api.delay = None, b"true", 0.0
    api.seen.clear()


@pytest.fixture
async def client(api: FakeUsersApi) -> AsyncIterator[MyAwesomeApiClient]:
    async with MyAwesomeApiClient(api.url, token="user-token") as c:
        yield c


def _user(data: dict[str, object]) -> User:
    return User(name=str(data["name"]), email=str(data["email"]))


# ---------------------------------------------------------------------------- where it calls


def test_from_config_is_the_backend_base_url_plus_the_proxy_path() -> None:
    config = Config.from_dict({"backend": {"baseUrl": "https://backstage.example.com/"}})
    assert MyAwesomeApiClient.from_config(config).api_url == "https://backstage.example.com/api/proxy/myawesomeapi"
    assert MyAwesomeApiClient.from_config(config).url == "https://backstage.example.com"
    assert DEFAULT_PROXY_PATH == "/myawesomeapi"
    assert (
        MyAwesomeApiClient.from_config(config, proxy_path="/my-api").api_url
        == "https://backstage.example.com/api/proxy/my-api"
    )
    configured = Config.from_dict(
        {
            "backend": {"baseUrl": "http://localhost:7007", "gateway": {"mount": "/backend"}},
            "myAwesomeApi": {"proxyPath": "awesome/v1"},
        }
    )
    assert MyAwesomeApiClient.from_config(configured).api_url == "http://localhost:7007/backend/proxy/awesome/v1"
    assert MyAwesomeApiClient.from_config(configured, proxy_path="x").api_url == "http://localhost:7007/backend/proxy/x"


def test_from_config_needs_the_backend_base_url() -> None:
    with pytest.raises(ConfigError, match=r"backend\.baseUrl"):
        MyAwesomeApiClient.from_config(Config.from_dict({"backend": {}}))


def test_the_client_is_the_seeds_interface(api: FakeUsersApi) -> None:
    typed: MyAwesomeApi = MyAwesomeApiClient(api.url)  # mypy checks the structure; here: the attributes
    assert all(callable(getattr(typed, m)) for m in ("list_users", "get_user", "delete_user"))


# ---------------------------------------------------------------------------- the seed's three calls


async def test_list_users(client: MyAwesomeApiClient, api: FakeUsersApi) -> None:
    users = await client.list_users()
    assert users == [_user(u) for u in USERS.values()]
    assert all(isinstance(u, User) for u in users)
    assert [(s.method, s.path) for s in api.seen] == [("GET", f"{PREFIX}/users")]


async def test_get_user_percent_encodes_the_id(client: MyAwesomeApiClient, api: FakeUsersApi) -> None:
    assert await client.get_user("42") == _user(USERS["42"])
    assert await client.get_user("a/b c") == _user(USERS["a/b c"])
    assert [s.path for s in api.seen] == [f"{PREFIX}/users/42", f"{PREFIX}/users/a%2Fb%20c"]


@pytest.mark.parametrize("bad", ["", ".", ".."])
async def test_an_id_no_url_can_carry_is_refused_before_any_request(
    client: MyAwesomeApiClient, api: FakeUsersApi, bad: str
) -> None:
    with pytest.raises(InputError, match="Invalid user id"):
        await client.get_user(bad)
    with pytest.raises(InputError):
        await client.delete_user(bad)
    assert api.seen == []


async def test_delete_user_then_it_is_gone(client: MyAwesomeApiClient, api: FakeUsersApi) -> None:
    assert await client.delete_user("7") is True
    assert "7" not in api.users
    with pytest.raises(NotFoundError, match=r"MyAwesomeApi GET /users/7 failed, HTTP 404: no such resource"):
        await client.get_user("7")
    with pytest.raises(NotFoundError):
        await client.delete_user("7")


@pytest.mark.parametrize(("answer", "result"), [(b"false", False), (b"true", True), (b"", True)])
async def test_delete_user_answers_the_apis_boolean(
    client: MyAwesomeApiClient, api: FakeUsersApi, answer: bytes, result: bool
) -> None:
    api.delete_answer = answer  # b"": 204 No Content
    assert await client.delete_user("42") is result


# ---------------------------------------------------------------------------- the token


async def test_the_token_is_sent_as_a_bearer_token(api: FakeUsersApi) -> None:
    async def from_auth_service() -> str:
        return "async-token"

    cases: list[tuple[TokenSource, str | None]] = [
        ("plain", "Bearer plain"),
        (lambda: "sync-token", "Bearer sync-token"),
        (from_auth_service, "Bearer async-token"),
        (None, None),
    ]
    for token, header in cases:
        async with MyAwesomeApiClient(api.url, token=token) as c:
            await c.list_users()
        assert api.seen[-1].headers.get("authorization") == header
        assert api.seen[-1].headers["accept"] == "application/json"


async def test_with_token_shares_the_session_and_sends_its_own_token(api: FakeUsersApi) -> None:
    async with aiohttp.ClientSession() as session:
        own = MyAwesomeApiClient(api.url, token="service-token", session=session)
        for_alice = own.with_token("alice-token")
        await for_alice.get_user("42")
        await own.get_user("42")
        await own.close()  # a session handed in belongs to the caller: still open
        assert not session.closed
        await for_alice.list_users()
    assert [s.headers["authorization"] for s in api.seen] == [
        "Bearer alice-token",
        "Bearer service-token",
        "Bearer alice-token",
    ]


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "body", "error", "says"),
    [
        (
            401,
            kernel_error("AuthenticationError", "Missing credentials", 401),
            AuthenticationError,
            "HTTP 401: Missing credentials",
        ),
        (
            403,
            kernel_error("NotAllowedError", "Not allowed to reach 'proxy'", 403),
            NotAllowedError,
            "Not allowed to reach",
        ),
        (400, b'{"message": "bad filter"}', InputError, "HTTP 400: bad filter"),
        (404, b"", NotFoundError, "HTTP 404"),
        (409, b'{"message": "user exists"}', ConflictError, "user exists"),
        (422, b"{}", InputError, "HTTP 422"),
        (405, kernel_error("MethodNotAllowedError", "DELETE is not allowed", 405), InputError, "DELETE is not allowed"),
        (429, b"slow down", ServiceUnavailableError, "HTTP 429"),
        (500, b"<html>oops</html>", ServiceUnavailableError, "HTTP 500"),
        (501, b"", NotImplementedError, "HTTP 501"),
        (
            502,
            kernel_error("BadGatewayError", "upstream refused the connection", 502),
            BadGatewayError,
            "refused",
        ),
        (502, b"", BadGatewayError, "HTTP 502"),
        (
            503,
            kernel_error("ServiceUnavailableError", "proxy draining", 503),
            ServiceUnavailableError,
            "proxy draining",
        ),
        (504, kernel_error("GatewayTimeoutError", "upstream timed out", 504), GatewayTimeoutError, "timed out"),
        (504, b"", GatewayTimeoutError, "HTTP 504"),
        (599, b"", ServiceUnavailableError, "HTTP 599"),
        (302, b"", ServiceUnavailableError, "HTTP 302"),  # a redirect is not followed (the token stays here)
        (500, kernel_error("NotFoundError", "the kernel's name wins", 500), NotFoundError, "name wins"),
    ],
)
async def test_http_errors_become_the_kernels_errors(
    client: MyAwesomeApiClient, api: FakeUsersApi, status: int, body: bytes, error: type[KernelError], says: str
) -> None:
    api.override = Override(status, body)
    with pytest.raises(error) as caught:
        await client.list_users()
    assert type(caught.value) is error
    assert caught.value.message.startswith("MyAwesomeApi GET /users failed, ")
    assert says in caught.value.message
    cause = caught.value.cause
    assert isinstance(cause, ResponseError)
    assert (cause.method, cause.url, cause.status) == ("GET", f"{api.url}{PREFIX}/users", status)
    assert cause.body == body


async def test_a_long_upstream_message_is_cut(client: MyAwesomeApiClient, api: FakeUsersApi) -> None:
    api.override = Override(400, b'{"message": "' + b"x" * 5000 + b'"}')
    with pytest.raises(InputError) as caught:
        await client.list_users()
    assert len(caught.value.message) < 300
    assert isinstance(caught.value.cause, ResponseError) and len(caught.value.cause.body) == 4096


@pytest.mark.parametrize(
    "body", [b"<html>maintenance</html>", b'{"users": []}', b'[{"name": "no email"}]', b'[{"name": 1, "email": 2}]']
)
async def test_an_unexpected_answer_is_service_unavailable(
    client: MyAwesomeApiClient, api: FakeUsersApi, body: bytes
) -> None:
    api.override = Override(200, body)
    with pytest.raises(ServiceUnavailableError, match="unexpected answer") as caught:
        await client.list_users()
    assert isinstance(caught.value.cause, ResponseError) and caught.value.cause.body == body


async def test_an_unreachable_backend_is_service_unavailable() -> None:
    closed = FakeUsersApi()  # a free port nobody listens on
    async with MyAwesomeApiClient(closed.url) as c:
        with pytest.raises(ServiceUnavailableError, match="is unreachable") as caught:
            await c.get_user("42")
    assert isinstance(caught.value.cause, aiohttp.ClientError)


async def test_no_answer_in_time_is_a_gateway_timeout(api: FakeUsersApi) -> None:
    api.delay = 2.0
    async with MyAwesomeApiClient(api.url, timeout=0.3) as c:
        with pytest.raises(GatewayTimeoutError, match=r"no answer within 0\.3s"):
            await c.list_users()
