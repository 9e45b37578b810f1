"""What a scenario is: a function ``rows(bench, server, *variant)`` that starts its systems under test
through ``bench``, measures and returns rows (``benchmarks.rows``).

``Bench`` is all a scenario sees of the runner: the options, the load generator, the systems under
test (each stopped, and proven gone, when its ``with`` ends), three measurements, the log and notes. The
scenarios are listed in ``benchmarks.scenarios``; the runner looks them up there and never imports a
scenario module itself, nor does a scenario import the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from kernel_benchmarks.loadgen import Load, LoadGenerator
from kernel_benchmarks.options import Options
from kernel_benchmarks.rows import Row

if TYPE_CHECKING:  # procs imports psutil: only its types here
    from kernel_benchmarks.peer import BackstagePeer
    from kernel_benchmarks.procs import BaselineServer, Kernel, KernelSetup


class Bench(Protocol):
    """The runner, as a scenario sees it."""

    @property
    def o(self) -> Options: ...

    @property
    def gen(self) -> LoadGenerator: ...

    @property
    def big(self) -> str:
        """Row name of the big download: ``download-1gb`` by default."""
        ...

    @property
    def texts(self) -> list[str]:
        """Reports of their own (the soak's), printed after the table."""
        ...

    def log(self, line: str) -> None: ...

    def baseline(self, server: str, app: str = "plain") -> AbstractContextManager[BaselineServer]:
        """The in-process baseline app on ``server`` (``app="composed"``: the gateway in one process), started."""
        ...

    def backstage(self, upstream: str | None = None) -> AbstractContextManager[BackstagePeer]:
        """The reference Backstage backend (``benchmarks/peer.py``), started; its proxy to ``upstream`` if given."""
        ...

    def note(self, line: str) -> None:
        """A line printed after the table, once however many rounds say it (a skipped scenario's reason)."""
        ...

    def kernel(self, setup: KernelSetup) -> AbstractContextManager[Kernel]:
        """A kernel as ``setup`` says, started and ready."""
        ...

    def spawned(self, setup: KernelSetup) -> AbstractContextManager[Kernel]:
        """A kernel as ``setup`` says, not started yet (the scenario times its start)."""
        ...

    def load_row(
        self,
        scenario: str,
        server: str,
        load: Load,
        target: Any,
        *,
        kernel: bool,
        variant: str = "",
        plugin: str = ...,
    ) -> Row:
        """``load`` after a warm-up, ``runs`` times: medians, errors summed, RSS peaks of ``target``'s processes
        (``plugin``'s worker, the bench plugin's by default)."""
        ...

    def download_row(
        self, scenario: str, server: str, url: str, target: Any, *, kernel: bool, plugin: str = ...
    ) -> Row:
        """The big streamed download from ``url``: MB/s, RSS (``plugin``'s worker) every 50 ms."""
        ...

    def upload_row(self, scenario: str, server: str, url: str, target: Any, *, kernel: bool, plugin: str = ...) -> Row:
        """The big upload (``--download-mb``) POSTed to ``url``, the size answered checked: MB/s, RSS every 50 ms."""
        ...


#: one scenario's measurement on one server, for one variant
Rows = Callable[..., list[Row] | Row]


def once(_options: Options) -> Sequence[tuple[Any, ...]]:
    """A scenario without variants runs once per server."""
    return [()]


@dataclass(frozen=True)
class Scenario:
    """``rows(bench, server, *variant)`` for each of ``variants(options)``."""

    rows: Rows
    variants: Callable[[Options], Sequence[tuple[Any, ...]]] = once
