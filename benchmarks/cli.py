"""``python -m benchmarks`` (or ``kernel bench``): start each system under test, load it on loopback, print the table.

The runner (and psutil, the ``bench`` extra) is imported only once the arguments are parsed:
``--help`` works on any install.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kernel_benchmarks import ON_REQUEST, SCENARIOS, loadgen, report
from kernel_benchmarks.options import Options, SoakOptions

DESCRIPTION = """\
Benchmarks of kernel: the plain in-process Starlette baseline and the same
handlers through gateway -> ZeroMQ -> worker, on hypercorn and/or uvicorn.
Every system under test is started here, loaded on 127.0.0.1 for a bounded
time, stopped, and checked to have left no process behind. Ratios are to the
baseline of the same server measured in the same run."""

EPILOG = f"""\
scenarios: {", ".join(SCENARIOS)}
  baseline  in-process Starlette app, same handlers, same server and settings (also run
            automatically for the ratios of hello/auth/echo/download/proxy)
  hello     GET small JSON through the gateway; --hello-variants gateways x replicas
  hello-composed  the same GET through the kernel's whole gateway (compose_gateway) in one
            process, the bench plugin behind the in-memory transport: the stack without the hop
  observability  hello on two kernels side by side, access log, request ids and metrics on (the
            defaults, hello-observed) and off (hello-quiet), runs alternating: the cost (target >= 0.95)
  isolation hello on two kernels side by side, every worker sandboxed (bwrap), in a cgroup of its
            plugin's and with its scoped config (hello-isolated), and none of it (hello-open), runs
            alternating: the cost (target >= 0.95) and each kernel's total PSS
  remote    hello through a worker joined over tcp:// with CurveZMQ (kernel worker --join) against
            a local worker over ipc://, two kernels side by side, runs alternating: the ratio
            (target >= 0.8) and the cost of the hop per request
  metrics-scrape  one scrape of the metrics of 20 plugins x 2 workers after traffic (target < 50 ms)
  auth      the same handler on a protected route, with a static external-access token
  p2p       that route with a plugin token (auth-plugin-token), then plugin bench-peer calling
            bench through the gateway on every request (p2p)
  echo      POST 1 KiB JSON echoed back
  download  1 MiB streamed responses under load, and one big streamed response
            (--download-mb, 1 GiB by default): MB/s and RSS growth
  websocket 64 B messages echoed over --connections WebSockets (one in flight each): the
            in-process Starlette WebSocket (baseline-ws-echo) and the bench plugin's (ws-echo)
  proxy     GET /api/proxy/up/hello: the proxy plugin in front of the baseline app (ratio to
            the baseline app called directly; target against the hello row, measured on the
            same kernel when hello is not run)
  proxy-1gb the big download (--download-mb) through the proxy: MB/s and RSS growth, with the
            bench plugin's own big download on the same kernel (unless download runs) for the ratio
  proxy-upload-1gb  the big upload (--download-mb) POSTed through the proxy to the baseline app's
            /upload, then to the bench plugin's own /api/bench/upload and to the baseline app
            directly: MB/s, RSS growth of every process, the size the handler read checked
  peers     the reference system: a real Backstage backend (Node, NODE_ENV=production, the
            packages tests/interop pins) with the same open hello, static-token hello and proxy
            (small GET and the big download) as hello/auth/proxy/proxy-1gb, which run with it in the
            same rounds; "x Backstage" ratios, its PSS, targets. Skipped, with one line, without Node
  startup   spawn of `kernel serve` with --startup-plugins plugins to readiness 200
  recovery  kill -9 of the bench worker to the next 200 from its route
  memory    total PSS of every kernel process with more and more plugins, per added plugin, a
            worker's start and restart: workers spawned, then forked from the zygote
  soak      only when named: capacity of GET /api/bench/hello (closed loop, --capacity-seconds),
            then --fraction of it at a constant rate (open loop) for --minutes; errors, p99 and
            the RSS of every kernel process over time, first vs last, a PASS/FAIL verdict for
            "0 errors and flat RSS", a JSON of every sample and an SVG plot in --soak-dir.
            python -m benchmarks soak --minutes 10 --fraction 0.7

The load generator is wrk when it is on PATH (apt-get install wrk), else an
asyncio generator of ours, which is a lower bound (the soak always drives ours:
wrk has no constant rate). The full default run takes about 3 minutes on 2
cores (about 7 with --runs 3)."""


def _csv(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def _variants(text: str) -> list[tuple[int, int]]:
    out = []
    for item in _csv([text]):
        g, _, r = item.partition("x")
        try:
            out.append((int(g), int(r)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad variant {item!r}: use GATEWAYSxREPLICAS, e.g. 2x1") from None
        if out[-1][0] < 1 or out[-1][1] < 1:
            raise argparse.ArgumentTypeError(f"bad variant {item!r}: at least 1 gateway and 1 replica")
    return out


def _positive(kind: Callable[[str], Any], minimum: float = 1) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="SCENARIO",
        help="scenario(s) to run, the same as --scenario (python -m benchmarks soak)",
    )
    p.add_argument(
        "--scenario",
        action="append",
        metavar="NAME[,NAME]",
        help=f"scenario(s) to run; repeatable or comma-separated (default: all but {', '.join(ON_REQUEST)})",
    )
    p.add_argument(
        "--server",
        choices=["auto", "hypercorn", "uvicorn", "both", "all"],
        default=None,
        help="HTTP server of the gateway and of the baseline: auto (the kernel's default: HTTP/1.1 on "
        "httptools), hypercorn or uvicorn; both = auto and uvicorn, all = the three (default: both; auto "
        "when only soak runs)",
    )
    p.add_argument(
        "--duration",
        type=_positive(int),
        default=5,
        metavar="S",
        help="seconds of load per measurement (whole seconds; default 5)",
    )
    p.add_argument(
        "--warmup",
        type=_positive(int, 0),
        default=1,
        metavar="S",
        help="seconds of unmeasured load before each measurement (default 1; 0 = none)",
    )
    p.add_argument(
        "--connections",
        type=_positive(int),
        default=32,
        metavar="N",
        help="concurrent keep-alive connections (default 32)",
    )
    p.add_argument("--threads", type=_positive(int), default=1, metavar="N", help="wrk threads (default 1)")
    p.add_argument(
        "--runs",
        type=_positive(int),
        default=1,
        metavar="N",
        help="rounds: each runs every scenario once, on fresh systems; a row keeps the median over them "
        "(default 1; the targets are set for 3)",
    )
    p.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto: wrk when on PATH, else ours (a lower bound)",
    )
    p.add_argument(
        "--hello-variants",
        type=_variants,
        default=_variants("1x1,1x2,2x1,2x2"),
        metavar="GxR,...",
        help="hello's gateway processes x worker replicas (default 1x1,1x2,2x1,2x2)",
    )
    p.add_argument(
        "--download-mb",
        type=_positive(int, 2),
        default=1024,
        metavar="MB",
        help="size of the big streamed download (and of the big upload) in MiB (default 1024)",
    )
    p.add_argument(
        "--download-timeout",
        type=_positive(float),
        default=60.0,
        metavar="S",
        help="time bound of one big download (default 60)",
    )
    p.add_argument(
        "--startup-plugins",
        type=_positive(int),
        default=5,
        metavar="N",
        help="plugins in the startup scenario, generated as needed (default 5)",
    )
    p.add_argument(
        "--trials",
        type=_positive(int),
        default=3,
        metavar="N",
        help="starts (startup) and kills (recovery) per run, median kept (default 3)",
    )
    _soak_arguments(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="write the rows as a JSON list")
    p.add_argument("--plot", type=Path, metavar="FILE", help="write a PNG of the rows (needs matplotlib)")
    return p


def _soak_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("soak")
    g.add_argument(
        "--minutes", type=_positive(float, 0.01), default=10.0, metavar="M", help="length of the soak (default 10)"
    )
    g.add_argument(
        "--fraction",
        type=_positive(float, 0.001),
        default=0.7,
        metavar="F",
        help="constant rate as a fraction of the measured capacity (default 0.7)",
    )
    g.add_argument(
        "--rate", type=_positive(float, 0.1), metavar="R", help="constant rate in req/s instead: no capacity run"
    )
    g.add_argument(
        "--capacity-seconds",
        type=_positive(int),
        default=10,
        metavar="S",
        help="closed-loop run that measures capacity (default 10, after --warmup)",
    )
    g.add_argument(
        "--sample-seconds",
        type=_positive(float, 0.2),
        default=5.0,
        metavar="S",
        help="interval of the figures and RSS samples (default 5)",
    )
    g.add_argument(
        "--soak-variant",
        type=_variants,
        default=_variants("1x1"),
        metavar="GxR",
        help="gateway processes x bench worker replicas (default 1x1)",
    )
    g.add_argument(
        "--soak-dir",
        type=Path,
        default=Path("soak-results"),
        metavar="DIR",
        help="where the report, the JSON of every sample and the SVG plot go (default ./soak-results)",
    )


def chosen(args: argparse.Namespace) -> list[str]:
    """The scenarios named (positionally or with ``--scenario``); none named: all but ``ON_REQUEST``."""
    return _csv([*args.names, *(args.scenario or [])]) or [s for s in SCENARIOS if s not in ON_REQUEST]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    args = parser(prog).parse_args(argv)
    scenarios = chosen(args)
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser(prog).error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if len(args.soak_variant) != 1:
        parser(prog).error("--soak-variant takes one GATEWAYSxREPLICAS, e.g. 2x1")
    try:
        from kernel_benchmarks.runner import Runner
    except ModuleNotFoundError as exc:
        if exc.name != "psutil":
            raise
        print(
            f"{prog}: psutil is not installed: pip install 'kernel[bench]' (scripts/setup installs it)",
            file=sys.stderr,
        )
        return 2
    server = args.server or ("auto" if set(scenarios) <= set(ON_REQUEST) else "both")
    servers = {"both": ["auto", "uvicorn"], "all": ["auto", "hypercorn", "uvicorn"]}.get(server, [server])
    (soak_gateways, soak_replicas) = args.soak_variant[0]
    opts = Options(
        servers=servers,
        scenarios=scenarios,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        runs=args.runs,
        hello_variants=args.hello_variants,
        download_bytes=args.download_mb * 1024 * 1024,
        download_timeout=args.download_timeout,
        startup_plugins=args.startup_plugins,
        trials=args.trials,
        soak=SoakOptions(
            minutes=args.minutes,
            fraction=args.fraction,
            rate=args.rate,
            capacity_seconds=args.capacity_seconds,
            sample_seconds=args.sample_seconds,
            gateways=soak_gateways,
            replicas=soak_replicas,
            out_dir=args.soak_dir,
        ),
    )
    gen = loadgen.choose(args.loadgen, args.threads)
    if set(scenarios) <= set(ON_REQUEST):
        print("load generator: python asyncio generator (closed loop for capacity, then constant rate)", flush=True)
        print(
            f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; up to {args.connections} "
            f"connections; soak of {args.minutes:g} min at "
            + (f"{args.rate:g} req/s" if args.rate else f"{args.fraction:g} x capacity ({args.capacity_seconds}s)"),
            flush=True,
        )
    else:
        print(f"load generator: {gen.name}", flush=True)
        print(
            f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; {args.connections} connections, "
            f"{args.duration}s per measurement (+{args.warmup}s warm-up), median of {args.runs} round(s)",
            flush=True,
        )
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # stop the systems under test on SIGTERM too
    work = Path(tempfile.mkdtemp(prefix="kernel-bench-"))
    runner = Runner(opts, gen, work, log=lambda s: print(s, file=sys.stderr, flush=True))
    try:
        rows = runner.run()
    except KeyboardInterrupt:
        print("interrupted; systems under test stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.add_ratios(rows)
    wall = time.monotonic() - started
    print()
    print(report.table(rows))
    print()
    for text in runner.texts:
        print(text)
        print()
    text = report.targets_text(rows)
    if text:
        print(text)
        print()
    leftovers = [f for f in runner.failures if "left behind" in f]
    print(
        f"{runner.systems} systems under test started and stopped; processes left behind: "
        f"{'none' if not leftovers else len(leftovers)}"
    )
    print(f"wall time: {wall:.0f} s")
    if args.json:
        report.write_json(rows, args.json)
        print(f"rows written to {args.json}")
    if args.plot:
        print(report.plot(rows, args.plot))
    if runner.failures:
        print("FAILED:\n  " + "\n  ".join(runner.failures), file=sys.stderr)
        return 1
    return 0
