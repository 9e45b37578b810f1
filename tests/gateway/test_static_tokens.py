"""Static tokens' access restrictions (kernel/gateway/static_tokens.py): by plugin, and by permission."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.config import Config, ConfigError
from kernel.gateway.static_tokens import static_tokens_from_config
from kernel.protocol import PermissionRestriction, Principal

TOKEN = "static-token-for-tests"


def principal(**entry: Any) -> Principal:
    options = {"token": TOKEN, "subject": "ci"}
    config = Config.from_dict(
        {"backend": {"auth": {"externalAccess": [{"type": "static", "options": options, **entry}]}}}
    )
    verified = static_tokens_from_config(config).verify(TOKEN)
    assert verified is not None and verified.expires_at is None
    return verified.principal


def test_without_restrictions_a_token_reaches_everything() -> None:
    assert principal() == Principal("service", "external:ci")


def test_restrictions_name_plugins_and_what_the_token_may_do_in_them() -> None:
    p = principal(
        accessRestrictions=[
            {"plugin": "catalog", "permission": ["catalog.entity.read", "catalog.entity.read"]},
            {"plugin": "scaffolder", "permissionAttribute": {"action": "read, create"}},
            {"plugin": "events", "permission": "events.a events.b", "permissionAttribute": {"action": ["update"]}},
            {"plugin": "search"},
        ]
    )
    assert p.access_restrictions == ["catalog", "scaffolder", "events", "search"]
    assert p.permission_restrictions == [
        PermissionRestriction("catalog", ["catalog.entity.read"], None),
        PermissionRestriction("scaffolder", None, ["read", "create"]),
        PermissionRestriction("events", ["events.a", "events.b"], ["update"]),
    ]
    only_plugins = principal(accessRestrictions=[{"plugin": "catalog"}])
    assert (only_plugins.access_restrictions, only_plugins.permission_restrictions) == (["catalog"], None)


@pytest.mark.parametrize(
    ("restrictions", "message"),
    [
        ([{"plugin": "a", "permissions": "x"}], r"accessRestrictions\[0\] has unknown key 'permissions'"),
        ([{"plugin": "a"}, {"plugin": "a", "permission": "x"}], r"accessRestrictions\[1\] restricts plugin 'a'"),
        ([{"plugin": "a", "permission": 5}], r"accessRestrictions\[0\]\.permission"),  # read_settings names it
        ([{"plugin": "a", "permissionAttribute": {"action": "write"}}], r"\.action has 'write', expected one of"),
        ([{"plugin": "a", "permissionAttribute": {"resourceType": "x"}}], r"\.permissionAttribute must be an object"),
    ],
)
def test_bad_restrictions_are_config_errors_naming_the_entry(restrictions: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"backend\.auth\.externalAccess\[0\]\.accessRestrictions") as err:
        principal(accessRestrictions=restrictions)
    assert err.match(message)
