"""The ``slow`` mark: a test that starts processes (a real kernel, the ``kernel`` CLI, a subprocess).

``scripts/test -m "not slow"`` is the quick loop. The mark is not written by hand: ``tests/conftest.py``
puts it on each test whose code starts a process, found by following names from the test function
and every fixture it uses, through the functions (and classes) of the suite's own modules, to one of
``STARTERS`` (``KernelProcess``, ``subprocess``, ...) or to a call of ``start_test_backend`` with the
constant ``"process"``. A new process test is marked without anyone remembering to.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import CodeType
from typing import Any

import pytest

from kernel.testing import KernelProcess

ROOT = Path(__file__).resolve().parents[1]
#: objects whose use starts a process
STARTERS: tuple[object, ...] = (KernelProcess, subprocess, multiprocessing, os.fork, os.execv)
MARK = "slow"


def _codes(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _codes(const)


def _ours(obj: object) -> bool:
    """Whether ``obj`` is defined in the suite (``tests/``, ``contrib_plugins/*/tests/``), not in a library."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    return path.is_relative_to(ROOT) and "tests" in path.relative_to(ROOT).parts


def _functions(obj: object) -> list[Any]:
    """The plain functions behind ``obj``: itself, or a class's methods."""
    if inspect.isclass(obj):
        return [f for f in vars(obj).values() if inspect.isfunction(f)]
    function = inspect.unwrap(obj) if callable(obj) else obj  # type: ignore[arg-type]
    return [function] if inspect.isfunction(function) else []


def starts_processes(obj: object, seen: set[int] | None = None) -> bool:
    """Whether calling ``obj`` (a function or a class of the suite) may start a process."""
    seen = set() if seen is None else seen
    for function in _functions(obj):
        if id(function) in seen:
            continue
        seen.add(id(function))
        scope: dict[str, Any] = function.__globals__
        for code in _codes(function.__code__):
            if "process" in code.co_consts and "start_test_backend" in code.co_names:
                return True
            for name in code.co_names:
                value = scope.get(name)
                if value is None:
                    continue
                if any(value is starter for starter in STARTERS):
                    return True
                searchable = inspect.isfunction(value) or inspect.isclass(value)
                if searchable and _ours(value) and starts_processes(value, seen):
                    return True
    return False


def is_slow(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    if function is not None and starts_processes(function):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for definitions in info.name2fixturedefs.values() if info is not None else ():
        for definition in definitions:
            if _ours(definition.func) and starts_processes(definition.func):
                return True
    return False


def mark(items: list[pytest.Item]) -> None:
    for item in items:
        if is_slow(item):
            item.add_marker(MARK)
