"""The ``peers`` scenario: the reference system, a real Backstage backend, loaded as the kernel's rows are.

Backstage (``benchmarks/backstage/peer_backend.js``, started by ``benchmarks/peer.py`` with
``NODE_ENV=production``) serves what the kernel's rows measure, and gets the same loads:

- ``backstage-hello``: ``GET /api/bench/hello``, open, the same JSON as the kernel's ``hello``;
- ``backstage-auth``: ``GET /api/bench/private/hello`` with the static token of the kernel's ``auth``
  row (``backend.auth.externalAccess``, type ``static``); checked to answer 401 without it first;
- ``backstage-proxy``: ``GET /api/proxy/up/hello`` through ``@backstage/plugin-proxy-backend`` to the
  upstream of the kernel's ``proxy`` row (the baseline app on the same server);
- ``backstage-proxy-1gb``: the big download (``--download-mb``) through that proxy, as ``proxy-1gb``;
- ``backstage-pss``: PSS of the node process tree (``/proc/<pid>/smaps_rollup``), idle after start
  and the peak under the three small loads.

The kernel's side of each comparison is its own rows (``hello`` [1gw/1wk], ``auth``, ``proxy``,
``proxy-1gb``), which run whenever ``peers`` does; with ``--runs N`` the runner rotates every
scenario through N rounds, so Backstage and the kernel share each round. The ratios and targets
are ``benchmarks/peer_report.py``'s. Without Node, or without the packages (``scripts/interop-setup``
failing), the scenario measures nothing and says why in one line after the table.
"""

from __future__ import annotations

import statistics
import time

from kernel_benchmarks.loadgen import Load
from kernel_benchmarks.peer import PssSampler, backstage_unavailable, backstage_version, node_version
from kernel_benchmarks.procs import TOKEN
from kernel_benchmarks.rows import Row, http_status, new_row
from kernel_benchmarks.scenario import Bench

__all__ = ["peers_rows"]

#: seconds a started Backstage is left alone before its idle PSS is read
SETTLE = 1.0


def peers_rows(bench: Bench, server: str) -> list[Row]:
    reason = backstage_unavailable()
    if reason is not None:
        bench.note(f"peers: skipped, Backstage not measured: {reason}")
        return []
    what = f"Backstage {backstage_version()} (backend-defaults), node {node_version()}, NODE_ENV=production"
    rows = []
    with bench.baseline(server) as up, bench.backstage(up.url) as peer:
        assert peer.tree is not None
        time.sleep(SETTLE)
        idle = statistics.median(peer.pss() for _ in range(3))
        with PssSampler(peer) as under_load:
            rows.append(
                bench.load_row("backstage-hello", server, Load(f"{peer.url}/api/bench/hello"), peer.tree, kernel=False)
            )
            url = f"{peer.url}/api/bench/private/hello"
            status = http_status(url)
            if status != 401:
                raise RuntimeError(f"Backstage's {url} without a token answered {status}, expected 401")
            load = Load(url, headers=(("Authorization", f"Bearer {TOKEN}"),))
            rows.append(bench.load_row("backstage-auth", server, load, peer.tree, kernel=False))
            load = Load(f"{peer.url}/api/proxy/up/hello")
            rows.append(bench.load_row("backstage-proxy", server, load, peer.tree, kernel=False))
        name = "backstage-proxy-" + bench.big.removeprefix("download-")
        url = f"{peer.url}/api/proxy/up/download?size={bench.o.download_bytes}"
        rows.append(bench.download_row(name, server, url, peer.tree, kernel=False))
    for r in rows:
        r["note"] = f"{r['note']}; {what}" if r["note"] else what
    rows.append(
        new_row(
            "backstage-pss",
            server,
            pss_mb=round(idle, 1),
            pss_load_mb=round(under_load.peak, 1),
            note=f"PSS MB of the node process tree: idle {idle:.1f} after start, "
            f"peak {under_load.peak:.1f} under the hello/auth/proxy loads",
        )
    )
    return rows
