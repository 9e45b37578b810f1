"""What a benchmark run is asked to do: the options of ``python -m benchmarks``, parsed (a leaf, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SoakOptions:
    minutes: float = 10.0
    fraction: float = 0.7
    rate: float | None = None  # absolute requests/s: no capacity run, ``fraction`` unused
    capacity_seconds: int = 10
    sample_seconds: float = 5.0
    gateways: int = 1
    replicas: int = 1
    out_dir: Path = field(default_factory=lambda: Path("soak-results"))


@dataclass
class Options:
    servers: list[str]
    scenarios: list[str]
    duration: int = 5
    warmup: int = 1
    connections: int = 32
    runs: int = 1
    hello_variants: list[tuple[int, int]] = field(default_factory=lambda: [(1, 1), (1, 2), (2, 1), (2, 2)])
    download_bytes: int = 1024**3
    download_timeout: float = 60.0
    startup_plugins: int = 5
    trials: int = 3
    soak: SoakOptions = field(default_factory=SoakOptions)
