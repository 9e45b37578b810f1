"""The README's "Testing a plugin" example runs as written, against the README's ``todo`` plugin."""

from __future__ import annotations

import inspect
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.testing import TestDatabases

README = Path(__file__).resolve().parents[2] / "README.md"


def _first_python_block(section: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match is not None, f"no python block under '## {section}'"
    return match.group(1)


@pytest.fixture
def todo_plugin() -> Iterator[None]:
    """The README's ``kernel_todo`` module, importable as the example imports it."""
    module = types.ModuleType("kernel_todo")
    exec(compile(_first_python_block("Writing a plugin"), "README:kernel_todo", "exec"), module.__dict__)
    sys.modules["kernel_todo"] = module
    yield
    del sys.modules["kernel_todo"]


def _tests(namespace: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (name, fn) for name, fn in namespace.items() if name.startswith("test_") and inspect.iscoroutinefunction(fn)
    ]


async def test_the_readme_example_passes(todo_plugin: None) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_first_python_block("Testing a plugin"), "README:tests/test_todo.py", "exec"), namespace)
    tests = _tests(namespace)
    assert len(tests) == 4
    for _name, fn in tests:
        if "test_database" not in inspect.signature(fn).parameters:
            await fn()
            continue
        for engine in TestDatabases.each_supported_id():
            databases = TestDatabases()
            try:
                await fn(await databases.init(engine))
            finally:
                await databases.close()
