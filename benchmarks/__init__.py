"""Load tests for kernel: ``python -m benchmarks --help`` or ``kernel bench --help`` (see benchmarks/README.md).

Nothing here imports psutil or starts anything: ``benchmarks.command`` (the ``kernel bench``
subcommand) is loaded by every ``kernel`` command, and ``--help`` works without the ``bench`` extra.
"""

SCENARIOS = (
    "baseline",
    "hello",
    "hello-composed",
    "observability",
    "isolation",
    "remote",
    "metrics-scrape",
    "auth",
    "p2p",
    "echo",
    "download",
    "websocket",
    "proxy",
    "proxy-1gb",
    "proxy-upload-1gb",
    "peers",
    "startup",
    "recovery",
    "memory",
    "soak",
)
#: scenarios that run only when named: not part of a plain ``python -m benchmarks``
ON_REQUEST = ("soak",)
#: scenarios whose ratios need the ``baseline`` rows: those run too
LOAD_SCENARIOS = ("hello", "hello-composed", "auth", "p2p", "echo", "download", "proxy")
#: the kernel rows the ``peers`` scenario's Backstage rows are compared with: those run too
PEERS_COMPARE = ("hello", "auth", "proxy", "proxy-1gb")
