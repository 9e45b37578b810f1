"""The ``peers`` scenario (``benchmarks/peers.py``, ``peer.py``, ``peer_memory.py``, ``peer_report.py``): a real
Backstage backend measured in the same rounds as the kernel rows, and a clear skip without Node.

Never a speed assertion: the targets' verdicts are checked on made-up rows only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from kernel_benchmarks.peer_memory import PeerUnavailable, backstage_idle_pss_mb
from kernel_benchmarks.report import add_ratios, table, targets
from kernel_benchmarks.rows import new_row
from tests.test_benchmarks import _run

BACKSTAGE_ROWS = ["backstage-hello", "backstage-auth", "backstage-proxy", "backstage-proxy-16mb", "backstage-pss"]
SKIP_LINE = "peers: skipped, Backstage not measured: node is not on PATH"


def test_ratios_and_targets_against_backstage() -> None:
    rows = [
        new_row("hello", "uvicorn", "1gw/1wk", rps=9000, p99_ms=4.0),
        new_row("hello", "uvicorn", "2gw/1wk", rps=100, p99_ms=4.0),
        new_row("auth", "uvicorn", "1gw/1wk", rps=8000, p99_ms=5.0),
        new_row("proxy", "uvicorn", "1gw/1wk", rps=3000, p99_ms=10.0),
        new_row("proxy-64mb", "uvicorn", "1gw/1wk", mb_s=300.0),
        new_row("backstage-hello", "uvicorn", rps=2000, p99_ms=20.0),
        new_row("backstage-auth", "uvicorn", rps=2000, p99_ms=20.0),
        new_row("backstage-proxy", "uvicorn", rps=1200, p99_ms=40.0),
        new_row("backstage-proxy-64mb", "uvicorn", mb_s=150.0),
        new_row("backstage-pss", "uvicorn", pss_mb=140.0, pss_load_mb=210.5),
        new_row("hello", "hypercorn", "1gw/1wk", rps=2000, p99_ms=12.0),
        new_row("backstage-hello", "hypercorn", rps=1500, p99_ms=20.0),
    ]
    add_ratios(rows)
    by = {(r["server"], r["scenario"], r["variant"]): r for r in rows}
    hello = by["uvicorn", "hello", "1gw/1wk"]
    assert (hello["x_backstage"], hello["p99_x_backstage"]) == (4.5, 0.2)
    assert by["uvicorn", "hello", "2gw/1wk"]["x_backstage"] is None  # the like-for-like variant only
    assert by["uvicorn", "auth", "1gw/1wk"]["x_backstage"] == 4.0
    assert by["uvicorn", "proxy-64mb", "1gw/1wk"]["x_backstage"] == 2.0  # MB/s, no p99
    assert by["uvicorn", "proxy-64mb", "1gw/1wk"]["p99_x_backstage"] is None
    assert by["uvicorn", "backstage-hello", ""]["ratio"] is None  # Backstage has no baseline ratio
    found = {t: (m, ok) for t, m, ok in targets(rows)}
    assert found["uvicorn: hello >= 3x Backstage req/s"] == ("4.50x (2000 req/s)", True)
    assert found["uvicorn: hello p99 <= 0.5x Backstage's p99"] == ("0.20x (4.0 vs 20.0 ms)", True)
    assert found["uvicorn: proxy >= 3x Backstage's proxy req/s"] == ("2.50x, p99 0.25x", False)
    assert found["uvicorn: proxy-64mb >= 1.5x Backstage's proxy MB/s"] == ("2.00x (300 vs 150 MB/s)", True)
    assert found["uvicorn: auth vs Backstage's static token (no target)"][1] is True
    assert found["uvicorn: Backstage PSS, idle / under load (a figure; the memory targets use it)"][0] == (
        "140.0 / 210.5 MB"
    )
    # the default server's target is 1.5x, and the p99 one holds there too
    assert found["hypercorn: hello >= 1.5x Backstage req/s"] == ("1.33x (1500 req/s)", False)
    assert found["hypercorn: hello p99 <= 0.5x Backstage's p99"][1] is False
    text = table(rows)
    assert "x Backstage" in text and "140.0/210.5" in text and "4.50" in text
    # the big download through Backstage's proxy is no kernel download: no RSS-growth target of the kernel's
    assert not [t for t in found if t.startswith("uvicorn: backstage-")]


@pytest.mark.timeout(240)
def test_smoke_peers_real_backstage_in_rounds(tmp_path: Path) -> None:
    """A real Backstage (NODE_ENV=production) beside the kernel rows it is compared with, in 2 rounds."""
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: the peers scenario runs a real Backstage on Node >= 20")
    args = ("--scenario", "peers", "--server", "hypercorn", "--hello-variants", "1x1", "--download-mb", "16")
    proc, rows = _run(tmp_path, *args, "--runs", "2", timeout=220)
    names = [r["scenario"] for r in rows]
    # peers brings the kernel rows it is compared with, and their baseline
    assert names == ["baseline", "hello", "auth", "proxy", "proxy-16mb", "download-16mb", *BACKSTAGE_ROWS]
    by = {r["scenario"]: r for r in rows}
    for name in ("backstage-hello", "backstage-auth", "backstage-proxy"):
        assert by[name]["rps"] > 0 and by[name]["errors"] == 0 and by[name]["rss_mb"] > 0
        assert "NODE_ENV=production" in by[name]["note"]
    assert by["backstage-proxy-16mb"]["mb_s"] > 0 and by["backstage-proxy-16mb"]["errors"] == 0
    assert by["backstage-pss"]["pss_mb"] > 0 and by["backstage-pss"]["pss_load_mb"] > 0
    for name in ("hello", "auth", "proxy", "proxy-16mb"):
        assert isinstance(by[name]["x_backstage"], float), name
    assert isinstance(by["hello"]["p99_x_backstage"], float)
    # every row is the median of the same 2 rounds, Backstage's and the kernel's alike
    assert {r["rounds"] for r in rows} == {2}
    for n in (1, 2):
        assert f"hello 1x1 on hypercorn (round {n}/2)" in proc.stderr
        assert f"peers on hypercorn (round {n}/2)" in proc.stderr
    assert "hypercorn: hello >= 1.5x Backstage req/s" in proc.stdout
    assert "hypercorn: proxy-16mb >= 1.5x Backstage's proxy MB/s" in proc.stdout
    assert "processes left behind: none" in proc.stdout

    # the memory scenario's helper: the same backend, idle, started and stopped
    mine = psutil.Process()
    assert 30 < backstage_idle_pss_mb(tmp_path) < 2000
    assert not [p for p in mine.children(recursive=True) if p.name() == "node"]


@pytest.mark.timeout(120)
def test_without_node_peers_skips_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"  # a PATH without node (wrk kept, so the load generator is the usual one)
    bin_dir.mkdir()
    if wrk := shutil.which("wrk"):
        (bin_dir / "wrk").symlink_to(wrk)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(PeerUnavailable, match="node is not on PATH"):
        backstage_idle_pss_mb(tmp_path)
    args = ("--scenario", "peers", "--server", "hypercorn", "--hello-variants", "1x1", "--download-mb", "8")
    proc, rows = _run(tmp_path, *args)
    assert "peers on hypercorn ..." in proc.stderr  # the scenario was tried
    lines = [line for line in proc.stdout.splitlines() if "Backstage" in line]
    assert len(lines) == 1 and lines[0].startswith(SKIP_LINE), proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr and "FAILED" not in proc.stderr
    names = [r["scenario"] for r in rows]
    assert "hello" in names and "proxy-8mb" in names  # the kernel's rows still measured
    assert not [n for n in names if n.startswith("backstage-")]
    assert "x Backstage" not in proc.stdout and "processes left behind: none" in proc.stdout
