"""``kernel.openapi_spec``: what an author declares (``OpenApi``, ``Operation``), and the mistakes refused where declared.

A mistake the declaration alone shows is a ``PluginDeclarationError`` there; one that needs the
routes (a type that is not a msgspec type, a schema that clashes) stops the plugin's start, naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import (
    HttpRouter,
    OpenApi,
    Operation,
    PluginDeclarationError,
    core_services,
    create_plugin,
)
from kernel.testing import mock_credentials, start_test_backend


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({})


def _plugin(openapi: OpenApi, add: Callable[[HttpRouter], None]) -> Any:
    plugin = create_plugin("declared", openapi=openapi)

    @plugin.init(router=core_services.http_router)
    def init(router: HttpRouter) -> None:
        add(router)

    return plugin


async def test_a_document_from_a_yaml_file_joins_the_declared_routes(tmp_path: Path) -> None:
    path = tmp_path / "openapi.yaml"
    path.write_text(
        "openapi: 3.1.0\n"
        "info: {title: From a file, version: 1.2.3}\n"
        "paths:\n"
        "  /status:\n"
        "    get:\n"
        "      responses:\n"
        "        200: {description: ok}\n"  # an integer key in YAML: a string in the document
    )

    class Answer(msgspec.Struct):
        ok: bool

    plugin = _plugin(
        OpenApi(document=path),
        lambda r: r.add_route("/answer", _ok, methods=["GET"], openapi=Operation(response=Answer)),
    )
    async with start_test_backend([plugin]) as backend:
        doc = (await backend.client.get("/api/declared/openapi.json")).json()
    assert doc["info"] == {"title": "From a file", "version": "1.2.3"}
    assert doc["paths"]["/status"]["get"]["responses"] == {"200": {"description": "ok"}}
    assert doc["paths"]["/answer"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Answer"
    }


async def test_a_document_of_declared_routes_only_is_named_after_the_plugin() -> None:
    plugin = _plugin(OpenApi(version="0.3.0", description="About"), lambda r: r.add_route("/x", _ok))
    async with start_test_backend([plugin]) as backend:
        doc = (await backend.client.get("/api/declared/openapi.json")).json()
    assert doc["info"] == {"title": "declared", "version": "0.3.0", "description": "About"}
    assert doc["paths"]["/x"]["get"]["responses"]["2XX"] == {"description": "Success (not described)"}


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.yaml", "cannot be read"),
        ("openapi: [", "broken.yaml", "is not valid YAML"),
        ("{", "broken.json", "is not valid JSON"),
        ("- 1\n", "list.yaml", "must be a mapping, not list"),
        ("openapi: 3.0.3\npaths: {}\n", "old.yaml", "'openapi' is '3.0.3'; only OpenAPI 3.1 documents are supported"),
        ("openapi: 3.1.0\npaths: []\n", "paths.yaml", "'paths' must be a mapping"),
    ],
)
def test_a_bad_document_file_fails_where_it_is_declared(
    tmp_path: Path, content: str | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(PluginDeclarationError) as refused:
        OpenApi(document=path)
    assert f"OpenAPI document '{path}'" in str(refused.value) and message in str(refused.value)


def test_a_document_given_as_a_mapping_is_copied() -> None:
    given = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}
    declared = OpenApi(document=given)
    given["paths"]["/later"] = {}
    assert declared.base == {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}
    with pytest.raises(PluginDeclarationError, match="only OpenAPI 3.1"):
        OpenApi(document={"swagger": "2.0"})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Operation(status=404), "Operation status 404 must be a success"),
        (lambda: Operation(errors={200: "fine"}), "Operation errors: 200 is not an error status"),
        (lambda: create_plugin("p", openapi={"openapi": "3.1.0"}), "plugin 'p': openapi must be an OpenApi"),  # type: ignore[arg-type]
    ],
)
def test_declarations_that_cannot_be_right(make: Callable[[], object], message: str) -> None:
    with pytest.raises(PluginDeclarationError, match=message):
        make()


class Thing:
    """Not a msgspec type."""


class Item(msgspec.Struct):
    name: str


@pytest.mark.parametrize(
    ("openapi", "add", "message"),
    [
        (
            OpenApi(),
            lambda r: r.add_route("/t", _ok, openapi=Operation(response=Thing)),
            "plugin 'declared': route '/t': Operation response=",
        ),
        (
            OpenApi(),
            lambda r: r.add_route("/t", _ok, openapi="GET /t"),
            "plugin 'declared': route '/t': openapi must be an Operation",
        ),
        (
            OpenApi(),
            lambda r: r.add_route("/t/{id}", _ok, openapi=Operation(path_params=Item)),
            "plugin 'declared': route '/t/{id}' has no path parameter ['name']",
        ),
        (
            OpenApi(),
            lambda r: r.add_route("/t", _ok, openapi=Operation(query_params=list[int])),
            "plugin 'declared': parameters must be declared by a msgspec.Struct",
        ),
        (
            OpenApi(
                document={"openapi": "3.1.0", "paths": {}, "components": {"schemas": {"Item": {"type": "string"}}}}
            ),
            lambda r: r.add_route("/t", _ok, openapi=Operation(response=Item)),
            "plugin 'declared': the OpenAPI schema 'Item' of its document differs",
        ),
        (
            OpenApi(
                validate=True,
                document={
                    "openapi": "3.1.0",
                    "paths": {
                        "/t": {
                            "get": {
                                "parameters": [
                                    {"name": "q", "in": "query", "schema": {"type": "string", "pattern": "(["}}
                                ],
                                "responses": {},
                            }
                        }
                    },
                },
            ),
            lambda r: r.add_route("/t", _ok),
            "plugin 'declared': the OpenAPI schema at /paths/~1t/get/parameters/0/schema is not valid",
        ),
    ],
)
async def test_mistakes_in_the_routes_stop_the_plugin_naming_it(
    openapi: OpenApi, add: Callable[[HttpRouter], None], message: str
) -> None:
    with pytest.raises(PluginDeclarationError) as refused:
        async with start_test_backend([_plugin(openapi, add)]):
            pass
    assert message in str(refused.value)


async def test_validation_is_switched_on_before_start_up_only() -> None:
    plugin = create_plugin("late")

    @plugin.init(router=core_services.http_router)
    def init(router: HttpRouter) -> None:
        async def switch(request: Request) -> JSONResponse:
            try:
                router.set_openapi(OpenApi(validate=True))
            except PluginDeclarationError as exc:
                return JSONResponse({"refused": str(exc)})
            return JSONResponse({"refused": None})

        router.add_route("/switch", switch, methods=["POST"])
        router.set_openapi(OpenApi())

    async with start_test_backend([plugin]) as backend:
        answer = await backend.client.post("/api/late/switch", headers=mock_credentials.user.header())
    assert answer.json() == {
        "refused": "plugin 'late': request validation can be switched on only before start-up "
        "(declare OpenApi(validate=True) in create_plugin or in the plugin's init)"
    }
