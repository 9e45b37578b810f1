"""The ``insights`` config key (its schemas, ``kernel config check``) and the service id rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import yaml
from kernel_insights.config import InsightsBlock, InsightsConfig, valid_service_id

from kernel.api import ConfigError, read_section


def _check(tmp_path: Path, config: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``kernel config check`` on one file, as a user runs it (every installed package loaded)."""
    path = tmp_path / "app-config.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    environ = {k: v for k, v in os.environ.items() if k != "INSIGHTS_API_URL"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=60,
    )


SEED_CONFIG = "insights:\n  externalApiUrl: ${INSIGHTS_API_URL}\n"  # the seed's app-config.yaml


def test_config_check_accepts_the_seed_config_when_the_variable_is_set(tmp_path: Path) -> None:
    done = _check(tmp_path, SEED_CONFIG, {"INSIGHTS_API_URL": "http://insights.internal:8080/api"})
    assert done.returncode == 0, done.stderr
    assert "config OK" in done.stdout


@pytest.mark.parametrize("config", [SEED_CONFIG, "insights: {}\n", "insights:\n  externalApiUrl: null\n"])
def test_config_check_names_the_key_when_it_is_missing(tmp_path: Path, config: str) -> None:
    # an unset ${VAR} makes the key vanish (as in Backstage): `insights: {}` is left
    done = _check(tmp_path, config)
    assert done.returncode == 2  # a config error: 2, as `kernel serve`
    assert "'insights'" in done.stderr and "`externalApiUrl`" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"externalApiUrl": "insights.internal"}, "insights.externalApiUrl"),
        ({"externalApiUrl": "ftp://insights.internal"}, "insights.externalApiUrl"),
        ({"externalApiUrl": "http://user:pw@insights.internal"}, "insights.externalApiUrl"),
        ({"externalApiUrl": "http://insights.internal", "timeoutSeconds": 0}, "insights.timeoutSeconds"),
        ({"externalApiURL": "http://insights.internal"}, "externalApiURL"),  # a typo is not ignored
    ],
)
def test_config_check_names_an_invalid_key(tmp_path: Path, value: object, key: str) -> None:
    done = _check(tmp_path, {"insights": value})
    assert done.returncode == 2  # a config error: 2, as `kernel serve`
    assert key in done.stderr and "kernel-plugin-insights" in done.stderr, done.stderr


def test_config_check_accepts_a_config_without_insights(tmp_path: Path) -> None:
    # the plugin is installed everywhere: a kernel that does not use it must still start and check
    done = _check(tmp_path, {"app": {"title": "no insights here"}})
    assert done.returncode == 0, done.stderr


def test_the_schema_in_process() -> None:
    def read(data: object) -> InsightsConfig:
        return msgspec.convert(data, InsightsConfig, strict=False)

    assert read({}).external_api_url is msgspec.UNSET
    assert read({"externalApiUrl": "https://a.example/x/", "timeoutSeconds": "2.5"}) == InsightsConfig(
        "https://a.example/x/", 2.5
    )
    with pytest.raises(msgspec.ValidationError, match="externalApiUrl"):
        read({"externalApiUrl": "https://a.example/x?y=1"})
    with pytest.raises(msgspec.ValidationError, match="externalApiUrl"):
        msgspec.convert({}, InsightsBlock)
    msgspec.convert({"externalApiUrl": "anything: the plugin schema checks the value"}, InsightsBlock)

    class Cfg:
        def get_optional(self, key: str) -> object:
            return {"timeoutSeconds": -1} if key == "insights" else None

    with pytest.raises(ConfigError, match=r"insights\.timeoutSeconds"):
        read_section(Cfg(), "insights", InsightsConfig)


@pytest.mark.parametrize("good", ["payments-api", "a", "0", "svc-1-2", "a" * 63])
def test_valid_service_ids(good: str) -> None:
    assert valid_service_id(good)


@pytest.mark.parametrize(
    "bad", ["", "Bad_Id", "UPPER", "-x", "a" * 64, "a.b", "a/b", "..", "a b", "a\n", "é", "a%2Fb", "a\x00"]
)
def test_invalid_service_ids(bad: str) -> None:
    assert not valid_service_id(bad)
