"""Fixtures of tests/deploy: the pinned tools, CURVE keys, and the chart rendered once per value set."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.chart import VALUE_SETS, Rendered, install_tools, make_keys, render


@pytest.fixture(scope="session")
def tools() -> Path:
    return install_tools()


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keys(tmp_path_factory.mktemp("curve"))


@pytest.fixture(scope="session")
def rendered(tools: Path, keys: Path) -> dict[str, Rendered]:
    """Every value set of ``VALUE_SETS``, rendered."""
    return {name: render(tools, name, keys) for name in VALUE_SETS}
