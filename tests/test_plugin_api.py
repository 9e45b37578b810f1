"""The plugin author API: declaration-time validation and the service graph."""

from __future__ import annotations

from typing import Any

import pytest

import kernel.api as api
from kernel.container import DependencyError, ServiceContainer, check_dependencies
from kernel.service import ServiceFactory


@pytest.mark.parametrize("bad", ["", "Hello", "1abc", "a_b", "a--b", "a-", "-a", "a b"])
def test_invalid_ids_fail_at_declaration(bad: str) -> None:
    with pytest.raises(api.PluginDeclarationError, match="invalid plugin id"):
        api.create_plugin(bad)


@pytest.mark.parametrize("good", ["a", "catalog", "my-plugin", "x1-y2"])
def test_valid_ids(good: str) -> None:
    assert api.create_plugin(good).id == good


def test_second_init_is_refused() -> None:
    plugin = api.create_plugin("twice")

    @plugin.init(router=api.core_services.http_router)
    def first(router: Any) -> None: ...

    with pytest.raises(api.PluginDeclarationError, match="init registered twice"):
        plugin.init()


def test_dependencies_must_be_service_refs() -> None:
    with pytest.raises(api.PluginDeclarationError, match="must be a ServiceRef"):
        api.create_plugin("x").init(router="core.httpRouter")  # type: ignore[arg-type]


def _factory(ref: api.ServiceRef[Any], **deps: api.ServiceRef[Any]) -> ServiceFactory:
    return api.create_service_factory(ref, deps)(lambda **kw: (ref.id, kw))


def test_unknown_and_circular_services_are_found_up_front() -> None:
    a, b, c = (api.create_service_ref(f"acme.{n}") for n in "abc")
    factories = {"acme.a": _factory(a, b=b), "acme.b": _factory(b, a=a)}
    problems = check_dependencies(factories, [("needy", {"c": c})])
    assert "plugin 'needy' depends on service 'acme.c' (as 'c'), which no installed package provides" in problems
    assert any(p.startswith("circular service dependency: acme.a -> acme.b -> acme.a") for p in problems)


def test_root_service_cannot_depend_on_plugin_service() -> None:
    root = api.create_service_ref("acme.root", "root")
    with pytest.raises(TypeError, match="cannot depend on plugin-scoped"):
        api.create_service_factory(root, {"log": api.core_services.logger})


async def test_container_builds_each_service_once_per_plugin_and_shares_root() -> None:
    calls: list[str] = []
    root = api.create_service_ref("acme.pool", "root")
    per = api.create_service_ref("acme.client")

    @api.create_service_factory(root)
    async def make_root() -> object:
        calls.append("root")
        return object()

    @api.create_service_factory(per, {"pool": root})
    def make_client(pool: object) -> tuple[str, object]:
        calls.append("client")
        return ("client", pool)

    factories = {"acme.pool": make_root, "acme.client": make_client}
    shared: dict[str, Any] = {}
    one = ServiceContainer(factories, "one", root_instances=shared)
    two = ServiceContainer(factories, "two", root_instances=shared)
    c1, c1again, c2 = await one.get(per), await one.get(per), await two.get(per)
    assert c1 is c1again and c1 is not c2 and c1[1] is c2[1]
    assert calls == ["root", "client", "client"]
    with pytest.raises(DependencyError, match="no installed package provides service 'acme.none'"):
        await one.get(api.create_service_ref("acme.none"))
