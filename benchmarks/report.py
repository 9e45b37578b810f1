"""Ratios to the baseline (and to Backstage: ``benchmarks.peer_report``), the table, the project's performance targets, JSON and the optional PNG plot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernel_benchmarks.peer_report import add_backstage_ratios, backstage_targets

Row = dict[str, Any]


def baseline_for(scenario: str) -> str | None:
    """The row a scenario's ratio is taken against (same server, same run)."""
    if scenario.startswith("baseline"):
        return scenario
    if scenario in (
        "hello",
        "hello-composed",
        "auth",
        "proxy",
    ):  # proxy: its upstream, the baseline app, called directly
        return "baseline"
    if scenario in ("echo", "ws-echo") or scenario.startswith(("download-", "upload-")):
        return f"baseline-{scenario}"
    if scenario.startswith("proxy-upload-"):  # the big upload through the proxy: to the bench plugin's own
        return scenario.removeprefix("proxy-")
    if scenario.startswith("proxy-"):  # the big download through the proxy: the bench plugin's own
        return "download-" + scenario.removeprefix("proxy-")
    return None  # startup, recovery: absolute targets


def _is_stream(scenario: str) -> bool:
    """Rows whose figure of merit is MB/s of one big download (or upload), not requests/s."""
    big = ("download-", "baseline-download-", "upload-", "baseline-upload-", "proxy-", "backstage-proxy-")
    return scenario.startswith(big) and not scenario.endswith("-1mb")


def add_ratios(rows: list[Row]) -> None:
    """``ratio``: rps (MB/s for a big download) over the same server's row named by ``baseline_for``."""
    index: dict[tuple[str, str], Row] = {}
    for r in rows:
        index.setdefault((r["server"], r["scenario"]), r)
    for r in rows:
        name = baseline_for(r["scenario"])
        base = index.get((r["server"], name)) if name else None
        if base is None:
            continue
        key = "mb_s" if _is_stream(r["scenario"]) else "rps"
        if r.get(key) and base.get(key):
            r["ratio"] = round(r[key] / base[key], 3)
            r["ratio_of"] = f"{name} {key}"
        if r.get("p99_ms") and base.get("p99_ms") and not _is_stream(r["scenario"]):
            r["p99_ratio"] = round(r["p99_ms"] / base["p99_ms"], 2)
    add_backstage_ratios(rows)


# -- the table ------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


COLUMNS: list[tuple[str, str, Callable[[Row], str]]] = [
    ("scenario", "<", lambda r: r["scenario"] + (f" [{r['variant']}]" if r.get("variant") else "")),
    ("server", "<", lambda r: r["server"]),
    ("req/s", ">", lambda r: _f(r["rps"])),
    ("p50 ms", ">", lambda r: _f(r["p50_ms"], 2)),
    ("p99 ms", ">", lambda r: _f(r["p99_ms"], 2)),
    ("p99.9 ms", ">", lambda r: _f(r["p999_ms"], 2)),
    ("errors", ">", lambda r: _f(r["errors"])),
    ("MB/s", ">", lambda r: _f(r["mb_s"])),
    ("RSS MB", ">", lambda r: _f(r["rss_mb"])),
    ("gw MB", ">", lambda r: _f(r["gateway_rss_mb"])),
    ("wk MB", ">", lambda r: _f(r["worker_rss_mb"])),
    ("growth MB", ">", lambda r: _f(r["rss_growth_mb"])),
    (
        "seconds",
        ">",
        lambda r: _f(r["seconds"], 3) if r["scenario"] in ("startup", "recovery") else _f(r["seconds"], 1),
    ),
    ("ratio", ">", lambda r: _f(r["ratio"], 2)),
    ("p99 ratio", ">", lambda r: _f(r["p99_ratio"], 2)),
    ("PSS MB", ">", lambda r: "/".join(_f(r.get(k)) for k in ("pss_mb", "pss_load_mb") if r.get(k) is not None) or "-"),
    ("x Backstage", ">", lambda r: _f(r.get("x_backstage"), 2)),
    ("p99 x BS", ">", lambda r: _f(r.get("p99_x_backstage"), 2)),
]


#: columns shown only when a row has a figure in them (the peers scenario's)
OPTIONAL = ("PSS MB", "x Backstage", "p99 x BS")


def table(rows: list[Row]) -> str:
    columns = [c for c in COLUMNS if c[0] not in OPTIONAL or any(c[2](r) != "-" for r in rows)]
    cells = [[fn(r) for _, _, fn in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _, _) in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(f"{v:{a}{w}}" for v, (_, a, _), w in zip(values, columns, widths, strict=True)).rstrip()

    out = [line([h for h, _, _ in columns]), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out)


# -- the targets (benchmarks/README.md, "Targets") ---------------------------------------------------


def _find(rows: list[Row], server: str, scenario: str, variant: str | None = None) -> Row | None:
    for r in rows:
        if r["server"] == server and r["scenario"] == scenario and (variant is None or r["variant"] == variant):
            return r
    return None


#: rows whose ``ratio`` has a target: (row, what it measures, the least ratio, what the ratio is over)
_RATIO_TARGETS = (
    ("ws-echo", "ws-echo", 0.8, "in-process WebSocket msgs/s"),
    ("hello-observed", "hello with access log, request ids, metrics", 0.95, "without"),
    ("hello-isolated", "hello with every plugin isolated", 0.95, "without"),
    ("hello-curve", "hello through a remote worker over tcp+CURVE", 0.8, "over ipc"),
)


def targets(rows: list[Row]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for every target the rows can speak to."""
    out: list[tuple[str, str, bool]] = []
    for server in dict.fromkeys(r["server"] for r in rows):
        hello = _find(rows, server, "hello", "1gw/1wk")
        need = {"auto": 0.9, "hypercorn": 0.85}.get(server, 0.6)
        if hello and hello["ratio"] is not None:
            out.append((f"{server}: hello >= {need}x baseline req/s", f"{hello['ratio']:.2f}x", hello["ratio"] >= need))
        if hello and hello["p99_ratio"] is not None:
            out.append(
                (f"{server}: hello p99 <= 2x baseline p99", f"{hello['p99_ratio']:.2f}x", hello["p99_ratio"] <= 2)
            )
        auth = _find(rows, server, "auth")
        if auth and hello and auth["rps"] and hello["rps"]:
            rel = auth["rps"] / hello["rps"]
            out.append((f"{server}: auth within 5% of hello", f"{rel:.3f}x hello", rel >= 0.95))
        plugin_token = _find(rows, server, "auth-plugin-token")
        if plugin_token and auth and plugin_token["rps"] and auth["rps"]:
            rel = plugin_token["rps"] / auth["rps"]
            out.append((f"{server}: plugin token within 10% of static token", f"{rel:.3f}x auth", rel >= 0.9))
        for scenario, what, need, of in _RATIO_TARGETS:
            row = _find(rows, server, scenario)
            if row and row["ratio"] is not None:
                out.append((f"{server}: {what} >= {need}x {of}", f"{row['ratio']:.3f}x", row["ratio"] >= need))
        scrape = _find(rows, server, "metrics-scrape")
        if scrape and scrape["p99_ms"] is not None:
            out.append(
                (
                    f"{server}: metrics scrape of 20 plugins x 2 < 50 ms",
                    f"p99 {scrape['p99_ms']:.1f} ms",
                    scrape["p99_ms"] < 50,
                )
            )
        p2p = _find(rows, server, "p2p")
        if p2p and hello and p2p["rps"] and hello["rps"]:
            # two hops per request: informational, no target
            out.append((f"{server}: p2p (a -> gateway -> b) vs hello", f"{p2p['rps'] / hello['rps']:.2f}x hello", True))
        # RSS targets: under the small-JSON loads and idle at startup (the download rows show their own peaks)
        small = [r for r in rows if r["server"] == server and r["scenario"] in ("hello", "auth", "startup")]
        gw = [r["gateway_rss_mb"] for r in small if r["gateway_rss_mb"] is not None]
        if gw:
            out.append(
                (
                    f"{server}: gateway RSS <= 60 MB/process (hello/auth/startup)",
                    f"peak {max(gw):.1f} MB",
                    max(gw) <= 60,
                )
            )
        wk = [r["worker_rss_mb"] for r in small if r["worker_rss_mb"] is not None]
        if wk:
            # forked from the zygote, a worker's RSS counts the pages it shares in full: the memory
            # scenario's PSS per added plugin is the target; this is a figure
            out.append((f"{server}: worker RSS (hello-like plugin; no target)", f"peak {max(wk):.1f} MB", True))
        out += _proxy_targets(rows, server, hello)
        out += backstage_targets(rows, server)
        for big in [
            r
            for r in rows
            if r["server"] == server
            and _is_stream(r["scenario"])
            and not r["scenario"].startswith(("baseline", "backstage"))
        ]:
            if big["rss_growth_mb"] is not None:
                out.append(
                    (
                        f"{server}: {big['scenario']} RSS growth < 50 MB in every process",
                        f"max {big['rss_growth_mb']:.1f} MB (gw {_f(big['gateway_rss_growth_mb'])}, wk {_f(big['worker_rss_growth_mb'])})",
                        big["rss_growth_mb"] < 50 and not big["errors"],
                    )
                )
            if big["ratio"] is not None and big["scenario"].startswith("upload-"):
                out.append(
                    (
                        f"{server}: {big['scenario']} vs in-process {big['ratio_of'].split()[0]} (no target)",
                        f"{big['mb_s']:.0f} MB/s = {big['ratio']:.2f}x",
                        True,
                    )
                )
            elif big["ratio"] is not None and not big["scenario"].startswith("proxy-"):
                out.append(
                    (
                        f"{server}: {big['scenario']} >= 0.8x baseline MB/s",
                        f"{big['mb_s']:.0f} MB/s = {big['ratio']:.2f}x",
                        big["ratio"] >= 0.8,
                    )
                )
        st = _find(rows, server, "startup")
        if st:
            out.append((f"{server}: ready with {st['variant']} <= 2 s", f"{st['seconds']:.3f} s", st["seconds"] <= 2))
        rec = _find(rows, server, "recovery")
        if rec:
            out.append(
                (f"{server}: killed worker answering again <= 1 s", f"{rec['seconds']:.3f} s", rec["seconds"] <= 1)
            )
        out += _memory_targets(rows, server)
        soak = _find(rows, server, "soak")
        if soak and soak.get("soak"):
            out.append(
                (
                    f"{server}: soak ({soak['note'].split(';')[0]}): 0 errors and flat RSS",
                    f"{soak['errors']} errors, largest RSS growth {_f(soak['rss_growth_mb'])} MB",
                    bool(soak["soak"]["passed"]),
                )
            )
    return out


def _memory_targets(rows: list[Row], server: str) -> list[tuple[str, str, bool]]:
    """The ``memory`` scenario's targets, for workers forked from the zygote (spawned ones shown beside)."""
    out: list[tuple[str, str, bool]] = []
    spawned = {r["scenario"]: r for r in rows if r["server"] == server and r["variant"] == "spawn"}
    was = lambda name, key, unit: f" (spawn: {spawned[name][key]:g}{unit})" if name in spawned else ""  # noqa: E731
    per = _find(rows, server, "memory-per-plugin", "zygote")
    if per:
        measured = f"{per['pss_mb']:.1f} MB" + was("memory-per-plugin", "pss_mb", " MB")
        out.append((f"{server}: PSS per added plugin <= 12 MB", measured, per["pss_mb"] <= 12))
    start = _find(rows, server, "worker-start", "zygote")
    if start:
        measured = f"{start['seconds']:.3f} s" + was("worker-start", "seconds", " s")
        out.append((f"{server}: worker start <= 0.15 s", measured, start["seconds"] <= 0.15))
    restart = _find(rows, server, "worker-restart", "zygote")
    if restart:
        measured = f"{restart['seconds']:.3f} s" + was("worker-restart", "seconds", " s")
        out.append((f"{server}: killed worker back < 0.3 s", measured, restart["seconds"] < 0.3))
    # the totals with workers forked, fewest plugins first ("zygote, <n> plugins")
    totals = sorted(
        ((int(r["variant"].split()[1]), r) for r in rows if r["server"] == server and r["scenario"] == "memory"
         and r["variant"].startswith("zygote")),
        key=lambda pair: pair[0],
    )  # fmt: skip
    if totals:
        n, fewest = totals[0]
        out.append(
            (f"{server}: ready with {n} plugins (>= 5) < 1 s", f"{fewest['seconds']:.3f} s", fewest["seconds"] < 1)
        )
    backstage = _find(rows, server, "memory-backstage")
    if backstage and per and totals:
        bs = backstage["pss_mb"]
        five = fewest["pss_mb"] - (n - 5) * per["pss_mb"]
        out.append(
            (
                f"{server}: kernel with 5 plugins <= Backstage with 1 (PSS)",
                f"{five:.0f} MB (est. from {n}) vs {bs:.0f} MB = {five / bs:.2f}x",
                five <= bs,
            )
        )
        m, most = totals[-1]
        out.append(
            (
                f"{server}: kernel with {m} plugins <= 2x Backstage with 1 (PSS)",
                f"{most['pss_mb']:.0f} MB vs {bs:.0f} MB = {most['pss_mb'] / bs:.2f}x",
                most["pss_mb"] <= 2 * bs,
            )
        )
    return out


def _proxy_targets(rows: list[Row], server: str, hello: Row | None) -> list[tuple[str, str, bool]]:
    """The proxy against hello (target >= 0.8x req/s); its big download and upload against the plugin's own (figures)."""
    out: list[tuple[str, str, bool]] = []
    proxy = _find(rows, server, "proxy")
    if proxy and hello and proxy["rps"] and hello["rps"]:
        rel = proxy["rps"] / hello["rps"]
        p99 = f", p99 {proxy['p99_ms'] / hello['p99_ms']:.2f}x hello's" if proxy["p99_ms"] and hello["p99_ms"] else ""
        out.append((f"{server}: proxy >= 0.8x hello req/s", f"{rel:.2f}x hello{p99}", rel >= 0.8))
    for big in [r for r in rows if r["server"] == server and r["scenario"].startswith("proxy-") and r["ratio"]]:
        out.append(
            (
                f"{server}: {big['scenario']} vs the plugin's own {big['ratio_of'].split()[0]} (no target)",
                f"{big['mb_s']:.0f} MB/s = {big['ratio']:.2f}x",
                True,
            )
        )
    return out


def targets_text(rows: list[Row]) -> str:
    items = targets(rows)
    if not items:
        return ""
    width = max(len(t) for t, _, _ in items)
    lines = ["Targets (set for the median of 3 runs: --runs 3):"]
    lines += [f"  {'met ' if ok else 'MISS'}  {t:<{width}}  {m}" for t, m, ok in items]
    return "\n".join(lines)


# -- files ------------------------------------------------------------------------------------------------


def write_json(rows: list[Row], path: Path) -> None:
    path.write_text(json.dumps(rows, indent=2) + "\n")


def plot(rows: list[Row], path: Path) -> str:
    """A PNG of req/s (MB/s for the big download) and ratio per row; needs matplotlib."""
    try:
        import matplotlib  # type: ignore[import-not-found]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        return f"--plot {path}: matplotlib is not installed (pip install matplotlib); no plot written"
    load = [r for r in rows if r["rps"] is not None or (r["mb_s"] is not None and _is_stream(r["scenario"]))]
    servers = list(dict.fromkeys(r["server"] for r in load))
    if not load:
        return f"--plot {path}: no load rows to plot"
    fig, axes = plt.subplots(len(servers), 1, figsize=(12, 4 * len(servers)), squeeze=False)
    for ax, server in zip(axes[:, 0], servers, strict=True):
        mine = [r for r in load if r["server"] == server]
        labels = [
            r["scenario"].replace("baseline-", "baseline\n") + (f"\n{r['variant']}" if r["variant"] else "")
            for r in mine
        ]
        values = [(r["mb_s"] if _is_stream(r["scenario"]) else r["rps"]) or 0 for r in mine]
        colors = ["#888888" if r["scenario"].startswith("baseline") else "#3b75af" for r in mine]
        bars = ax.bar(range(len(mine)), values, color=colors)
        for bar, r in zip(bars, mine, strict=True):
            if r["ratio"] is not None:
                ax.annotate(
                    f"{r['ratio']:.2f}x",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        ax.set_xticks(range(len(mine)), labels, fontsize=7)
        ax.set_ylabel("req/s (MB/s for the big download)")
        ax.set_title(f"{server}: grey = in-process baseline, blue = through gateway and worker; label = ratio")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot written to {path}"
