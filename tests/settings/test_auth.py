"""kernel.settings.auth: ``backend.auth``, the generic shape of every ``externalAccess`` entry."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.config import Config, ConfigError
from kernel.settings import AccessRestriction, Settings, read_settings


def settings_of(**backend: Any) -> Settings:
    return read_settings(Config.from_dict({"backend": backend}))


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"externalAccess": {"type": "static"}}, "backend.auth.externalAccess must be a list"),
        ({"externalAccess": [{"options": {}}]}, "backend.auth.externalAccess[0] must be an object with a 'type'"),
        ({"externalAccess": ["static"]}, "backend.auth.externalAccess[0] must be an object with a 'type'"),
        (
            {"externalAccess": [{"type": "static"}, {"type": "static", "accessRestrictions": ["x"]}]},
            "backend.auth.externalAccess[1].accessRestrictions must be a list of {plugin: <id>}",
        ),
    ],
)
def test_bad_external_access_entries(auth: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_of(auth=auth)
    assert str(err.value) == f"Invalid config: {message}"


def test_external_access_types_keep_their_own_options_and_other_auth_keys_are_ignored() -> None:
    s = settings_of(
        auth={
            "keys": [{"any": "thing"}],  # the token system's
            "externalAccess": [
                {"type": "static", "options": {"token": "short"}},  # the static type checks its options itself
                {
                    "type": "legacy",
                    "options": {"secret": "s"},
                    "accessRestrictions": [
                        {"plugin": "catalog", "permission": ["catalog.entity.read"]},
                        {"plugin": "scaffolder", "permissionAttribute": {"action": "read"}},
                    ],
                },
            ],
        }
    )
    static, legacy = s.auth.external_access
    assert static.options == {"token": "short"} and static.access_restrictions is None
    assert legacy.access_restrictions == [
        AccessRestriction(plugin="catalog", permission=["catalog.entity.read"]),
        AccessRestriction(plugin="scaffolder", permission_attribute={"action": "read"}),
    ]
