"""kernel.settings.edge: the HTTP edge's keys, the reference system's shapes and defaults, and their errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from kernel.config import Config, ConfigError
from kernel.settings import Certificate, EdgeSettings, HttpsSettings, RateLimitSettings, Settings, read_settings


def edge_of(**backend: Any) -> EdgeSettings:
    return read_settings(Config.from_dict({"backend": backend})).edge


def test_defaults() -> None:
    edge = edge_of()
    assert edge == EdgeSettings() == Settings().edge
    assert edge.cors is None and edge.rate_limit is None and edge.https is None and edge.trust_proxy is False
    assert edge.compression.enabled and edge.compression.threshold == 1024
    assert edge.access_log.enabled and edge.request_id.enabled
    limits = RateLimitSettings()  # the reference system's defaults once enabled
    assert (limits.window, limits.incoming_request_limit, limits.global_) == (60.0, 5, True)
    assert limits.ip_allow_list == ["127.0.0.1", "0:0:0:0:0:0:0:1", "::1"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        ("true", True),
        (False, False),
        (2, 2),
        ("2", 2),
        ("loopback, 10.0.0.0/8", ["loopback", "10.0.0.0/8"]),
    ],
)
def test_trust_proxy_forms(value: Any, expected: Any) -> None:
    assert edge_of(trustProxy=value).trust_proxy == expected


def test_https_forms() -> None:
    assert edge_of(https=True).https == HttpsSettings()
    cert = {"certificate": {"cert": "a.pem", "key": "k.pem"}}
    assert edge_of(https=cert).https == HttpsSettings(Certificate("a.pem", "k.pem"))


def test_edge_settings_travel_on_the_wire() -> None:
    settings = read_settings(
        Config.from_dict({"backend": {"cors": {"origin": ["*"]}, "rateLimit": {"window": 1000}, "trustProxy": 1}})
    )
    assert msgspec.json.decode(msgspec.json.encode(settings), type=Settings) == settings


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ({"cors": {"origins": ["x"]}}, "backend.cors"),
        ({"cors": {"optionsSuccessStatus": 404}}, "backend.cors.optionsSuccessStatus"),
        ({"csp": {"script-src": True}}, "backend.csp.script-src"),
        ({"csp": {"script-src": "'self'"}}, "backend.csp"),
        ({"securityHeaders": {"X-Frame-Options": True}}, "backend.securityHeaders.X-Frame-Options"),
        ({"rateLimit": {"window": "soon"}}, "backend.rateLimit.window"),
        ({"rateLimit": {"window": 0}}, "backend.rateLimit.window"),
        ({"rateLimit": {"plugin": {"a": {"window": "x"}}}}, "backend.rateLimit.plugin.a.window"),
        ({"rateLimit": {"incomingRequestLimit": -1}}, "backend.rateLimit.incomingRequestLimit"),
        ({"rateLimit": {"store": {"type": "redis"}}}, "backend.rateLimit.store"),
        ({"rateLimit": {"store": {"type": "memcache"}}}, "backend.rateLimit.store.type"),
        ({"rateLimit": 5}, "backend.rateLimit"),
        ({"trustProxy": "proxy.example"}, "backend.trustProxy"),
        ({"trustProxy": -1}, "backend.trustProxy"),
        ({"https": {}}, "backend.https"),
        ({"https": {"certificate": {"cert": "a"}}}, "backend.https.certificate"),
        ({"compression": {"level": 11}}, "backend.compression.level"),
        ({"accessLog": {"enabeld": False}}, "backend.accessLog"),
        ({"health": {"headers": {"x": 1}}}, "backend.health.headers"),
    ],
)
def test_a_mistake_names_the_key(backend: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        edge_of(**backend)


def test_the_readmes_example_is_valid_config() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Operating: the HTTP edge", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = yaml.safe_load(block)
    cert = config["backend"]["https"]["certificate"]
    assert cert == {"cert": {"$file": "tls/cert.pem"}, "key": {"$file": "tls/key.pem"}}
    config["backend"]["https"]["certificate"] = {"cert": "tls/cert.pem", "key": "tls/key.pem"}  # $file read
    edge = read_settings(Config.from_dict(config)).edge
    assert edge.cors is not None and edge.rate_limit is not None and edge.rate_limit.window == 60.0
    assert edge.trust_proxy == ["loopback", "10.0.0.0/8"] and edge.https == HttpsSettings(
        Certificate("tls/cert.pem", "tls/key.pem")
    )
