"""The ``frobsAggregator`` config key: its schemas, ``kernel config check``, and a bad value at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import yaml
from frobs_support import start_kernel
from kernel_frobs_aggregator.config import FrobsAggregatorBlock, FrobsAggregatorConfig, missing_keys

from kernel.api import ConfigError, read_section
from kernel.testing import wait_for

SEED = {"frobsUrl": "https://api.frobsco.com/v1", "flerpsUrl": "http://flerps.partnercompany.com:8080"}


def _check(tmp_path: Path, config: object) -> subprocess.CompletedProcess[str]:
    """``kernel config check`` on one file, as a user runs it (every installed package loaded)."""
    path = tmp_path / "app-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )


def test_config_check_accepts_the_seed_upstreams(tmp_path: Path) -> None:
    done = _check(tmp_path, {"frobsAggregator": {**SEED, "timeoutSeconds": "2.5", "flerpsCacheTtlSeconds": 60}})
    assert done.returncode == 0, done.stderr
    assert "config OK" in done.stdout


def test_config_check_accepts_a_config_without_the_block(tmp_path: Path) -> None:
    # installed everywhere: a kernel that does not use the plugin must still check and start
    done = _check(tmp_path, {"app": {"title": "no frobs here"}})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("block", "says"),
    [
        ({"frobsUrl": SEED["frobsUrl"]}, "missing required field `flerpsUrl`"),
        ({}, "missing required field `frobsUrl`"),
        ({**SEED, "frobsUrl": "api.frobsco.com"}, "`frobsAggregator.frobsUrl`"),
        ({**SEED, "flerpsUrl": "http://user:pw@flerps"}, "`frobsAggregator.flerpsUrl`"),
        ({**SEED, "timeoutSeconds": 0}, "`frobsAggregator.timeoutSeconds`"),
        ({**SEED, "flerpsCacheTtlSeconds": -5}, "`frobsAggregator.flerpsCacheTtlSeconds`"),
        ({**SEED, "flerpsCacheTTLSeconds": 5}, "unknown field `flerpsCacheTTLSeconds`"),  # a typo is not ignored
    ],
)
def test_config_check_names_what_is_wrong(tmp_path: Path, block: dict[str, object], says: str) -> None:
    done = _check(tmp_path, {"frobsAggregator": block})
    assert done.returncode == 2, done.stdout  # a config error: 2, as `kernel serve`
    assert "'frobsAggregator'" in done.stderr and says in done.stderr, done.stderr


def test_an_invalid_value_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    kernel = start_kernel(tmp_path, {"frobsAggregator": {**SEED, "timeoutSeconds": 301}}, wait=False)
    try:
        code = wait_for(lambda: kernel.proc is not None and kernel.proc.poll(), 30, kernel.output)
        assert code == 1
        assert "frobs-aggregator" in kernel.output() and "frobsAggregator.timeoutSeconds" in kernel.output()
    finally:
        kernel.stop()


def test_the_schemas_in_process() -> None:
    def read(data: object) -> FrobsAggregatorConfig:
        return msgspec.convert(data, FrobsAggregatorConfig, strict=False)

    empty = read({})
    assert missing_keys(empty) == ["frobsAggregator.frobsUrl", "frobsAggregator.flerpsUrl"]
    assert (empty.timeout_seconds, empty.flerps_cache_ttl_seconds, empty.fallback_ttl_seconds) == (5, 300, 86400)
    assert missing_keys(read({"flerpsUrl": SEED["flerpsUrl"]})) == ["frobsAggregator.frobsUrl"]
    full = read({**SEED, "timeoutSeconds": "1.5"})
    assert missing_keys(full) == [] and full.timeout_seconds == 1.5
    msgspec.convert(SEED, FrobsAggregatorBlock)
    with pytest.raises(msgspec.ValidationError, match="flerpsUrl"):
        msgspec.convert({"frobsUrl": SEED["frobsUrl"]}, FrobsAggregatorBlock)

    class Cfg:
        def get_optional(self, key: str) -> object:
            return {**SEED, "fallbackTtlSeconds": 0} if key == "frobsAggregator" else None

    with pytest.raises(ConfigError, match=r"frobsAggregator\.fallbackTtlSeconds"):
        read_section(Cfg(), "frobsAggregator", FrobsAggregatorConfig)
