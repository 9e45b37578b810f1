"""Permissions: what a plugin protects, what a policy answers, and how conditions become checks or filters.

Backstage's permission framework, evaluated inside each plugin's worker. A plugin declares its
permissions (and, for resource permissions, the rules conditions may use) with the
``permissions_registry`` service and asks ``permissions`` before acting. The answer comes from the
installed ``PermissionPolicy`` (hook ``kernel_permission_policy``): ALLOW, DENY, or for a
permission on a resource type CONDITIONAL, a tree of rule conditions the plugin applies itself,
to one resource (``apply_conditions``) or as a filter of its queries (``conditions_to_query``).

Contract: pure types and pure functions, no I/O. On the wire (JSON) the types keep Backstage's
field names (``resourceType``, ``pluginId``, ``allOf``, ``anyOf``, ``not``).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, Protocol, Required, TypedDict, TypeVar, Union

import msgspec

from kernel.errors import InputError, PluginDeclarationError
from kernel.protocol import Principal

#: the values of a permission's ``action`` attribute
ACTIONS = ("create", "read", "update", "delete")

Q = TypeVar("Q")


class AuthorizeResult(enum.StrEnum):
    """What a policy answers: allowed, denied, or allowed for the resources meeting some conditions."""

    ALLOW = "ALLOW"
    DENY = "DENY"
    CONDITIONAL = "CONDITIONAL"


class Permission(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A named action a plugin protects; with ``resource_type`` it is about resources of that type."""

    name: str
    #: e.g. ``{"action": "read"}``; ``action`` is one of ``ACTIONS``
    attributes: dict[str, str] = {}
    resource_type: str | None = None

    @property
    def type(self) -> Literal["basic", "resource"]:
        return "basic" if self.resource_type is None else "resource"


def create_permission(
    name: str, attributes: dict[str, str] | None = None, resource_type: str | None = None
) -> Permission:
    """A ``Permission``; an empty name or an unknown ``action`` is a ``PluginDeclarationError``."""
    if not isinstance(name, str) or not name:
        raise PluginDeclarationError(f"permission name must be a non-empty string, not {name!r}")
    attributes = dict(attributes or {})
    action = attributes.get("action")
    if action is not None and action not in ACTIONS:
        raise PluginDeclarationError(f"permission '{name}': action must be one of {ACTIONS}, not {action!r}")
    if resource_type is not None and not resource_type:
        raise PluginDeclarationError(f"permission '{name}': resource_type must be a non-empty string or None")
    return Permission(name=name, attributes=attributes, resource_type=resource_type)


# ---------------------------------------------------------------------------- conditions


class PermissionCondition(msgspec.Struct, frozen=True, rename="camel"):
    """One rule of the plugin that owns ``resource_type``, with its parameters."""

    rule: str
    resource_type: str
    params: dict[str, Any] = {}


class AllOf(msgspec.Struct, frozen=True):
    """Every criterion holds."""

    all_of: list[PermissionCriteria] = msgspec.field(name="allOf")


class AnyOf(msgspec.Struct, frozen=True):
    """At least one criterion holds."""

    any_of: list[PermissionCriteria] = msgspec.field(name="anyOf")


class Not(msgspec.Struct, frozen=True):
    """The criterion does not hold."""

    not_: PermissionCriteria = msgspec.field(name="not")


#: a tree of conditions, like Backstage's ``PermissionCriteria<PermissionCondition>``
PermissionCriteria = Union[AllOf, AnyOf, Not, PermissionCondition]  # noqa: UP007 (a recursive alias)


# ---------------------------------------------------------------------------- decisions


class DefinitiveDecision(msgspec.Struct, frozen=True):
    """ALLOW or DENY."""

    result: Literal[AuthorizeResult.ALLOW, AuthorizeResult.DENY]

    @property
    def allowed(self) -> bool:
        return self.result == AuthorizeResult.ALLOW


class ConditionalDecision(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """ALLOW for the resources of ``resource_type`` meeting ``conditions`` (rules of plugin ``plugin_id``)."""

    plugin_id: str
    resource_type: str
    conditions: PermissionCriteria
    result: Literal[AuthorizeResult.CONDITIONAL] = AuthorizeResult.CONDITIONAL


PolicyDecision = DefinitiveDecision | ConditionalDecision
ALLOWED = DefinitiveDecision(AuthorizeResult.ALLOW)
DENIED = DefinitiveDecision(AuthorizeResult.DENY)


def conditional_decision(plugin_id: str, permission: Permission, conditions: PermissionCriteria) -> ConditionalDecision:
    """The CONDITIONAL answer of a policy for a resource permission of plugin ``plugin_id``."""
    if permission.resource_type is None:
        raise ValueError(f"permission '{permission.name}' is not a resource permission: it cannot be conditional")
    return ConditionalDecision(plugin_id=plugin_id, resource_type=permission.resource_type, conditions=conditions)


# ---------------------------------------------------------------------------- requests and the policy


class AuthorizeRequest(TypedDict, total=False):
    """One question to ``permissions.authorize``.

    ``resource_ref``: the resource a resource permission is about; a CONDITIONAL answer is then
    applied to ``resource`` when given, else to what the resource type's ``get_resources`` loads.
    """

    permission: Required[Permission]
    resource_ref: NotRequired[str]
    resource: NotRequired[Any]


class QueryRequest(TypedDict):
    """One question to ``permissions.authorize_conditional``."""

    permission: Permission


@dataclass(frozen=True)
class PolicyQuery:
    """What a policy is asked: the permission only (never a resource, so answers can filter lists)."""

    permission: Permission


@dataclass(frozen=True)
class PolicyUser:
    """The user a policy decides for: the principal, their entity ref and their ownership refs."""

    principal: Principal
    user_entity_ref: str
    ownership_entity_refs: list[str]


class PermissionPolicy(Protocol):
    """Decides every permission of every plugin; ``user`` is ``None`` for a caller without credentials."""

    async def handle(self, request: PolicyQuery, user: PolicyUser | None) -> PolicyDecision: ...


#: loads resources by ref for a resource type (``None`` where one does not exist), in the order asked
GetResources = Callable[[Sequence[str]], Awaitable[Sequence[Any | None]]]


# ---------------------------------------------------------------------------- rules


@dataclass(frozen=True, kw_only=True)
class PermissionRule:
    """A condition a policy may put on resources of ``resource_type``, defined by the plugin owning them.

    ``params``: the msgspec type of the parameters (``None``: the rule takes none, and gets ``None``);
    ``apply(resource, params)`` checks one resource; ``to_query(params)`` expresses the same as a
    query of the plugin's storage (e.g. an SQL fragment and its arguments).
    """

    name: str
    description: str
    resource_type: str
    apply: Callable[[Any, Any], bool]
    to_query: Callable[[Any], Any]
    params: Any = None

    def parse_params(self, params: dict[str, Any]) -> Any:
        """The parameters of a condition as the rule's ``params`` type; ``InputError`` if they do not fit."""
        if self.params is None:
            return None
        try:
            return msgspec.convert(params, self.params)
        except msgspec.ValidationError as exc:
            raise InputError(f"permission rule '{self.name}': invalid params: {exc}") from exc

    def condition(self, params: Any = None) -> PermissionCondition:
        """A condition on this rule (``params`` as a dict or a ``params`` instance), for a policy's answer."""
        raw = msgspec.to_builtins(params) if params is not None else {}
        if not isinstance(raw, dict):
            raise InputError(f"permission rule '{self.name}': params must be an object, not {raw!r}")
        self.parse_params(raw)
        return PermissionCondition(self.name, self.resource_type, raw)


def _rule_lookup(rules: Iterable[PermissionRule]) -> Callable[[PermissionCondition], PermissionRule]:
    by_name = {rule.name: rule for rule in rules}

    def lookup(condition: PermissionCondition) -> PermissionRule:
        rule = by_name.get(condition.rule)
        if rule is None:
            raise InputError(f"unknown permission rule '{condition.rule}' (known: {sorted(by_name)})")
        if rule.resource_type != condition.resource_type:
            raise InputError(
                f"permission rule '{rule.name}' is for resource type '{rule.resource_type}', "
                f"not '{condition.resource_type}'"
            )
        return rule

    return lookup


def _nonempty(criteria: list[PermissionCriteria], what: str) -> list[PermissionCriteria]:
    if not criteria:
        raise InputError(f"conditions: {what} needs at least one criterion")
    return criteria


def _criteria_of(decision: PolicyDecision | PermissionCriteria) -> PermissionCriteria:
    if isinstance(decision, DefinitiveDecision):
        raise ValueError(f"a {decision.result} decision has no conditions")
    return decision.conditions if isinstance(decision, ConditionalDecision) else decision


def apply_conditions(
    decision: PolicyDecision | PermissionCriteria, rules: Iterable[PermissionRule], resource: Any
) -> bool:
    """Whether ``resource`` is allowed: ALLOW is true, DENY false, conditions are checked with ``rules``.

    A missing resource (``None``) is never allowed, so callers cannot tell "absent" from "forbidden".
    """
    if isinstance(decision, DefinitiveDecision):
        return decision.allowed
    if resource is None:
        return False
    lookup = _rule_lookup(rules)

    def check(criteria: PermissionCriteria) -> bool:
        if isinstance(criteria, AllOf):
            return all(check(c) for c in _nonempty(criteria.all_of, "allOf"))
        if isinstance(criteria, AnyOf):
            return any(check(c) for c in _nonempty(criteria.any_of, "anyOf"))
        if isinstance(criteria, Not):
            return not check(criteria.not_)
        rule = lookup(criteria)
        return bool(rule.apply(resource, rule.parse_params(criteria.params)))

    return check(_criteria_of(decision))


def conditions_to_query(
    decision: ConditionalDecision | PermissionCriteria,
    rules: Iterable[PermissionRule],
    combine_and: Callable[[list[Q]], Q],
    combine_or: Callable[[list[Q]], Q],
    negate: Callable[[Q], Q],
) -> Q:
    """The conditions as one query of the plugin's storage: each rule's ``to_query``, combined.

    E.g. with SQL: ``combine_and`` joins fragments with AND, ``combine_or`` with OR, ``negate``
    wraps one in NOT; ALLOW and DENY have no conditions (``ValueError``).
    """
    lookup = _rule_lookup(rules)

    def convert(criteria: PermissionCriteria) -> Q:
        if isinstance(criteria, AllOf):
            return combine_and([convert(c) for c in _nonempty(criteria.all_of, "allOf")])
        if isinstance(criteria, AnyOf):
            return combine_or([convert(c) for c in _nonempty(criteria.any_of, "anyOf")])
        if isinstance(criteria, Not):
            return negate(convert(criteria.not_))
        rule = lookup(criteria)
        query: Q = rule.to_query(rule.parse_params(criteria.params))
        return query

    return convert(_criteria_of(decision))
