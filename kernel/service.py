"""Service references and factories: how plugins name what they need, and how packages provide it."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")
Scope = Literal["root", "plugin"]


@dataclass(frozen=True)
class ServiceRef(Generic[T]):
    """Names a service (``core.logger``) and whether one instance serves the process or each plugin."""

    id: str
    scope: Scope = "plugin"

    def __repr__(self) -> str:
        return f"ServiceRef({self.id!r}, scope={self.scope!r})"


def create_service_ref(id: str, scope: Scope = "plugin") -> ServiceRef[Any]:
    """A reference to a service that some installed package provides."""
    if scope not in ("root", "plugin"):
        raise ValueError(f"service {id!r}: scope must be 'root' or 'plugin', not {scope!r}")
    return ServiceRef(id, scope)


@dataclass(frozen=True)
class ServiceFactory:
    """Builds the implementation of ``service`` from its own dependencies ``deps``.

    ``factory(**deps)`` may be sync or async. A root-scoped service may depend only
    on root-scoped services.
    """

    service: ServiceRef[Any]
    factory: Callable[..., Any]
    deps: Mapping[str, ServiceRef[Any]] = field(default_factory=dict)
    #: set by the registry: which package provided this factory
    provider: str = ""
    #: built at every plugin's boot, asked for or not (a service that serves routes of its own)
    eager: bool = False

    async def create(self, **deps: Any) -> Any:
        value = self.factory(**deps)
        if inspect.isawaitable(value):
            value = await value
        return value


def create_service_factory(
    service: ServiceRef[Any],
    deps: Mapping[str, ServiceRef[Any]] | None = None,
    *,
    eager: bool = False,
) -> Callable[[Callable[..., Any | Awaitable[Any]]], ServiceFactory]:
    """Decorator turning a function into a ``ServiceFactory`` for ``service``.

    ``eager``: a plugin-scoped service built at every plugin's boot, before its routes are
    served, even if nothing asked for it (it adds routes of its own to the plugin's router).
    """
    deps = dict(deps or {})
    for name, ref in deps.items():
        if not isinstance(ref, ServiceRef):
            raise TypeError(f"factory of {service.id}: dependency {name!r} is not a ServiceRef")
        if service.scope == "root" and ref.scope == "plugin":
            raise TypeError(f"root service {service.id} cannot depend on plugin-scoped service {ref.id}")

    def wrap(fn: Callable[..., Any]) -> ServiceFactory:
        return ServiceFactory(service=service, factory=fn, deps=deps, eager=eager)

    return wrap
