"""kernel.permissions and services.permissions: criteria, the registry, decisions, and a policy package in a real kernel."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import yaml

from kernel.api import (
    ALLOWED,
    DENIED,
    AllOf,
    AnyOf,
    AuthorizeRequest,
    AuthorizeResult,
    ConditionalDecision,
    Credentials,
    InputError,
    Not,
    Permission,
    PermissionCondition,
    PermissionRestriction,
    PermissionRule,
    PluginDeclarationError,
    PolicyDecision,
    PolicyQuery,
    PolicyUser,
    Principal,
    apply_conditions,
    conditional_decision,
    conditions_to_query,
    create_permission,
)
from kernel.config import Config
from kernel.testing import KernelProcess, RecordingLogger, make_package, wait_for
from kernel_services.permissions import AllowAllPolicy, PluginPermissionsRegistry, PolicyPermissions, installed_policy
from kernel_services.permissions.metadata import metadata
from tests import plugins
from tests.conftest import TOKEN, assert_error_shape, base_config

POLICY = plugins.FIXTURES / "permission_policy.py"
#: a static token that may only read in plugin docs
READER_TOKEN = "docs-reader-token"
DOCS = plugins.FIXTURES / "docs.py"

read = create_permission("docs.doc.read", {"action": "read"}, "doc")
delete = create_permission("docs.doc.delete", {"action": "delete"}, "doc")
admin = create_permission("docs.admin", {"action": "update"})


class Claims(msgspec.Struct):
    claims: list[str]


class Tag(msgspec.Struct):
    tag: str


is_owner = PermissionRule(
    name="is_owner",
    description="owned by one of the claims",
    resource_type="doc",
    params=Claims,
    apply=lambda doc, p: doc["owner"] in p.claims,
    to_query=lambda p: f"owner IN {tuple(p.claims)}",
)
has_tag = PermissionRule(
    name="has_tag",
    description="carries the tag",
    resource_type="doc",
    params=Tag,
    apply=lambda doc, p: p.tag in doc["tags"],
    to_query=lambda p: f"'{p.tag}' = ANY(tags)",
)
is_public = PermissionRule(
    name="is_public",
    description="public",
    resource_type="doc",
    apply=lambda doc, p: doc["public"],
    to_query=lambda p: "public",
)
RULES = [is_owner, has_tag, is_public]
DOC = {"owner": "user:default/alice", "tags": ["x"], "public": False}


def owner(*claims: str) -> PermissionCondition:
    return is_owner.condition({"claims": list(claims)})


def alice(*ownership: str) -> Credentials:
    return Credentials(Principal("user", "user:default/alice", ownership_refs=list(ownership)))


# -- criteria and decisions ---------------------------------------------------------------------


def test_create_permission_checks_what_it_declares() -> None:
    assert (read.type, admin.type) == ("resource", "basic")
    assert msgspec.to_builtins(read) == {
        "name": "docs.doc.read",
        "attributes": {"action": "read"},
        "resourceType": "doc",
    }
    with pytest.raises(PluginDeclarationError, match="action must be one of"):
        create_permission("x", {"action": "destroy"})
    with pytest.raises(PluginDeclarationError, match="non-empty"):
        create_permission("")


def test_conditions_apply_to_a_resource() -> None:
    assert apply_conditions(owner("user:default/alice"), RULES, DOC)
    assert not apply_conditions(owner("user:default/bob"), RULES, DOC)
    either = AnyOf([owner("user:default/bob"), has_tag.condition(Tag("x"))])
    both = AllOf([owner("user:default/bob"), has_tag.condition({"tag": "x"})])
    assert apply_conditions(either, RULES, DOC) and not apply_conditions(both, RULES, DOC)
    assert apply_conditions(Not(PermissionCondition("is_public", "doc")), RULES, DOC)
    decision = conditional_decision("docs", read, either)
    assert apply_conditions(decision, RULES, DOC)
    assert not apply_conditions(decision, RULES, None)  # a missing resource is never allowed
    assert apply_conditions(ALLOWED, RULES, None) and not apply_conditions(DENIED, RULES, DOC)
    assert msgspec.to_builtins(decision) == {
        "pluginId": "docs",
        "resourceType": "doc",
        "conditions": {
            "anyOf": [
                {"rule": "is_owner", "resourceType": "doc", "params": {"claims": ["user:default/bob"]}},
                {"rule": "has_tag", "resourceType": "doc", "params": {"tag": "x"}},
            ]
        },
        "result": "CONDITIONAL",
    }


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        (PermissionCondition("is_admin", "doc"), "unknown permission rule 'is_admin'"),
        (PermissionCondition("is_owner", "user", {"claims": []}), "is for resource type 'doc', not 'user'"),
        (PermissionCondition("is_owner", "doc", {"claims": "alice"}), "is_owner': invalid params"),
        (AnyOf([]), "anyOf needs at least one criterion"),
    ],
)
def test_conditions_that_do_not_fit_the_rules_are_input_errors(criteria: Any, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        apply_conditions(criteria, RULES, DOC)
    with pytest.raises(InputError, match=re.escape(message)):
        conditions_to_query(criteria, RULES, " AND ".join, " OR ".join, "NOT {}".format)


def test_conditions_become_one_query() -> None:
    criteria = AllOf([AnyOf([owner("a", "b"), has_tag.condition({"tag": "x"})]), Not(is_public.condition())])

    def both(parts: list[str]) -> str:
        return "(" + " AND ".join(parts) + ")"

    def either(parts: list[str]) -> str:
        return "(" + " OR ".join(parts) + ")"

    query = conditions_to_query(conditional_decision("docs", read, criteria), RULES, both, either, "NOT {}".format)
    assert query == "((owner IN ('a', 'b') OR 'x' = ANY(tags)) AND NOT public)"
    with pytest.raises(ValueError, match="no conditions"):
        conditions_to_query(ALLOWED, RULES, both, either, "NOT {}".format)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a resource permission"):
        conditional_decision("docs", admin, criteria)


# -- the registry --------------------------------------------------------------------------------


def test_the_registry_refuses_wrong_declarations_naming_the_plugin() -> None:
    registry = PluginPermissionsRegistry("docs")
    with pytest.raises(PluginDeclarationError, match="plugin 'docs': permission rule 'is_owner' is for unknown"):
        registry.add_permission_rules([is_owner])
    registry.add_resource_type("doc", permissions=[read, delete], rules=[is_owner, has_tag])
    registry.add_permissions([admin, admin])  # the same one again is no mistake
    with pytest.raises(PluginDeclarationError, match="plugin 'docs': permission rule 'is_owner' declared twice"):
        registry.add_permission_rules([is_owner])
    with pytest.raises(PluginDeclarationError, match="plugin 'docs': resource type 'doc' declared twice"):
        registry.add_resource_type("doc")
    with pytest.raises(PluginDeclarationError, match="plugin 'docs': permission 'docs.admin' declared twice"):
        registry.add_permissions([create_permission("docs.admin", {"action": "delete"})])
    with pytest.raises(PluginDeclarationError, match="not a permission of resource type 'page'"):
        registry.add_resource_type("page", permissions=[read])
    bad = PermissionRule(name="odd", description="", resource_type="doc", params=object, apply=any, to_query=str)
    with pytest.raises(PluginDeclarationError, match="plugin 'docs': permission rule 'odd': params must be"):
        registry.add_permission_rules([bad])
    assert registry.list_permissions() == [read, delete, admin]
    assert registry.get_permission_rule("has_tag") is has_tag and registry.get_permission_rule("nope") is None
    assert metadata(registry) == {
        "permissions": [
            {"type": "resource", "name": "docs.doc.read", "attributes": {"action": "read"}, "resourceType": "doc"},
            {"type": "resource", "name": "docs.doc.delete", "attributes": {"action": "delete"}, "resourceType": "doc"},
            {"type": "basic", "name": "docs.admin", "attributes": {"action": "update"}},
        ],
        "rules": [
            {
                "name": "is_owner",
                "description": "owned by one of the claims",
                "resourceType": "doc",
                "paramsSchema": msgspec.json.schema(Claims),
            },
            {
                "name": "has_tag",
                "description": "carries the tag",
                "resourceType": "doc",
                "paramsSchema": msgspec.json.schema(Tag),
            },
        ],
    }


# -- the permissions service ---------------------------------------------------------------------


class Recorder:
    """A policy answering from a table by permission name (DENY otherwise), recording what it was asked."""

    def __init__(self, answers: dict[str, PolicyDecision] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[tuple[str, PolicyUser | None]] = []

    async def handle(self, request: PolicyQuery, user: PolicyUser | None) -> PolicyDecision:
        self.asked.append((request.permission.name, user))
        return self.answers.get(request.permission.name, DENIED)


def service(
    policy: Recorder, *, enabled: bool = True, registry: PluginPermissionsRegistry | None = None
) -> PolicyPermissions:
    config = Config.from_dict({"permission": {"enabled": enabled}})
    return PolicyPermissions("docs", config, registry or PluginPermissionsRegistry("docs"), policy, RecordingLogger())


def requests(*permissions: Permission) -> list[AuthorizeRequest]:
    return [{"permission": p} for p in permissions]


async def test_disabled_allows_everything_without_asking_the_policy() -> None:
    policy = Recorder()
    permissions = service(policy, enabled=False)
    assert await permissions.authorize(requests(admin, read), credentials=alice()) == [ALLOWED, ALLOWED]
    assert await permissions.authorize_conditional([{"permission": read}], credentials=alice()) == [ALLOWED]
    assert policy.asked == []
    assert Config.from_dict({}).get_optional_boolean("permission.enabled") is None  # default: disabled


async def test_the_policy_decides_for_users_and_for_callers_without_credentials() -> None:
    policy = Recorder({"docs.admin": ALLOWED})
    permissions = service(policy)
    creds = alice("user:default/alice", "group:default/team-a")
    assert await permissions.authorize(requests(admin, delete), credentials=creds) == [ALLOWED, DENIED]
    _, user = policy.asked[0]
    assert user is not None and (user.user_entity_ref, user.ownership_entity_refs) == (
        "user:default/alice",
        ["user:default/alice", "group:default/team-a"],
    )
    assert user.principal is creds.principal
    policy.asked.clear()
    assert await permissions.authorize(requests(admin), credentials=Credentials(Principal())) == [ALLOWED]
    assert policy.asked == [("docs.admin", None)]


async def test_service_principals_are_never_put_to_the_policy_but_their_restrictions_hold() -> None:
    policy = Recorder()  # would deny everything
    for enabled in (True, False):
        permissions = service(policy, enabled=enabled)
        plugin = Credentials(Principal("service", "plugin:catalog"))
        assert await permissions.authorize(requests(admin, read), credentials=plugin) == [ALLOWED, ALLOWED]
        restricted = Principal(
            "service",
            "external:ci-bot",
            permission_restrictions=[
                PermissionRestriction("docs", permission_names=["docs.doc.read", "docs.doc.delete"], actions=["read"]),
                PermissionRestriction("other", actions=["delete"]),  # another plugin's: no matter here
            ],
        )
        got = await permissions.authorize(requests(read, delete, admin), credentials=Credentials(restricted))
        assert got == [ALLOWED, DENIED, DENIED]
        by_action = Principal(
            "service", "external:ops", permission_restrictions=[PermissionRestriction("docs", actions=["update"])]
        )
        got = await permissions.authorize_conditional(
            [{"permission": p} for p in (read, admin)], credentials=Credentials(by_action)
        )
        assert got == [DENIED, ALLOWED]
    assert policy.asked == []


async def test_authorize_applies_a_conditional_answer_to_the_resource() -> None:
    docs = {"d1": {"owner": "user:default/alice"}, "d2": {"owner": "user:default/bob"}}
    loaded: list[Sequence[str]] = []

    async def load(refs: Sequence[str]) -> list[dict[str, str] | None]:
        loaded.append(refs)
        return [docs.get(ref) for ref in refs]

    registry = PluginPermissionsRegistry("docs")
    registry.add_resource_type("doc", permissions=[read, delete], rules=[is_owner], get_resources=load)
    mine = conditional_decision("docs", read, owner("user:default/alice"))
    foreign = ConditionalDecision(plugin_id="catalog", resource_type="doc", conditions=owner("user:default/alice"))
    policy = Recorder({"docs.doc.read": mine, "docs.doc.delete": foreign})
    permissions = service(policy, registry=registry)

    asked: list[AuthorizeRequest] = [
        {"permission": read, "resource_ref": "d1"},  # loaded through get_resources
        {"permission": read, "resource_ref": "d2"},
        {"permission": read, "resource_ref": "d9"},  # absent: denied, like a forbidden one
        {"permission": read, "resource": {"owner": "user:default/alice"}},  # given: nothing loaded
        {"permission": read},  # nothing to apply the conditions to
        {"permission": delete, "resource_ref": "d1"},  # conditions of another plugin
    ]
    got = await permissions.authorize(asked, credentials=alice())
    assert got == [ALLOWED, DENIED, DENIED, ALLOWED, DENIED, DENIED]
    assert loaded == [["d1"], ["d2"], ["d9"]]
    assert [d.result for d in await permissions.authorize_conditional([{"permission": read}], credentials=alice())] == [
        AuthorizeResult.CONDITIONAL
    ]


async def test_an_answer_that_cannot_be_is_a_denial() -> None:
    wrong = ConditionalDecision(plugin_id="docs", resource_type="doc", conditions=owner("x"))
    unknown_rule = conditional_decision("docs", read, PermissionCondition("is_admin", "doc"))
    registry = PluginPermissionsRegistry("docs")
    registry.add_resource_type("doc", rules=[is_owner])
    permissions = service(Recorder({"docs.admin": wrong, "docs.doc.read": unknown_rule}), registry=registry)
    assert await permissions.authorize_conditional([{"permission": admin}], credentials=alice()) == [DENIED]
    got = await permissions.authorize([{"permission": read, "resource": DOC}], credentials=alice())
    assert got == [DENIED]
    with pytest.raises(InputError, match="needs a 'permission'"):
        await permissions.authorize([{"permission": "docs.admin"}], credentials=alice())  # type: ignore[typeddict-item]


class _NoPolicy:
    """The hooks of a process where no package implements ``kernel_permission_policy``."""

    def call(self, hook: str, **kwargs: object) -> object:
        assert hook == "kernel_permission_policy"
        return None


def test_without_a_policy_package_everything_is_allowed() -> None:
    assert isinstance(installed_policy(_NoPolicy()), AllowAllPolicy)


# -- a policy package and a plugin in a real kernel -----------------------------------------------


def _install(root: Path) -> Path:
    make_package(root, "acme-policy", {"test_permission_policy": POLICY}, {"acme-policy": "test_permission_policy"})
    make_package(root, "kernel-test-docs", {"test_docs": DOCS}, {"docs": "test_docs:plugin"})
    return root


def _config(data: Path, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = base_config()
    config["backend"]["database"] = {"client": "sqlite", "connection": {"directory": str(data)}}
    config["backend"].update(extra)
    config["permission"] = {"enabled": True}
    return config


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_policy_package_decides_for_users_in_the_plugins_worker(tmp_path: Path) -> None:
    """The ``kernel_permission_policy`` hook: the installed package's policy answers in the plugin's worker."""
    site = _install(tmp_path / "site")
    with KernelProcess(_config(tmp_path / "data"), paths=[site]) as k, httpx.Client(base_url=k.url) as c:
        assert_error_shape(c.get("/api/docs/admin", headers=_as("user-alice")), 403, "NotAllowedError")
        assert c.get("/api/docs/admin", headers=_as("user-admin")).json() == {"admin": True}
        # a service principal is not put to the policy (Backstage's rule): no restrictions, allowed
        assert c.get("/api/docs/admin", headers=_as(TOKEN)).json() == {"admin": True}


@pytest.fixture(scope="module")
def docs_kernel(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    """docs and the policy package, beside echo and other (which declare no permissions)."""
    root = tmp_path_factory.mktemp("permissions")
    config = _config(root / "data", config={"reload": {"enabled": True, "pollSeconds": 0.1}})
    config["backend"]["auth"]["externalAccess"].append(
        {
            "type": "static",
            "options": {"token": READER_TOKEN, "subject": "reader"},
            "accessRestrictions": [{"plugin": "docs", "permissionAttribute": {"action": "read"}}],
        }
    )
    k = KernelProcess(config, paths=[site, _install(root / "site")]).start()
    yield k
    k.stop()


@pytest.fixture
def docs(docs_kernel: KernelProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=docs_kernel.url, timeout=20) as c:
        yield c


def test_a_conditional_answer_filters_the_plugins_own_table(docs: httpx.Client) -> None:
    got = docs.get("/api/docs/docs", headers=_as("user-alice")).json()
    assert got == {"docs": ["d1", "d2"], "where": "owner IN (?, ?)"}  # alice and her team
    assert docs.get("/api/docs/docs", headers=_as("user-bob")).json()["docs"] == ["d3"]
    assert docs.get("/api/docs/docs", headers=_as(TOKEN)).json() == {"docs": ["d1", "d2", "d3"], "where": "1 = 1"}
    # one document: the same conditions, applied to what the plugin loads for the ref
    assert docs.get("/api/docs/docs/d2", headers=_as("user-alice")).json()["title"] == "Team A plan"
    assert_error_shape(docs.get("/api/docs/docs/d3", headers=_as("user-alice")), 403, "NotAllowedError")
    assert_error_shape(docs.get("/api/docs/docs/d9", headers=_as("user-alice")), 403, "NotAllowedError")


def test_an_external_tokens_permission_restrictions_hold_whatever_the_policy(docs: httpx.Client) -> None:
    assert_error_shape(docs.get("/api/docs/admin", headers=_as(READER_TOKEN)), 403, "NotAllowedError")
    assert docs.get("/api/docs/docs", headers=_as(READER_TOKEN)).json()["docs"] == ["d1", "d2", "d3"]
    assert docs.get("/api/docs/docs/d3", headers=_as(READER_TOKEN)).json()["owner"] == "user:default/bob"


def test_the_plugin_serves_its_permission_metadata_to_callers_with_credentials(docs: httpx.Client) -> None:
    path = "/api/docs/.well-known/backstage/permissions/metadata"
    assert_error_shape(docs.get(path), 401, "AuthenticationError")
    got = docs.get(path, headers=_as(TOKEN)).json()
    assert [p["name"] for p in got["permissions"]] == ["docs.doc.read", "docs.admin"]
    [rule] = got["rules"]
    assert (rule["name"], rule["resourceType"]) == ("is_owner", "doc")
    assert "claims" in str(rule["paramsSchema"])
    assert docs.get("/api/echo/.well-known/backstage/permissions/metadata", headers=_as(TOKEN)).status_code == 404


def test_permission_enabled_false_allows_everything_and_follows_a_reload(
    docs_kernel: KernelProcess, docs: httpx.Client
) -> None:
    def admin_status() -> int:
        return docs.get("/api/docs/admin", headers=_as("user-alice")).status_code

    assert admin_status() == 403
    original = docs_kernel.config_path.read_text()
    config = yaml.safe_load(original)
    config["permission"]["enabled"] = False
    docs_kernel.config_path.write_text(yaml.safe_dump(config))
    try:
        wait_for(lambda: admin_status() == 200, 10, "permission.enabled: false did not reach the worker")
        assert docs.get("/api/docs/docs", headers=_as("user-bob")).json()["docs"] == ["d1", "d2", "d3"]
    finally:
        docs_kernel.config_path.write_text(original)
    wait_for(lambda: admin_status() == 403, 10, "permission.enabled: true did not come back")
