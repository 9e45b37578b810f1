"""The ``memory`` scenario (``benchmarks/memory.py``): total PSS with workers spawned and forked from the zygote,
the cost per added plugin, worker start and restart, and Backstage's idle PSS beside them.

Never a speed or size assertion on the machine: the targets' verdicts are checked on made-up rows only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kernel_benchmarks.report import targets
from kernel_benchmarks.rows import new_row
from tests.test_benchmarks import _run


def test_memory_targets_against_backstage() -> None:
    rows = [
        new_row("memory", "auto", "zygote, 7 plugins", pss_mb=200.0, seconds=0.9),
        new_row("memory", "auto", "zygote, 20 plugins", pss_mb=330.0, seconds=1.4),
        new_row("memory-per-plugin", "auto", "zygote", pss_mb=10.0),
        new_row("memory-per-plugin", "auto", "spawn", pss_mb=23.0),
        new_row("worker-start", "auto", "zygote", seconds=0.02),
        new_row("worker-restart", "auto", "zygote", seconds=0.4),
        new_row("memory-backstage", "auto", "1 plugin", pss_mb=180.0),
    ]
    found = {t: (m, ok) for t, m, ok in targets(rows)}
    assert found["auto: PSS per added plugin <= 12 MB"] == ("10.0 MB (spawn: 23 MB)", True)
    assert found["auto: worker start <= 0.15 s"][1] is True
    assert found["auto: killed worker back < 0.3 s"][1] is False
    assert found["auto: ready with 7 plugins (>= 5) < 1 s"] == ("0.900 s", True)
    # 5 plugins: the 7-plugin total less two plugins at the per-plugin cost
    assert found["auto: kernel with 5 plugins <= Backstage with 1 (PSS)"] == (
        "180 MB (est. from 7) vs 180 MB = 1.00x",
        True,
    )
    assert found["auto: kernel with 20 plugins <= 2x Backstage with 1 (PSS)"] == ("330 MB vs 180 MB = 1.83x", True)


@pytest.mark.skipif(shutil.which("node") is None, reason="Backstage needs Node")
def test_smoke_memory(tmp_path: Path) -> None:
    proc, rows = _run(tmp_path, "--scenario", "memory", "--server", "auto", "--trials", "1", timeout=240)
    by = {(r["scenario"], r["variant"]): r for r in rows}
    for mode in ("spawn", "zygote"):
        assert by["memory-per-plugin", mode]["pss_mb"] > 0
        assert by["worker-start", mode]["seconds"] >= 0 and by["worker-restart", mode]["seconds"] > 0
    totals = [r for r in rows if r["scenario"] == "memory"]
    assert len(totals) == 4 and all(r["pss_mb"] > 0 and r["errors"] == 0 for r in totals)
    assert by["memory-backstage", "1 plugin"]["pss_mb"] > 0
    assert "kernel with 20 plugins <= 2x Backstage with 1 (PSS)" in proc.stdout
