"""Smoke tests of ``python -m benchmarks``: it runs, reports and cleans up. Never a speed assertion."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from xml.etree import ElementTree

import psutil
import pytest

from kernel.testing import free_port
from kernel_benchmarks import ON_REQUEST, SCENARIOS
from kernel_benchmarks.cli import chosen, parser
from kernel_benchmarks.download import _Chunked
from kernel_benchmarks.loadgen import Load, _lua_string, parse_wrk
from kernel_benchmarks.openloop import Histogram, Interval, OpenLoop
from kernel_benchmarks.procs import BaselineServer, Proc
from kernel_benchmarks.report import add_ratios, table, targets, targets_text
from kernel_benchmarks.rows import ROW_KEYS, echo_body, merge_rounds, new_row
from kernel_benchmarks.scenarios import REGISTRY
from kernel_benchmarks.soak_report import analyse, soak_text
from kernel_benchmarks.svg import nice_ticks
from kernel_benchmarks.upload import _PATTERN, _check, upload

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
    proc, rows = _run(
        tmp_path, "--scenario", "baseline,hello,hello-composed", "--server", "hypercorn", "--hello-variants", "1x1,2x2"
    )
    assert [(r["scenario"], r["variant"]) for r in rows] == [
        ("baseline", ""),
        ("hello", "1gw/1wk"),
        ("hello", "2gw/2wk"),
        ("hello-composed", ""),
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
    composed = rows[3]  # the composed gateway in one process: the bench plugin answered through it
    assert composed["ratio_of"] == "baseline rps" and composed["note"].startswith("gateway composed in 1 process")


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


def test_every_scenario_is_registered_once() -> None:
    """The runner finds each scenario in the one list (``benchmarks.scenarios``), in the order of ``SCENARIOS``."""
    assert list(REGISTRY) == list(SCENARIOS)
    assert all(callable(s.rows) for s in REGISTRY.values())


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
    assert met["uvicorn: worker RSS (hello-like plugin; no target)"] is True  # PSS, in the memory scenario
    assert met["uvicorn: download-1gb >= 0.8x baseline MB/s"] is False
    assert met["uvicorn: ready with 5 plugins <= 2 s"] is True
    assert "hello [1gw/1wk]" in table(rows)
    text = targets_text(rows)
    assert text.startswith("Targets (set for the median of 3 runs: --runs 3):\n")
    assert "MISS  uvicorn: hello p99 <= 2x baseline p99" in text and "issue" not in text.lower()


def test_side_by_side_targets() -> None:
    """The second kernel of a pair carries its ratio to the first (``side_by_side``); the targets read it."""
    rows = [
        new_row("hello-quiet", "auto", "1gw/1wk", rps=1000),
        new_row("hello-observed", "auto", "1gw/1wk", rps=960, ratio=0.96, ratio_of="hello-quiet rps"),
        new_row("hello-open", "auto", "1gw/1wk", rps=1000, pss_mb=200.0),
        new_row("hello-isolated", "auto", "1gw/1wk", rps=900, ratio=0.9, ratio_of="hello-open rps", pss_mb=320.0),
    ]
    met = {t: ok for t, _, ok in targets(rows)}
    assert met["auto: hello with access log, request ids, metrics >= 0.95x without"] is True
    assert met["auto: hello with every plugin isolated >= 0.95x without"] is False
    assert "320" in table(rows)


def test_proxy_ratios_and_targets() -> None:
    rows = [
        new_row("baseline", "hypercorn", rps=6000, p99_ms=8.0),
        new_row("proxy", "hypercorn", "1gw/1wk", rps=3000, p99_ms=16.0),
        new_row("hello", "hypercorn", "1gw/1wk", rps=3600, p99_ms=10.0),
        new_row("proxy-64mb", "hypercorn", "1gw/1wk", mb_s=300.0, rss_growth_mb=60.0),
        new_row("download-64mb", "hypercorn", "1gw/1wk", mb_s=600.0, rss_growth_mb=2.0),
    ]
    add_ratios(rows)
    assert (rows[1]["ratio"], rows[1]["ratio_of"], rows[1]["p99_ratio"]) == (0.5, "baseline rps", 2.0)
    assert (rows[3]["ratio"], rows[3]["ratio_of"]) == (0.5, "download-64mb mb_s")
    assert rows[4]["ratio"] is None  # no baseline-download-64mb in these rows
    found = {t: (m, ok) for t, m, ok in targets(rows)}
    assert found["hypercorn: proxy >= 0.8x hello req/s"] == ("0.83x hello, p99 1.60x hello's", True)
    assert found["hypercorn: proxy-64mb RSS growth < 50 MB in every process"][1] is False
    assert found["hypercorn: download-64mb RSS growth < 50 MB in every process"][1] is True
    assert "hypercorn: proxy-64mb >= 0.8x baseline MB/s" not in found
    assert found["hypercorn: proxy-64mb vs the plugin's own download-64mb (no target)"][0] == "300 MB/s = 0.50x"
    uploads = [
        new_row("proxy-upload-64mb", "hypercorn", "1gw/1wk", mb_s=200.0, rss_growth_mb=3.0),
        new_row("upload-64mb", "hypercorn", "1gw/1wk", mb_s=400.0, rss_growth_mb=51.0),
        new_row("baseline-upload-64mb", "hypercorn", mb_s=800.0, rss_growth_mb=0.5),
    ]
    add_ratios(uploads)
    assert [(r["ratio"], r["ratio_of"]) for r in uploads] == [
        (0.5, "upload-64mb mb_s"),
        (0.5, "baseline-upload-64mb mb_s"),
        (1.0, "baseline-upload-64mb mb_s"),
    ]
    found = {t: (m, ok) for t, m, ok in targets(uploads)}
    assert found["hypercorn: proxy-upload-64mb RSS growth < 50 MB in every process"][1] is True
    assert found["hypercorn: upload-64mb RSS growth < 50 MB in every process"][1] is False
    assert found["hypercorn: proxy-upload-64mb vs the plugin's own upload-64mb (no target)"][0] == "200 MB/s = 0.50x"
    assert found["hypercorn: upload-64mb vs in-process baseline-upload-64mb (no target)"][0] == "400 MB/s = 0.50x"
    assert not [t for t in found if "baseline-upload" in t.split(":")[1].split()[0]]  # no target of its own
    rows[2]["rps"] = 6000
    assert not {t: ok for t, _, ok in targets(rows)}["hypercorn: proxy >= 0.8x hello req/s"]


@pytest.mark.timeout(90)
def test_smoke_proxy_upload(tmp_path: Path) -> None:
    """8 MiB POSTed through the proxy, to the bench plugin's own route and to the baseline app: each counted."""
    proc, rows = _run(tmp_path, "--scenario", "proxy-upload-1gb", "--server", "auto", "--download-mb", "8")
    assert [(r["scenario"], r["variant"]) for r in rows] == [
        ("proxy-upload-8mb", "1gw/1wk"),
        ("upload-8mb", "1gw/1wk"),
        ("baseline-upload-8mb", ""),
    ]
    for r in rows:
        assert r["errors"] == 0 and r["mb_s"] > 0 and r["loadgen"] == "upload client"
        assert f"the handler read all {8 * 1024**2} bytes" in r["note"], r["note"]
        assert r["rss_growth_mb"] is not None
    big, own, base = rows
    for r in (big, own):
        assert r["gateway_rss_growth_mb"] is not None and r["worker_rss_growth_mb"] is not None
        assert r["gateway_rss_mb"] > 0 and r["worker_rss_mb"] > 0
    assert big["ratio_of"] == "upload-8mb mb_s" and own["ratio_of"] == "baseline-upload-8mb mb_s"
    assert base["ratio"] == 1.0 and base["gateway_rss_mb"] is None  # the baseline app: one process
    assert "proxy-upload-8mb RSS growth < 50 MB in every process" in proc.stdout
    assert "upload-8mb vs in-process baseline-upload-8mb (no target)" in proc.stdout
    assert "processes left behind: none" in proc.stdout


@pytest.mark.timeout(60)
def test_upload_client_digest_and_refusal(tmp_path: Path) -> None:
    """The client's body arrives whole (sha256 of what it sent); an early refusal is an error with its status."""
    size = 3 * len(_PATTERN) + 5  # the last piece a slice of the block
    server = BaselineServer("uvicorn", tmp_path).start()
    try:
        ok = upload(f"{server.url}/upload?sha256=1", size, deadline_s=30, sha256=True)
        refused = upload(f"{server.url}/hello", size, deadline_s=30)  # GET only: 405, maybe before the body is sent
    finally:
        server.stop()
    assert ok.complete and ok.status == 200 and ok.body_bytes == size and ok.error == ""
    assert json.loads(ok.answer)["bytes"] == size
    assert not refused.complete and refused.status == 405 and "405" in refused.error
    # the checks the rows rely on: a short count or a wrong digest is an error
    assert _check(200, '{"bytes": 4}', 5, None) == "the server read 4 bytes of 5"
    assert _check(200, '{"bytes": 5, "sha256": "00"}', 5, "ff").startswith("sha256 00 is not")
    assert _check(200, '{"bytes": 5}', 5, None) == ""


def test_rounds_merge_into_one_row_each() -> None:
    """``--runs N`` runs N rounds; a row is merged over them: medians, errors summed, peaks kept."""
    rounds = [
        [new_row("hello", "h", "1gw/1wk", rps=100, p99_ms=3.0, errors=1, rss_mb=50.0, loadgen="wrk", note="n")],
        [
            new_row("hello", "h", "1gw/1wk", rps=300, p99_ms=1.0, errors=0, rss_mb=70.0, loadgen="wrk", note="n"),
            new_row("backstage-hello", "h", rps=10),
        ],
        [new_row("hello", "h", "1gw/1wk", rps=200, p99_ms=2.0, errors=2, rss_mb=60.0, note="MOSTLY ERRORS: x")],
    ]
    hello, peer = merge_rounds(rounds)
    assert (hello["rps"], hello["p99_ms"], hello["errors"], hello["rss_mb"]) == (200, 2.0, 3, 70.0)
    assert (hello["rounds"], hello["loadgen"], hello["note"]) == (3, "wrk", "MOSTLY ERRORS: x")
    assert (peer["scenario"], peer["rps"], peer["rounds"]) == ("backstage-hello", 10, 1)
    assert merge_rounds([rounds[0]]) == rounds[0]


# -- soak ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_smoke_soak(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    proc, rows = _run(
        tmp_path,
        "soak",
        "--minutes",
        "0.1",
        "--fraction",
        "0.02",
        "--capacity-seconds",
        "2",
        "--sample-seconds",
        "1",
        "--soak-dir",
        str(out),
    )
    assert [(r["scenario"], r["variant"], r["server"]) for r in rows] == [("soak", "1gw/1wk", "auto")]
    row = rows[0]
    assert set(ROW_KEYS) <= set(row) and row["errors"] == 0 and row["rps"] > 0
    files = row["soak"]
    assert {Path(files[k]).parent for k in ("json", "plot", "text")} == {out}

    doc = json.loads(Path(files["json"]).read_text())
    result = doc["result"]
    assert doc["capacity"]["rps"] > 0 and doc["rate"] == pytest.approx(0.02 * doc["capacity"]["rps"], rel=0.01)
    sent = sum(i["sent"] for i in doc["intervals"])
    assert sent == result["sent"] > 0
    assert sum(i["ok"] + i["errors"] for i in doc["intervals"]) == sent  # every request accounted for
    assert result["errors"] == 0 and result["ok"] == sent
    assert len(doc["samples"]) >= 5
    roles = {(p["role"], p["plugin"]) for p in result["processes"]}
    assert {("kernel", ""), ("gateway", ""), ("worker", "bench")} <= roles
    for p in result["processes"]:
        assert p["first_mb"] > 0 and p["last_mb"] > 0 and isinstance(p["flat"], bool)
        assert all(str(p["pid"]) in s["rss_mb"] for s in doc["samples"])
    assert result["passed"] is row["soak"]["passed"] is (not result["reasons"])

    svg_root = ElementTree.parse(files["plot"]).getroot()
    assert svg_root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t.text or "" for t in svg_root.iter("{http://www.w3.org/2000/svg}text"))
    assert "RSS of every kernel process" in texts and "latency per 1 s interval" in texts and "supervisor" in texts
    assert len(list(svg_root.iter("{http://www.w3.org/2000/svg}polyline"))) >= len(result["processes"]) + 2

    text = Path(files["text"]).read_text()
    assert "verdict: PASS" in text or "verdict: FAIL" in text
    for label in ("process", "first MB", "last MB", "growth MB", "supervisor", "worker bench", "gateway"):
        assert label in text
    assert text.splitlines()[0] in proc.stdout  # the report is printed too
    assert "soak (0.1 min at 0.02 x " in proc.stdout  # and its target line


def test_open_loop_counts_connect_errors() -> None:
    port = free_port()  # nothing listens there
    intervals = OpenLoop(Load(f"http://127.0.0.1:{port}/x"), rate=200, duration=0.5, interval=0.2).run()
    sent = sum(i.sent for i in intervals)
    assert sent == 100
    assert sum(i.errors for i in intervals) == sent and sum(i.ok for i in intervals) == 0
    assert {k for i in intervals for k in i.kinds} == {"connect"}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway

    def do_GET(self) -> None:
        status = 503 if self.path == "/bad" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_open_loop_constant_rate_and_status_errors() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        good = OpenLoop(Load(url + "/ok"), rate=100, duration=1.0, interval=0.25).run()
        bad = OpenLoop(Load(url + "/bad"), rate=100, duration=0.3, interval=0.25).run()
    finally:
        server.shutdown()
        server.server_close()
    assert [sum(i.sent for i in r) for r in (good, bad)] == [100, 30]
    assert sum(i.ok for i in good) == 100 and sum(i.errors for i in good) == 0
    assert [i.sent for i in good[:4]] == [25, 25, 25, 25]  # on schedule, whatever the answers do
    assert all(i.latency.n == i.ok for i in good) and good[0].latency.percentile(50) > 0
    assert sum(i.errors for i in bad) == 30 and {k for i in bad for k in i.kinds} == {"status 503"}


def test_histogram_percentiles_within_one_percent() -> None:
    h = Histogram()
    for ms in range(1, 1001):
        h.record(ms / 1000)
    assert h.n == 1000 and h.max == 1.0
    assert h.percentile(50) == pytest.approx(0.5, rel=0.011)
    assert h.percentile(99) == pytest.approx(0.99, rel=0.011)
    assert h.percentile(100) == 1.0
    both = Histogram().merge(h).merge(h)
    assert both.n == 2000 and both.percentile(99) == h.percentile(99)
    assert Histogram().percentile(99) == 0.0


def _samples(rss: dict[int, list[float]], step: float = 5.0) -> list[dict[str, object]]:
    n = max(len(v) for v in rss.values())
    return [
        {
            "t": i * step,
            "rss_mb": {str(pid): v[i] for pid, v in rss.items() if i < len(v)},
            "cpu_pct": {str(pid): 1.0 for pid, v in rss.items() if i < len(v)},
            "loadgen_cpu_pct": 10.0,
        }
        for i in range(n)
    ]


def _intervals(errors: int = 0) -> list[Interval]:
    out = []
    for n in range(24):
        iv = Interval(n * 5.0, (n + 1) * 5.0, sent=100, ok=100)
        for _ in range(100):
            iv.latency.record(0.002)
        out.append(iv)
    for _ in range(errors):
        out[-1].ok -= 1
        out[-1].error("status 503")
    return out


def test_soak_verdict() -> None:
    procs = {1: Proc(1, 0.0, "kernel"), 2: Proc(2, 0.0, "gateway"), 3: Proc(3, 0.0, "worker", "bench")}
    flat = {1: [40.0] * 25, 2: [50.0 + (i % 3) * 0.5 for i in range(25)], 3: [30.0] * 24 + [34.0]}
    ok = analyse(_samples(flat), _intervals(), procs)
    assert ok["passed"] and ok["reasons"] == [] and ok["window_s"] == 30.0
    assert [p["label"] for p in ok["processes"]] == ["supervisor", "gateway", "worker bench"]
    assert all(p["flat"] for p in ok["processes"]) and ok["sent"] == ok["ok"] == 2400

    leak = {**flat, 3: [30.0 + i * 0.5 for i in range(25)]}  # +12 MB over the run
    bad = analyse(_samples(leak), _intervals(errors=2), procs)
    assert not bad["passed"] and bad["errors"] == 2
    assert bad["reasons"][0] == "2 errors (status 503: 2)"
    assert bad["reasons"][1].startswith("worker bench RSS grew +")
    worker = bad["processes"][2]
    assert worker["flat"] is False and worker["growth_mb"] > 5 and worker["slope_mb_min"] == pytest.approx(6.0)

    replaced = analyse(_samples({**flat, 3: [30.0] * 10}), _intervals(), procs)
    assert replaced["reasons"] == ["worker bench (pid 3) exited at 45 s"]

    big = {**flat, 1: [200.0] * 12 + [209.0] * 13}  # within 5% of 200 MB
    assert analyse(_samples(big), _intervals(), procs)["passed"]
    text = soak_text(
        {
            "server": "hypercorn",
            "variant": "1gw/1wk",
            "route": "/api/bench/hello",
            "rate": 70.0,
            "fraction": 0.7,
            "capacity": {"rps": 100.0, "connections": 32, "seconds": 10, "loadgen": "ours", "errors": 0, "p99_ms": 1.0},
            "result": bad,
        }
    )
    assert "verdict: FAIL: 2 errors (status 503: 2); worker bench RSS grew" in text
    assert "= 0.70 x capacity 100 req/s" in text


def test_soak_runs_only_when_named() -> None:
    def names(*argv: str) -> list[str]:
        return chosen(parser().parse_args(argv))

    assert names() == [s for s in SCENARIOS if s != "soak"] and ON_REQUEST == ("soak",)
    assert names("soak", "--minutes", "2") == ["soak"]
    assert names("soak", "--scenario", "hello,auth") == ["soak", "hello", "auth"]


def test_nice_ticks_cover_the_range() -> None:
    assert nice_ticks(0, 7) == [0, 2, 4, 6, 8]
    assert nice_ticks(0.3, 0.95) == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-1.9, 5.25) == [-2, 0, 2, 4, 6]
    assert nice_ticks(40.0, 40.0) == [40.0, 40.2, 40.4, 40.6, 40.8, 41.0]
