"""Under CI no test skips silently: a skip is a failure unless it is on ``ALLOWED``.

``.ci/run`` sets ``KERNEL_CI=1``; ``tests/conftest.py`` then registers ``SkipGuard`` as a plugin (not
as a conftest hook, so it sees ``contrib_plugins/*/tests`` too). A skipped test, or a skipped module
(``importorskip``, a fixture's ``pytest.skip``, a ``skipif`` mark), is reported as failed with the skip's
reason, unless its test id and its reason match an entry of ``ALLOWED``; a module skipped as a whole
becomes one failing test (``SkippedModule``), so the rest of the run goes on. What a skipped test needs is
installed by ``.ci/run`` and ``scripts/test`` (curl, Chromium, PostgreSQL and Redis, the OS-user
tools); a missing one is a red build, never a quietly smaller one. Outside CI, skips stay skips: a
developer's machine may lack Chromium or root.

Keep ``ALLOWED`` short, each entry with the reason it cannot run anywhere (not: "not installed here").
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: the environment variable ``.ci/run`` sets
ENV = "KERNEL_CI"


@dataclass(frozen=True)
class Allowed:
    test: str  # a regular expression matched at the start of the test id
    reason: str  # a regular expression searched in the skip's reason
    why: str  # why this skip is no gap in what CI checks


ALLOWED = (
    Allowed(
        r"tests/gateway/test_hardened_edge\.py::test_\w*h2c\w*\[uvicorn\]",
        r"uvicorn speaks HTTP/1\.1 only",
        "uvicorn has no HTTP/2 at all; the same cases run against hypercorn, the server that speaks it",
    ),
)


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def allowed(nodeid: str, reason: str) -> Allowed | None:
    """The entry of ``ALLOWED`` that lets test ``nodeid`` skip for ``reason``, if any."""
    for entry in ALLOWED:
        if re.match(entry.test, nodeid) and re.search(entry.reason, reason):
            return entry
    return None


def _refusal(reason: str) -> str:
    return (
        f"skipped under {ENV}=1, which allows no skip outside the allow-list of tests/ci_skips.py:\n"
        f"  {reason}\n"
        "Install what the test needs (.ci/run, scripts/test), or, if it can run nowhere, add it to ALLOWED "
        "with the reason."
    )


def _refused(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    """The reason of a skip that is not allowed, else ``None``."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    reason = _reason(report)
    return None if allowed(report.nodeid, reason) is not None else reason


class SkippedModule(pytest.Item):
    """Stands for a module that skipped as a whole (``importorskip``...): a test that fails saying why."""

    def __init__(self, *, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def runtest(self) -> None:
        raise pytest.fail.Exception(_refusal(self.reason), pytrace=False)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.name}: {self.reason}"


class SkipGuard:
    """The plugin: turns each skip that is not allowed into a failure, for tests and collected modules."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        reason = _refused(report)
        if reason is not None:
            report.outcome = "failed"
            report.longrepr = _refusal(reason)
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        reason = _refused(report)
        if reason is not None:  # not a collection error: that would stop the whole run
            report.outcome = "passed"
            report.longrepr = None
            report.result = [SkippedModule.from_parent(collector, name="skipped-module", reason=reason)]
        return report
