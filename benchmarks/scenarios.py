"""Every scenario, by name: the one list the runner looks scenarios up in (``benchmarks.SCENARIOS`` orders them).

A scenario module imports ``benchmarks.scenario`` (what a scenario is, and the ``Bench`` it gets) and
never this list nor the runner; a new scenario is a function in a module of its own and a line here.
"""

from __future__ import annotations

from kernel_benchmarks.basic import (
    auth_rows,
    baseline_rows,
    composed_row,
    download_rows,
    echo_rows,
    hello_row,
    p2p_rows,
    recovery_rows,
    startup_rows,
)
from kernel_benchmarks.isolation import isolation_rows
from kernel_benchmarks.memory import memory_rows
from kernel_benchmarks.observability import observability_rows, scrape_rows
from kernel_benchmarks.options import Options
from kernel_benchmarks.peers import peers_rows
from kernel_benchmarks.proxy import proxy_download_rows, proxy_rows, proxy_upload_rows
from kernel_benchmarks.remote import remote_rows
from kernel_benchmarks.scenario import Scenario
from kernel_benchmarks.soak import soak_rows
from kernel_benchmarks.websocket import ws_rows


def _hello_variants(options: Options) -> list[tuple[int, int]]:
    return list(options.hello_variants)


REGISTRY: dict[str, Scenario] = {
    "baseline": Scenario(baseline_rows),
    "hello": Scenario(hello_row, _hello_variants),  # once per (gateways, replicas)
    "hello-composed": Scenario(composed_row),
    "observability": Scenario(observability_rows),
    "isolation": Scenario(isolation_rows),
    "remote": Scenario(remote_rows),
    "metrics-scrape": Scenario(scrape_rows),
    "auth": Scenario(auth_rows),
    "p2p": Scenario(p2p_rows),
    "echo": Scenario(echo_rows),
    "download": Scenario(download_rows),
    "websocket": Scenario(ws_rows),
    "proxy": Scenario(proxy_rows),
    "proxy-1gb": Scenario(proxy_download_rows),
    "proxy-upload-1gb": Scenario(proxy_upload_rows),
    "peers": Scenario(peers_rows),
    "startup": Scenario(startup_rows),
    "recovery": Scenario(recovery_rows),
    "memory": Scenario(memory_rows),
    "soak": Scenario(soak_rows),
}
