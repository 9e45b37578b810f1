"""Extension points made per start: two test backends in one process each get an implementation of their own."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import ExtensionPoint, HttpRouter, PluginDeclarationError, core_services, create_module, create_plugin
from kernel.testing import BootError, mock_credentials, start_test_backend

USER = mock_credentials.user.header()


class Processing:
    def __init__(self) -> None:
        self.processors: list[str] = []

    def add_processor(self, name: str) -> None:
        self.processors.append(name)  # not idempotent on purpose: a shared object would show it twice


point: ExtensionPoint[Processing] = ExtensionPoint("catalog.processing")
catalog = create_plugin("catalog")
catalog.register_extension_point(point, factory=Processing)
github = create_module(plugin_id="catalog", module_id="github")


@catalog.init(router=core_services.http_router, processing=point)
def init(router: HttpRouter, processing: Processing) -> None:
    async def processors(request: Request) -> JSONResponse:
        return JSONResponse({"processors": processing.processors, "object": id(processing)})

    router.add_route("/processors", processors)


@github.init(processing=point)
def init_github(processing: Processing) -> None:
    processing.add_processor("github")


async def test_each_start_gets_its_own_implementation() -> None:
    seen = []
    for _ in range(2):
        async with start_test_backend([catalog, github]) as backend:
            answer = (await backend.client.get("/api/catalog/processors", headers=USER)).json()
            assert answer["processors"] == ["github"]
            seen.append(answer["object"])
    assert seen[0] != seen[1]


async def test_two_backends_at_once_do_not_share() -> None:
    async with start_test_backend([catalog, github]) as one, start_test_backend([catalog, github]) as two:
        a = (await one.client.get("/api/catalog/processors", headers=USER)).json()
        b = (await two.client.get("/api/catalog/processors", headers=USER)).json()
    assert a["processors"] == b["processors"] == ["github"]
    assert a["object"] != b["object"]


def test_an_implementation_or_a_factory_but_not_both() -> None:
    p = create_plugin("twice")
    with pytest.raises(PluginDeclarationError, match="give an implementation or a factory"):
        p.register_extension_point(ExtensionPoint("twice.x"), Processing(), factory=Processing)
    with pytest.raises(PluginDeclarationError, match="give an implementation or a factory"):
        p.register_extension_point(ExtensionPoint("twice.y"))


async def test_a_plugin_may_name_only_its_own_extension_points() -> None:
    other = create_plugin("other")

    @other.init(processing=point)
    def init_other(processing: Processing) -> None:
        pass

    with pytest.raises(BootError, match="Plugin 'other' depends on extension point.*catalog.processing"):
        await start_test_backend([other])
