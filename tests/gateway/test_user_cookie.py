"""A path opened with ``user-cookie``: the gateway takes the user cookie there, and still nothing without credentials.

The route under test does not look at credentials itself, so only the gateway's policy check stands
between it and a request that carries none.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import HttpRouter, core_services, create_plugin, principal_of
from kernel.testing import mock_credentials, start_test_backend
from tests.conftest import assert_error_shape

JANE = "user:default/jane"
plugin = create_plugin("gallery")
#: the subject of every request that reached the handler
reached: list[str] = []


@plugin.init(router=core_services.http_router)
def init(router: HttpRouter) -> None:
    async def picture(request: Request) -> JSONResponse:
        principal = principal_of(request)  # whatever the gateway let through: no check of its own
        reached.append(principal.subject)
        return JSONResponse({"picture": "cat.png", "type": principal.type, "subject": principal.subject})

    router.add_route("/picture", picture)
    router.add_auth_policy("/picture", allow="user-cookie")


async def test_a_user_cookie_path_refuses_a_request_without_credentials() -> None:
    reached.clear()
    async with start_test_backend([plugin]) as backend:
        # reachable: a limited user token in the cookie gets to the handler
        cookie = await backend.client.get("/api/gallery/picture", headers=mock_credentials.limited_user.cookie(JANE))
        assert cookie.status_code == 200, cookie.text
        assert cookie.json() == {"picture": "cat.png", "type": "user", "subject": JANE}
        assert reached == [JANE]

        bare = await backend.client.get("/api/gallery/picture")
        # the attack: the same route, asked with no credentials at all
        assert "authorization" not in bare.request.headers and "cookie" not in bare.request.headers
        assert_error_shape(bare, 401, "AuthenticationError")
        assert reached == [JANE]  # refused in the gateway: the handler never ran
