"""The ``proxy``, ``proxy-1gb`` and ``proxy-upload-1gb`` scenarios: the proxy plugin in front of a fast local upstream.

The upstream is the baseline app (``benchmarks/baseline_app.py``: ``/hello`` small JSON,
``/download?size=N`` streamed, ``/upload`` a body read and discarded), started on the same server as the gateway, and the kernel's config
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
- ``proxy-upload-1gb``: one big upload (``--download-mb`` again, 1 GiB by default; ``proxy-upload-64mb``
  for 64): a client (``benchmarks/upload.py``) POSTs it with a Content-Length, from one reused buffer,
  to ``/api/proxy/up/upload``; the baseline app's ``/upload`` reads it as a stream, discards it and
  answers its byte count, which the row checks. RSS of every kernel process every 50 ms, as above.
  Then, on the same kernel, the bench plugin's own ``POST /api/bench/upload`` (``upload-1gb``), and
  the baseline app's ``/upload`` called directly (``baseline-upload-1gb``): the ratios are proxy over
  the plugin's own, and the plugin's own over the in-process baseline. This kernel's
  ``backend.gateway.maxRequestBodySize`` (100 MiB by default, a larger body gets 413) is raised to
  the upload's size; the proxy plugin has no body limit of its own (it streams the body upstream as
  it comes, and its ``readSeconds`` only start once the body is sent), and the gateway's
  ``bodyTimeout`` (300 s for the whole body) is far above a 1 GiB upload on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

from kernel_benchmarks.loadgen import Load
from kernel_benchmarks.procs import BENCH_PLUGIN, KernelSetup
from kernel_benchmarks.rows import Row
from kernel_benchmarks.scenario import Bench

__all__ = ["PROXY_PLUGIN", "ROUTE", "proxy_download_rows", "proxy_rows", "proxy_setup", "proxy_upload_rows"]

PROXY_PLUGIN = "proxy"
#: the endpoint's route below ``/api/proxy``
ROUTE = "/up"


#: the gateway's default ``maxRequestBodySize``
MAX_BODY = 100 * 1024 * 1024


def proxy_setup(server: str, upstream: str, max_body: int = MAX_BODY) -> KernelSetup:
    """A kernel whose proxy has one open endpoint, ``/up``, to ``upstream``; bodies up to ``max_body`` bytes."""
    endpoint = {"target": upstream, "credentials": "dangerously-allow-unauthenticated"}
    config: dict[str, Any] = {"proxy": {"endpoints": {ROUTE: endpoint}}}
    if max_body != MAX_BODY:
        config["backend"] = {"gateway": {"maxRequestBodySize": max_body}}
    return KernelSetup(server, config=config)


def proxy_rows(bench: Bench, server: str) -> list[Row]:
    """``proxy`` (small JSON through the proxy); ``hello`` on the same kernel when that scenario is not run."""
    rows = []
    with bench.baseline(server) as up, bench.kernel(proxy_setup(server, up.url)) as k:
        assert k.tree is not None
        load = Load(f"{k.url}/api/{PROXY_PLUGIN}{ROUTE}/hello")
        row = bench.load_row("proxy", server, load, k.tree, kernel=True, variant="1gw/1wk", plugin=PROXY_PLUGIN)
        row["note"] = row["note"] or "GET /api/proxy/up/hello -> the baseline app's /hello"
        rows.append(row)
        if "hello" not in bench.o.scenarios:
            hello = bench.load_row(
                "hello", server, Load(f"{k.url}/api/{BENCH_PLUGIN}/hello"), k.tree, kernel=True, variant="1gw/1wk"
            )
            hello["note"] = hello["note"] or "measured by the proxy scenario, on its kernel"
            rows.append(hello)
    return rows


def proxy_download_rows(bench: Bench, server: str) -> list[Row]:
    """The big download through the proxy; the bench plugin's own on the same kernel when ``download`` is not run."""
    size = bench.o.download_bytes
    name = "proxy-" + bench.big.removeprefix("download-")
    rows = []
    with bench.baseline(server) as up, bench.kernel(proxy_setup(server, up.url)) as k:
        assert k.tree is not None
        url = f"{k.url}/api/{PROXY_PLUGIN}{ROUTE}/download?size={size}"
        big = bench.download_row(name, server, url, k.tree, kernel=True, plugin=PROXY_PLUGIN)
        big["note"] = f"{big['note']}; gateway -> proxy worker -> baseline app"
        rows.append(big)
        if "download" not in bench.o.scenarios:
            url = f"{k.url}/api/{BENCH_PLUGIN}/download?size={size}"
            own = bench.download_row(bench.big, server, url, k.tree, kernel=True)
            own["note"] = f"{own['note']}; measured by proxy-1gb, on its kernel, after it"
            rows.append(own)
    for r in rows:
        r["variant"] = "1gw/1wk"
    return rows


def proxy_upload_rows(bench: Bench, server: str) -> list[Row]:
    """The big upload through the proxy, then to the bench plugin's own route and to the baseline app directly."""
    size = bench.o.download_bytes
    suffix = bench.big.removeprefix("download-")
    rows = []
    with bench.baseline(server) as up, bench.kernel(proxy_setup(server, up.url, max(size, MAX_BODY))) as k:
        assert k.tree is not None and up.tree is not None
        url = f"{k.url}/api/{PROXY_PLUGIN}{ROUTE}/upload"
        big = bench.upload_row(f"proxy-upload-{suffix}", server, url, k.tree, kernel=True, plugin=PROXY_PLUGIN)
        big["note"] = f"{big['note']}; gateway -> proxy worker -> baseline app"
        own = bench.upload_row(f"upload-{suffix}", server, f"{k.url}/api/{BENCH_PLUGIN}/upload", k.tree, kernel=True)
        own["note"] = f"{own['note']}; POST /api/bench/upload, after the proxy's"
        for r in (big, own):
            r["variant"] = "1gw/1wk"
        base = bench.upload_row(f"baseline-upload-{suffix}", server, f"{up.url}/upload", up.tree, kernel=False)
        base["note"] = f"{base['note']}; in-process Starlette, the proxy's upstream"
        rows += [big, own, base]
    return rows
