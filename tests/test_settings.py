"""kernel.settings: the one typed schema of the kernel's settings, its defaults and its errors."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from kernel.config import Config, ConfigError
from kernel.settings import (
    AccessRestriction,
    AuthSettings,
    ExternalAccess,
    Listen,
    LoggingSettings,
    ReloadSettings,
    Settings,
    merge,
    read_logging_settings,
    read_reload_settings,
    read_section,
    read_settings,
)


def settings_of(**backend: Any) -> Settings:
    return read_settings(Config.from_dict({"backend": backend}))


def test_defaults() -> None:
    s = read_settings(Config.from_dict({}))
    assert s == Settings()
    assert (s.listen.host, s.listen.port, s.base_url, s.gateway.mount) == ("0.0.0.0", 7007, None, "/api")
    assert s.gateway.request_timeout == 30.0 and s.logging == LoggingSettings() and s.reload == ReloadSettings()
    assert s.auth == AuthSettings(external_access=[])


def test_every_section_is_read_and_strings_convert() -> None:
    s = settings_of(
        baseUrl="https://example.com",
        listen={"port": "7100"},
        gateway={"processes": 2, "requestTimeout": "2.5"},
        workers={"replicas": 3, "plugins": {"a": {"replicas": 1}}},
        startup={"plugins": {"a": {"onPluginBootFailure": "continue"}}},
        logging={"level": "debug", "plugins": {"a": {"level": "error"}}},
        config={"reload": {"enabled": "true", "pollSeconds": 2}},
        auth={
            "externalAccess": [{"type": "static", "options": {"token": "t"}, "accessRestrictions": [{"plugin": "a"}]}]
        },
    )
    assert s.base_url == "https://example.com" and s.listen == Listen(port=7100)
    assert s.gateway.processes == 2 and s.gateway.request_timeout == 2.5
    assert (s.replicas("a"), s.replicas("b")) == (1, 3)
    assert (s.boot_policy("a"), s.boot_policy("b")) == ("continue", "abort")
    assert s.logging.level == "debug" and s.logging.plugins["a"].level == "error"
    assert s.reload == ReloadSettings(enabled=True, poll_seconds=2.0)
    assert s.auth.external_access == [
        ExternalAccess(type="static", options={"token": "t"}, access_restrictions=[AccessRestriction(plugin="a")])
    ]


def test_settings_are_plain_data_for_the_wire() -> None:
    s = settings_of(listen={"port": 9}, auth={"externalAccess": [{"type": "jwks", "options": {"url": "u"}}]})
    assert msgspec.json.decode(msgspec.json.encode(s), type=Settings) == s


@pytest.mark.parametrize(
    ("backend", "key"),
    [
        ({"gateway": {"processes": 0}}, "backend.gateway.processes"),
        ({"listen": {"port": "nope"}}, "backend.listen.port"),
        ({"gateway": {"server": "apache"}}, "backend.gateway.server"),
        ({"workers": {"replicaz": 1}}, "backend.workers"),
        ({"baseUrl": 5}, "backend.baseUrl"),
        ({"logging": {"level": "loud"}}, "backend.logging.level"),
        ({"config": {"reload": {"intervalSeconds": -1}}}, "backend.config.reload.intervalSeconds"),
        ({"auth": {"externalAccess": [{"type": 3}]}}, "backend.auth.externalAccess[0].type"),
    ],
)
def test_a_mistake_names_the_key(backend: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        settings_of(**backend)


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


# ---------------------------------------------------------------------------- logging and reload sections


def test_reload_settings_defaults_and_errors() -> None:
    assert read_reload_settings(Config.from_dict({})) == ReloadSettings()
    cfg = Config.from_dict({"backend": {"config": {"reload": {"enabled": True, "intervalSeconds": "5"}}}})
    assert read_reload_settings(cfg) == ReloadSettings(enabled=True, interval_seconds=5.0)
    with pytest.raises(ConfigError, match="backend.config.reload.pollSeconds"):
        read_reload_settings(Config.from_dict({"backend": {"config": {"reload": {"pollSeconds": 0}}}}))
    with pytest.raises(ConfigError, match="backend.config.reload"):
        read_reload_settings(Config.from_dict({"backend": {"config": {"reload": {"enabeld": True}}}}))


@pytest.mark.parametrize(
    ("logging_config", "key"),
    [
        ({"level": "loud"}, "backend.logging.level"),
        ({"format": "xml"}, "backend.logging.format"),
        ({"plugins": {"x": {"level": "nope"}}}, "backend.logging.plugins.x.level"),
        ({"levle": "info"}, "backend.logging"),
    ],
)
def test_bad_logging_config_names_the_key(logging_config: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        read_logging_settings(Config.from_dict({"backend": {"logging": logging_config}}))


# ---------------------------------------------------------------------------- the pure helpers


def test_merge_deep_merges_objects_and_replaces_the_rest() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge(base, {"a": {"c": [3], "e": None}, "d": {"x": 1}}) == {
        "a": {"b": 1, "c": [3], "e": None},
        "d": {"x": 1},
    }
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # the input is untouched
    assert merge({"a": 1}, 2) == 2


def test_read_section_converts_and_names_the_full_key() -> None:
    config = Config.from_dict({"backend": {"listen": {"port": "8080"}}})
    assert read_section(config, "backend.listen", Listen) == Listen(port=8080)
    assert read_section(config, "backend.absent", Listen) == Listen()
    with pytest.raises(ConfigError, match=r"Invalid config under 'backend.listen': .*`backend.listen.host`"):
        read_section(Config.from_dict({"backend": {"listen": {"host": 1}}}), "backend.listen", Listen)


def test_read_section_names_list_items_under_the_key() -> None:
    config = Config.from_dict({"items": [{"port": 1}, {"port": "x"}]})
    with pytest.raises(ConfigError, match=r"Invalid config under 'items': .* - at `items\[1\]\.port`"):
        read_section(config, "items", list[Listen])
