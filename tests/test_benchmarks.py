"""Smoke tests of ``python -m benchmarks``: it runs, reports and cleans up. Never a speed assertion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from benchmarks import SCENARIOS
from benchmarks.download import _Chunked
from benchmarks.loadgen import _lua_string, parse_wrk
from benchmarks.report import add_ratios, table, targets, targets_text
from benchmarks.runner import ROW_KEYS, echo_body, new_row

REPO = Path(__file__).resolve().parent.parent
REQUIRED = ("scenario", "server", "rps", "p50_ms", "p99_ms", "p999_ms", "errors", "rss_mb", "ratio")


def _run(tmp_path: Path, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    out = tmp_path / "rows.json"
    mark = uuid.uuid4().hex  # inherited by every process the run starts
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--duration", "1", "--warmup", "0", "--json", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "BENCH_SMOKE_MARK": mark},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())
    assert isinstance(rows, list)
    assert not _marked(mark), "processes left behind"
    return proc, rows


def _marked(mark: str) -> list[int]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("BENCH_SMOKE_MARK") == mark and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p.pid)
        except psutil.Error:
            pass
    return found


@pytest.mark.timeout(90)
def test_smoke_baseline_and_hello(tmp_path: Path) -> None:
    proc, rows = _run(tmp_path, "--scenario", "baseline,hello", "--server", "hypercorn", "--hello-variants", "1x1,2x2")
    assert [(r["scenario"], r["variant"]) for r in rows] == [
        ("baseline", ""),
        ("hello", "1gw/1wk"),
        ("hello", "2gw/2wk"),
    ]
    for r in rows:
        assert set(REQUIRED) <= set(r)
        assert r["server"] == "hypercorn"
        assert r["rps"] > 0 and r["p50_ms"] > 0 and r["p999_ms"] >= r["p99_ms"] >= r["p50_ms"]
        assert r["errors"] == 0
        assert r["rss_mb"] > 0 and isinstance(r["ratio"], float)
    assert rows[0]["ratio"] == 1.0
    hello = rows[1]
    assert hello["gateway_rss_mb"] > 0 and hello["worker_rss_mb"] > 0
    assert hello["ratio_of"] == "baseline rps"
    loadgen = "wrk" if shutil.which("wrk") else "python asyncio generator"
    assert f"load generator: {loadgen}" in proc.stdout
    assert "processes left behind: none" in proc.stdout
    assert "hello [2gw/2wk]" in proc.stdout


@pytest.mark.timeout(60)
def test_smoke_own_generator(tmp_path: Path) -> None:
    proc, rows = _run(tmp_path, "--scenario", "baseline", "--server", "hypercorn", "--loadgen", "python")
    assert [r["scenario"] for r in rows] == ["baseline"]
    assert rows[0]["rps"] > 0 and rows[0]["loadgen"].startswith("python asyncio generator (lower bound)")
    assert "load generator: python asyncio generator (lower bound)" in proc.stdout


def test_help_names_every_scenario() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0
    for name in ("baseline", "hello", "auth", "echo", "download", "startup", "recovery", "--json", "--plot"):
        assert name in proc.stdout
    for name in SCENARIOS:
        assert f"\n  {name} " in proc.stdout, f"--help does not describe {name}"


def test_unknown_scenario_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scenario", "nope"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "unknown scenario" in proc.stderr


WRK_TEXT = """\
Running 5s test @ http://127.0.0.1:1/x
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.17ms    2.51ms  29.51ms   85.19%
    Req/Sec     4.53k     0.98k    5.57k    73.33%
  Latency Distribution
     50%    6.33ms
     75%    6.77ms
     90%   11.79ms
     99%  713.46us
  13500 requests in 3.00s, 2.00MB read
  Non-2xx or 3xx responses: 7
Requests/sec:   4497.10
"""


def test_parse_wrk_json_line_and_text() -> None:
    line = (
        'BENCH_JSON {"requests": 100, "duration_us": 2000000, "bytes": 4096, "connect": 0, "read": 1, '
        '"write": 0, "status": 2, "timeout": 0, "p50": 1500.0, "p90": 2000.0, "p99": 3000.0, "p999": 9000.0, '
        '"max": 12000.0}'
    )
    r = parse_wrk(WRK_TEXT + line + "\n")
    assert (r.requests, r.rps, r.errors, r.p50_ms, r.p999_ms) == (100, 50.0, 3, 1.5, 9.0)
    t = parse_wrk(WRK_TEXT)
    assert (t.requests, t.seconds, t.errors) == (13500, 3.0, 7)
    assert (t.p50_ms, t.p99_ms, t.max_ms) == pytest.approx((6.33, 0.71346, 29.51))


def test_lua_string_escapes() -> None:
    assert _lua_string('a"b\\c\n') == '"a\\034b\\092c\\010"'


def test_chunked_counter_any_split() -> None:
    sizes = [5, 70000, 3]
    data = b"".join(b"%x\r\n" % n + b"z" * n + b"\r\n" for n in sizes) + b"0\r\n\r\n"
    for step in (1, 2, 7, 1000, len(data)):
        d = _Chunked()
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            d.feed(memoryview(piece), len(piece))
        assert d.done and d.body == sum(sizes)


def test_echo_body_is_1k_json() -> None:
    body = echo_body()
    assert len(body) == 1024 and json.loads(body)["kind"] == "bench"


def test_ratios_and_targets() -> None:
    rows = [
        new_row("baseline", "uvicorn", rps=1000, p99_ms=2.0),
        new_row("hello", "uvicorn", "1gw/1wk", rps=700, p99_ms=5.0, gateway_rss_mb=30.0, worker_rss_mb=45.0),
        new_row("download-1gb", "uvicorn", "1gw/1wk", mb_s=100.0, rss_growth_mb=1.0),
        new_row("baseline-download-1gb", "uvicorn", mb_s=400.0),
        new_row("startup", "uvicorn", "5 plugins", seconds=0.5),
    ]
    assert set(rows[0]) == set(ROW_KEYS)
    add_ratios(rows)
    assert rows[1]["ratio"] == 0.7 and rows[1]["p99_ratio"] == 2.5
    assert rows[2]["ratio"] == 0.25 and rows[2]["ratio_of"] == "baseline-download-1gb mb_s"
    assert rows[4]["ratio"] is None
    met = {t: ok for t, _, ok in targets(rows)}
    assert met["uvicorn: hello >= 0.6x baseline req/s"] is True
    assert met["uvicorn: hello p99 <= 2x baseline p99"] is False
    assert met["uvicorn: worker RSS <= 40 MB (hello-like plugin)"] is False
    assert met["uvicorn: download-1gb >= 0.5x baseline MB/s"] is False
    assert met["uvicorn: ready with 5 plugins <= 2 s"] is True
    assert "hello [1gw/1wk]" in table(rows)
    text = targets_text(rows)
    assert text.startswith("Targets (set for the median of 3 runs: --runs 3):\n")
    assert "MISS  uvicorn: hello p99 <= 2x baseline p99" in text and "issue" not in text.lower()


def test_proxy_ratios_and_targets() -> None:
    rows = [
        new_row("baseline", "hypercorn", rps=6000, p99_ms=8.0),
        new_row("proxy", "hypercorn", "1gw/1wk", rps=3000, p99_ms=16.0),
        new_row("hello", "hypercorn", "1gw/1wk", rps=4000, p99_ms=10.0),
        new_row("proxy-64mb", "hypercorn", "1gw/1wk", mb_s=300.0, rss_growth_mb=60.0),
        new_row("download-64mb", "hypercorn", "1gw/1wk", mb_s=600.0, rss_growth_mb=2.0),
    ]
    add_ratios(rows)
    assert (rows[1]["ratio"], rows[1]["ratio_of"], rows[1]["p99_ratio"]) == (0.5, "baseline rps", 2.0)
    assert (rows[3]["ratio"], rows[3]["ratio_of"]) == (0.5, "download-64mb mb_s")
    assert rows[4]["ratio"] is None  # no baseline-download-64mb in these rows
    found = {t: (m, ok) for t, m, ok in targets(rows)}
    assert found["hypercorn: proxy >= 0.6x hello req/s"] == ("0.75x hello, p99 1.60x hello's", True)
    assert found["hypercorn: proxy-64mb RSS growth < 50 MB in every process"][1] is False
    assert found["hypercorn: download-64mb RSS growth < 50 MB in every process"][1] is True
    assert "hypercorn: proxy-64mb >= 0.5x baseline MB/s" not in found
    assert found["hypercorn: proxy-64mb vs the plugin's own download-64mb (no target)"][0] == "300 MB/s = 0.50x"
    rows[2]["rps"] = 6000
    assert not {t: ok for t, _, ok in targets(rows)}["hypercorn: proxy >= 0.6x hello req/s"]
