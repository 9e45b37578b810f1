"""The soak's verdict, report and plot, from its samples (``benchmarks.soak`` takes them).

``analyse`` turns the load intervals and the RSS samples into totals, first vs last window of
latency and of every process's RSS, and the verdict (``CRITERION``); ``soak_text`` is the
printed report and ``soak_plot`` the SVG.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from kernel_benchmarks import svg
from kernel_benchmarks.openloop import Interval, merged
from kernel_benchmarks.procs import Proc

__all__ = ["CRITERION", "GROWTH_MB", "GROWTH_PCT", "WINDOW_S", "analyse", "soak_plot", "soak_text"]

#: RSS may grow by this much (MB, or percent of the first window's median, whichever is larger)
GROWTH_MB = 5.0
GROWTH_PCT = 5.0
#: the first and last windows compared: this long, or a quarter of the run when that is shorter
WINDOW_S = 60.0
CRITERION = (
    f"flat RSS = for every kernel process, the median RSS of the last window <= the median of the first window "
    f"+ max({GROWTH_MB:g} MB, {GROWTH_PCT:g}%), windows of min({WINDOW_S:g} s, a quarter of the run), "
    "and no process exits or appears during the run"
)


def _labels(procs: dict[int, Proc], names: dict[int, str]) -> dict[int, str]:
    """``supervisor``, ``gateway``, ``worker bench``; numbered in pid order when there are several."""
    bases: dict[int, str] = {}
    for pid in sorted(procs):
        p = procs[pid]
        if p.role == "kernel":
            bases[pid] = "supervisor"
        elif p.role == "worker":
            bases[pid] = f"worker {p.plugin}"
        elif p.role == "gateway":
            bases[pid] = "gateway"
        else:
            bases[pid] = names.get(pid) or p.role
    counts = Counter(bases.values())
    seen: Counter[str] = Counter()
    out: dict[int, str] = {}
    for pid, base in bases.items():
        seen[base] += 1
        out[pid] = f"{base} {seen[base]}" if counts[base] > 1 else base
    return out


# -- the verdict -------------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope, MB per minute."""
    if len(points) < 3:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return round(sum((x - mx) * (y - my) for x, y in points) / den * 60, 3) if den else None


def analyse(
    samples: list[dict[str, Any]],
    intervals: list[Interval],
    procs: dict[int, Proc],
    names: dict[int, str] | None = None,
) -> dict[str, Any]:
    """Totals, first vs last window of latency and of every process's RSS, and the verdict."""
    end = samples[-1]["t"] if samples else 0.0
    window = min(WINDOW_S, end / 4) if end else 0.0
    first = [s for s in samples if s["t"] <= window]
    last = [s for s in samples if s["t"] >= end - window]
    labels = _labels(procs, names or {})
    processes = []
    reasons = []
    for pid in sorted(procs):
        key = str(pid)
        series = [(s["t"], s["rss_mb"][key]) for s in samples if key in s["rss_mb"]]
        if not series:
            continue
        a = _median([s["rss_mb"][key] for s in first if key in s["rss_mb"]])
        b = _median([s["rss_mb"][key] for s in last if key in s["rss_mb"]])
        cpu = _median([s["cpu_pct"][key] for s in samples[1:] if key in s["cpu_pct"]])
        item: dict[str, Any] = {
            "pid": pid,
            "label": labels[pid],
            "role": procs[pid].role,
            "plugin": procs[pid].plugin,
            "first_mb": a,
            "last_mb": b,
            "growth_mb": None,
            "growth_pct": None,
            "peak_mb": round(max(v for _, v in series), 2),
            "slope_mb_min": _slope(series),
            "cpu_pct": cpu,
            "seen": [series[0][0], series[-1][0]],
            "flat": None,
        }
        whole = key in samples[0]["rss_mb"] and key in samples[-1]["rss_mb"]
        if not whole:
            came = key not in samples[0]["rss_mb"]
            reasons.append(
                f"{labels[pid]} (pid {pid}) {'appeared' if came else 'exited'} at {series[0 if came else -1][0]:.0f} s"
            )
        elif a is not None and b is not None:
            item["growth_mb"] = round(b - a, 2)
            item["growth_pct"] = round((b - a) / a * 100, 1) if a else None
            item["flat"] = b - a <= max(GROWTH_MB, a * GROWTH_PCT / 100)
            if not item["flat"]:
                reasons.append(f"{labels[pid]} RSS grew {b - a:+.1f} MB ({item['growth_pct']:+.1f}%)")
        processes.append(item)
    sent = sum(i.sent for i in intervals)
    ok = sum(i.ok for i in intervals)
    errors = sum(i.errors for i in intervals)
    kinds: dict[str, int] = {}
    for i in intervals:
        for k, v in i.kinds.items():
            kinds[k] = kinds.get(k, 0) + v
    if errors:
        reasons.insert(0, f"{errors} errors ({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))})")
    load_end = intervals[-1].end if intervals else 0.0
    lat_all, svc_all = merged(intervals)
    lat_first, _ = merged([i for i in intervals if (i.start + i.end) / 2 <= window])
    lat_last, _ = merged([i for i in intervals if (i.start + i.end) / 2 >= load_end - window])
    worst = max(intervals, key=lambda i: i.latency.percentile(99)) if intervals else None
    gen_cpu = _median([s["loadgen_cpu_pct"] for s in samples[1:]])
    ms = 1000.0
    return {
        "window_s": round(window, 1),
        "seconds": round(load_end, 2),
        "sent": sent,
        "ok": ok,
        "errors": errors,
        "error_kinds": kinds,
        "rps": round((ok + errors) / load_end, 1) if load_end else 0.0,
        "p50_ms": round(lat_all.percentile(50) * ms, 3),
        "p99_ms": round(lat_all.percentile(99) * ms, 3),
        "p999_ms": round(lat_all.percentile(99.9) * ms, 3),
        "max_ms": round(lat_all.max * ms, 3),
        "service_p99_ms": round(svc_all.percentile(99) * ms, 3),
        "p99_first_ms": round(lat_first.percentile(99) * ms, 3),
        "p99_last_ms": round(lat_last.percentile(99) * ms, 3),
        "worst_p99_ms": round(worst.latency.percentile(99) * ms, 3) if worst else None,
        "worst_p99_at_s": round(worst.end, 1) if worst else None,
        "max_connections_used": max((i.connections for i in intervals), default=0),
        "behind_intervals": sum(1 for i in intervals if i.queued),
        "intervals": len(intervals),
        "loadgen_cpu_pct": gen_cpu,
        "processes": processes,
        "passed": not reasons,
        "reasons": reasons,
    }


# -- the report --------------------------------------------------------------------------------------


def _n(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def soak_text(doc: dict[str, Any]) -> str:
    """The report: what ran, requests, latency, one line per process, the verdict."""
    a = doc["result"]
    cap = doc["capacity"]
    head = (
        f"soak on {doc['server']} [{doc['variant']}]: {a['seconds']:.0f} s of GET {doc['route']} "
        f"at {doc['rate']:,.0f} req/s (open loop, constant rate)"
    )
    if cap:
        head += f" = {doc['fraction']:.2f} x capacity {cap['rps']:,.0f} req/s"
        capline = (
            f"  capacity: closed loop, {cap['connections']} connections, {cap['seconds']:.0f} s, {cap['loadgen']}; "
            f"{cap['errors']} errors, p99 {cap['p99_ms']:.2f} ms"
        )
    else:
        capline = "  capacity: not measured (--rate given)"
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(a["error_kinds"].items())) or "none"
    w = a["window_s"]
    lines = [
        head,
        capline,
        f"  requests: {a['sent']:,} sent, {a['ok']:,} ok (2xx), {a['errors']:,} errors (by kind: {kinds}); "
        f"{a['rps']:,.0f} answered/s; at most {a['max_connections_used']} connection(s) open",
        f"  latency from the scheduled time: p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms, "
        f"p99.9 {a['p999_ms']:.2f} ms, max {a['max_ms']:.1f} ms (p99 from the write: {a['service_p99_ms']:.2f} ms)",
        f"  p99 first {w:g} s {a['p99_first_ms']:.2f} ms, last {w:g} s {a['p99_last_ms']:.2f} ms; "
        f"worst interval p99 {_n(a['worst_p99_ms'], '{:.2f}')} ms at {_n(a['worst_p99_at_s'], '{:.0f}')} s; "
        f"load generator CPU {_n(a['loadgen_cpu_pct'], '{:.0f}')}% of a core (median)",
    ]
    if a["behind_intervals"]:
        lines.append(
            f"  behind: {a['behind_intervals']} of {a['intervals']} intervals ended with requests waiting for a "
            "connection (the server, or this machine, did not keep up with the rate there)"
        )
    lines.append("")
    cols = ("process", "pid", "first MB", "last MB", "growth MB", "growth %", "peak MB", "MB/min", "CPU %", "flat")
    rows = [
        (
            p["label"],
            str(p["pid"]),
            _n(p["first_mb"]),
            _n(p["last_mb"]),
            _n(p["growth_mb"], "{:+.1f}"),
            _n(p["growth_pct"], "{:+.1f}"),
            _n(p["peak_mb"]),
            _n(p["slope_mb_min"], "{:+.2f}"),
            _n(p["cpu_pct"], "{:.0f}"),
            {True: "yes", False: "NO", None: "-"}[p["flat"]],
        )
        for p in a["processes"]
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]

    def line(values: tuple[str, ...]) -> str:
        return "  " + "  ".join(
            f"{v:<{wd}}" if i == 0 else f"{v:>{wd}}" for i, (v, wd) in enumerate(zip(values, widths, strict=True))
        )

    lines += [line(cols), line(tuple("-" * wd for wd in widths)), *(line(r) for r in rows)]
    lines += [
        "",
        f"  first/last MB = median RSS over the first/last {w:g} s; MB/min = least-squares slope over the run; "
        "CPU % = median per interval (100 = one core)",
        f"  {CRITERION}",
        f"verdict: {'PASS' if a['passed'] else 'FAIL'}: "
        + (
            f"{a['errors']} errors and flat RSS in all {len(a['processes'])} processes"
            if a["passed"]
            else "; ".join(a["reasons"])
        ),
    ]
    return "\n".join(lines)


def soak_plot(doc: dict[str, Any]) -> str:
    """The SVG: latency per interval, RSS of every process, requests/s answered and errors."""
    intervals = doc["intervals"]
    a = doc["result"]
    lat = [
        ("p99", [(i["t"], i["p99_ms"]) for i in intervals]),
        ("p50", [(i["t"], i["p50_ms"]) for i in intervals]),
        ("p99 from the write", [(i["t"], i["service_p99_ms"]) for i in intervals]),
    ]
    rss = []
    growth = []
    for p in a["processes"]:
        key, label = str(p["pid"]), f"{p['label']} ({p['pid']})"
        series = [(s["t"], s["rss_mb"][key]) for s in doc["samples"] if key in s["rss_mb"]]
        rss.append((label, series))
        if p["first_mb"] is not None:
            growth.append((label, [(t, v - p["first_mb"]) for t, v in series]))
    span = [(0.0, GROWTH_MB), (doc["samples"][-1]["t"], GROWTH_MB)] if doc["samples"] else []
    growth.append((f"allowance: +{GROWTH_MB:g} MB (or {GROWTH_PCT:g}%)", span))
    rate = [
        ("2xx/s", [(i["t"], i["ok"] / i["seconds"]) for i in intervals]),
        ("errors/s", [(i["t"], i["errors"] / i["seconds"]) for i in intervals]),
    ]
    x = "seconds since the start of the soak"
    h = 280
    panels = [
        (f"latency per {doc['sample_seconds']:g} s interval (from the scheduled time)", lat, "ms", True, ()),
        ("RSS of every kernel process", rss, "MB", True, ()),
        (
            f"RSS minus its median over the first {a['window_s']:g} s",
            growth,
            "MB",
            False,
            (growth[-1][0],),
        ),
        (f"answers per second (target {doc['rate']:,.0f} req/s)", rate, "req/s", True, ()),
    ]
    charts = [
        (
            svg.chart(title, series, x_label=x, y_label=unit, top=34 + n * h, height=h, y_from_zero=zero, dashed=dash),
            h,
        )
        for n, (title, series, unit, zero, dash) in enumerate(panels)
    ]
    verdict = "PASS" if a["passed"] else "FAIL"
    title = (
        f"soak, {doc['server']} [{doc['variant']}]: {a['seconds']:.0f} s at {doc['rate']:,.0f} req/s; "
        f"{a['errors']} errors; p99 {a['p99_ms']:.2f} ms; {verdict}"
    )
    return svg.document(title, charts)
