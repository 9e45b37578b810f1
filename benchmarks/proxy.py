"""The ``proxy`` and ``proxy-1gb`` scenarios: the proxy plugin in front of a fast local upstream.

The upstream is the baseline app (``benchmarks/baseline_app.py``: ``/hello`` small JSON,
``/download?size=N`` streamed), started on the same server as the gateway, and the kernel's config
has one open endpoint to it::

    proxy: {endpoints: {/up: {target: <baseline url>, credentials: dangerously-allow-unauthenticated}}}

(the proxy plugin is installed in the environment, so every kernel mounts it). The path is
client -> gateway -> proxy worker -> upstream, and back.

- ``proxy``: ``GET /api/proxy/up/hello`` under load. Its ratio (``report.add_ratios``) is to the
  ``baseline`` row: the same upstream called directly, measured in the same run (``proxy`` brings
  ``baseline`` along, as the load scenarios do). The targets compare it with the ``hello`` row
  (1 gateway x 1 worker): when ``hello`` is not among the scenarios, this one measures it on its own
  kernel after the proxy row, so both are always in one run.
- ``proxy-1gb``: one big streamed download (``--download-mb``, 1 GiB by default; the row is named
  after its size, ``proxy-64mb`` for 64) through the proxy, RSS of every kernel process sampled
  every 50 ms (the proxy's worker is the row's worker; the upstream's own process is not counted);
  then, unless ``download`` runs too, the bench plugin's own big download (``download-1gb``) on the
  same kernel, for the ratio of MB/s. The proxy's goes first, on fresh processes, so its RSS growth
  is not hidden by the other transfer's peak.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks.loadgen import Load
from benchmarks.procs import BENCH_PLUGIN, KernelSetup

if TYPE_CHECKING:
    from benchmarks.runner import Runner

__all__ = ["PROXY_PLUGIN", "ROUTE", "proxy_download_rows", "proxy_rows", "proxy_setup"]

PROXY_PLUGIN = "proxy"
#: the endpoint's route below ``/api/proxy``
ROUTE = "/up"

Row = dict[str, Any]


def proxy_setup(server: str, upstream: str) -> KernelSetup:
    """A kernel whose proxy has one open endpoint, ``/up``, to ``upstream``."""
    endpoint = {"target": upstream, "credentials": "dangerously-allow-unauthenticated"}
    return KernelSetup(server, config={"proxy": {"endpoints": {ROUTE: endpoint}}})


def proxy_rows(runner: Runner, server: str) -> list[Row]:
    """``proxy`` (small JSON through the proxy); ``hello`` on the same kernel when that scenario is not run."""
    rows = []
    with runner.baseline(server) as up, runner.kernel(proxy_setup(server, up.url)) as k:
        assert k.tree is not None
        load = Load(f"{k.url}/api/{PROXY_PLUGIN}{ROUTE}/hello")
        row = runner._load_row("proxy", server, load, k.tree, kernel=True, variant="1gw/1wk", plugin=PROXY_PLUGIN)
        row["note"] = row["note"] or "GET /api/proxy/up/hello -> the baseline app's /hello"
        rows.append(row)
        if "hello" not in runner.o.scenarios:
            hello = runner._load_row(
                "hello", server, Load(f"{k.url}/api/{BENCH_PLUGIN}/hello"), k.tree, kernel=True, variant="1gw/1wk"
            )
            hello["note"] = hello["note"] or "measured by the proxy scenario, on its kernel"
            rows.append(hello)
    return rows


def proxy_download_rows(runner: Runner, server: str) -> list[Row]:
    """The big download through the proxy; the bench plugin's own on the same kernel when ``download`` is not run."""
    size = runner.o.download_bytes
    name = "proxy-" + runner.big.removeprefix("download-")
    rows = []
    with runner.baseline(server) as up, runner.kernel(proxy_setup(server, up.url)) as k:
        assert k.tree is not None
        url = f"{k.url}/api/{PROXY_PLUGIN}{ROUTE}/download?size={size}"
        big = runner._download_row(name, server, url, k.tree, kernel=True, plugin=PROXY_PLUGIN)
        big["note"] = f"{big['note']}; gateway -> proxy worker -> baseline app"
        rows.append(big)
        if "download" not in runner.o.scenarios:
            url = f"{k.url}/api/{BENCH_PLUGIN}/download?size={size}"
            own = runner._download_row(runner.big, server, url, k.tree, kernel=True)
            own["note"] = f"{own['note']}; measured by proxy-1gb, on its kernel, after it"
            rows.append(own)
    for r in rows:
        r["variant"] = "1gw/1wk"
    return rows
