"""``deploy/grafana/kernel.json``: a Grafana dashboard whose every query names metrics a real kernel exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kernel.testing import KernelProcess, wait_for
from tests.conftest import base_config

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "kernel.json"
#: PromQL words that are not metric names (functions are told apart by their parenthesis)
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
#: the sample names each family type gives a scrape (Prometheus text format)
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "summary": ["_count", "_sum", ""]}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries(doc: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: not a function, label, keyword, number or duration."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, patterns)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[m.end() :].lstrip()
        if rest.startswith("(") or m.group() in KEYWORDS:
            continue
        names.add(m.group())
    return names


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    doc = dashboard()
    assert doc["title"] and doc["uid"] and isinstance(doc["schemaVersion"], int)
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        assert panel["type"] in {"row", "timeseries", "stat"} and panel["title"]
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__interval", "__range"}
            assert used <= set(variables), (panel["title"], used)  # every variable a query uses is defined


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (plugin_id, le) (rate(a_bucket{x="b_c", y=~"$p"}[5m]))) / b_total or vector(0)'
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}


@pytest.fixture(scope="module")
def exported(site: Path) -> Iterator[set[str]]:
    """Every sample name a real kernel's scrape gives, after traffic and the supervisor's first figures."""
    kernel = KernelProcess(base_config(), paths=[site]).start(timeout=60)
    try:
        with httpx.Client(base_url=kernel.url, timeout=10) as client:
            assert client.post("/api/echo/upload", content=b"x" * 100).status_code == 200  # bytes in and out
            assert client.get("/api/echo/nothing").status_code == 401  # a 4xx class too
            # a request held over a flush of the gateways' figures: the requests in flight are written
            assert client.get("/api/echo/sleep", params={"s": "1.5"}).status_code == 200

        def names() -> set[str]:
            found: set[str] = set()
            text = httpx.get(kernel.metrics_url, timeout=10).text
            for family in text_string_to_metric_families(text):
                found |= {s.name for s in family.samples}
                found |= {family.name + s for s in SUFFIXES.get(family.type, [""])}
            return found

        wanted = {
            "kernel_http_request_duration_seconds_bucket",
            "kernel_http_request_body_bytes_total",
            "kernel_http_requests_in_flight",
            "kernel_worker_restarts_total",
        }
        yield wait_for(lambda: (n := names()) >= wanted and n, timeout=15, message="the kernel's metrics")
    finally:
        kernel.stop()


def test_every_query_names_only_metrics_the_kernel_exports(exported: set[str]) -> None:
    used = set().union(*(metric_names(q) for q in queries(dashboard())))
    assert used, "no metric found in the dashboard's queries"
    assert used <= exported, sorted(used - exported)
    # and it shows the request figures and the process figures, not a corner of them
    assert {"kernel_http_request_duration_seconds_bucket", "kernel_process_resident_memory_bytes"} <= used
