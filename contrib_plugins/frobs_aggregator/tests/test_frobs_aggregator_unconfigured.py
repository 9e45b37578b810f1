"""A kernel without ``frobsAggregator``: the plugin starts, answers 503 naming the keys, and does nothing else;
a config reload then configures it without a restart.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from frobs_support import FLERPS, FROBS, FakeApi, assert_error, expected, ok, start_kernel, summary

from kernel.api import merge_config
from kernel.testing import KernelProcess, wait_for

#: reloads on; workers spawned, not forked from the zygote (which preloads aiohttp for every worker,
#: shared): so the worker's memory map shows what the plugin itself loaded
RELOAD = {"backend": {"config": {"reload": {"enabled": True, "pollSeconds": 0.1}}, "workers": {"zygote": False}}}


@pytest.fixture(scope="module")
def apis() -> Iterator[tuple[FakeApi, FakeApi]]:
    frobs, flerps = FakeApi("/list", FROBS).start(), FakeApi("/flerp-batch", FLERPS).start()
    yield frobs, flerps
    frobs.stop()
    flerps.stop()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("frobs-unconfigured")


@pytest.fixture(scope="module")
def kernel(data_dir: Path) -> Iterator[KernelProcess]:
    k = start_kernel(data_dir, RELOAD)
    yield k
    k.stop()


def _reconfigure(kernel: KernelProcess, block: dict[str, Any]) -> None:
    """Replace the kernel's config file by one with ``frobsAggregator: block`` (the kernel reloads it)."""
    config = yaml.safe_load(kernel.config_path.read_text())
    config["frobsAggregator"] = block
    staged = kernel.config_path.with_suffix(".staged")
    staged.write_text(yaml.safe_dump(merge_config(config, RELOAD)))
    staged.replace(kernel.config_path)  # atomic: the kernel never reads a half-written file


def _worker_maps(kernel: KernelProcess) -> str:
    """The memory map of the plugin's worker process: which shared libraries it has loaded."""
    found = re.search(r"plugin 'frobs-aggregator' is ready \(worker pid (\d+)\)", kernel.output())
    assert found, kernel.output()
    return Path(f"/proc/{found.group(1)}/maps").read_text()


def test_summary_is_503_naming_both_missing_keys(kernel: KernelProcess) -> None:
    message = assert_error(summary(kernel), 503, "ServiceUnavailableError")
    assert message == (
        "The frobs-aggregator plugin is not configured: set frobsAggregator.frobsUrl and frobsAggregator.flerpsUrl"
    )
    wait_for(lambda: "frobsAggregator.frobsUrl and frobsAggregator.flerpsUrl not configured" in kernel.output(), 10)


def test_nothing_else_happens(kernel: KernelProcess, data_dir: Path) -> None:
    assert_error(summary(kernel), 503, "ServiceUnavailableError")
    assert not (data_dir / "data" / "frobs-aggregator.sqlite").exists()  # no database, no migration
    assert "aiohttp" not in _worker_maps(kernel)  # no HTTP client even loaded


def test_a_reload_naming_one_url_names_the_other(kernel: KernelProcess, apis: tuple[FakeApi, FakeApi]) -> None:
    frobs, _ = apis
    _reconfigure(kernel, {"frobsUrl": frobs.url})
    expected_message = "The frobs-aggregator plugin is not configured: set frobsAggregator.flerpsUrl"
    wait_for(lambda: summary(kernel).json()["error"]["message"] == expected_message, 10, interval=0.1)
    assert frobs.hits == []


def test_a_reload_completing_the_block_makes_summary_work(
    kernel: KernelProcess, apis: tuple[FakeApi, FakeApi], data_dir: Path
) -> None:
    frobs, flerps = apis
    _reconfigure(kernel, {"frobsUrl": frobs.url, "flerpsUrl": flerps.url})
    wait_for(lambda: summary(kernel).status_code == 200, 10, interval=0.1)
    body = ok(kernel)
    assert body["frobs"] == expected(FROBS, "status", "byStatus")
    assert body["flerps"] == expected(FLERPS, "kind", "byKind")
    assert body["summariesServed"] == 2  # the first 200 of the wait, then this one
    assert (data_dir / "data" / "frobs-aggregator.sqlite").exists()
    assert "aiohttp" in _worker_maps(kernel)  # the same worker: loaded now, on first use


def test_an_invalid_reload_is_refused_and_the_config_kept(kernel: KernelProcess, apis: tuple[FakeApi, FakeApi]) -> None:
    frobs, flerps = apis
    _reconfigure(kernel, {"frobsUrl": "not a url", "flerpsUrl": flerps.url})
    wait_for(lambda: "frobsAggregator config reload refused" in kernel.output(), 10, kernel.output)
    assert "frobsAggregator.frobsUrl" in kernel.output()
    assert ok(kernel)["partial"] is False
    assert frobs.hits[-1] == "/list"
