"""kernel.settings.schema: the one typed schema of the kernel's settings, its defaults and its errors."""

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
