"""``compact``: a dead process's values folded into the accumulated file of its type, by the type's rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from kernel.metrics.files import compact


def write(path: Path, values: dict[str, tuple[float, float]]) -> None:
    d = MmapedDict(str(path))
    for key, (value, timestamp) in values.items():
        d.write_value(key, value, timestamp)
    d.close()


def read(path: Path) -> dict[str, tuple[float, float]]:
    return {k: (v, t) for k, v, t, _ in MmapedDict.read_all_values_from_file(str(path))}


KEY = json.dumps(["m", "m", {"plugin_id": "x"}, "help"])
OTHER = json.dumps(["m", "m", {"plugin_id": "y"}, "help"])


@pytest.mark.parametrize(
    ("prefix", "merged"),
    [
        ("counter", (5.0, 20.0)),
        ("histogram", (5.0, 20.0)),
        ("gauge_sum", (5.0, 20.0)),
        ("gauge_max", (3.0, 20.0)),
        ("gauge_min", (2.0, 10.0)),
        ("gauge_mostrecent", (3.0, 20.0)),
    ],
)
def test_two_dead_processes_fold_into_one_file(tmp_path: Path, prefix: str, merged: tuple[float, float]) -> None:
    write(tmp_path / f"{prefix}_101.db", {KEY: (2.0, 10.0)})
    write(tmp_path / f"{prefix}_102.db", {KEY: (3.0, 20.0), OTHER: (7.0, 5.0)})
    assert compact(str(tmp_path), 101) == 1
    assert compact(str(tmp_path), 102) == 1
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [f"{prefix}_compacted.db"]
    assert read(tmp_path / f"{prefix}_compacted.db") == {KEY: merged, OTHER: (7.0, 5.0)}


def test_live_and_per_process_gauges_are_left_alone(tmp_path: Path) -> None:
    write(tmp_path / "gauge_all_101.db", {KEY: (1.0, 0.0)})
    write(tmp_path / "counter_102.db", {KEY: (1.0, 0.0)})
    assert compact(str(tmp_path), 101) == 0
    assert (tmp_path / "gauge_all_101.db").exists() and (tmp_path / "counter_102.db").exists()
