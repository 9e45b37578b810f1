"""A plugin's test suite as an author writes it: 10 tests, 5 HTTP calls each, a fresh in-process backend per test.

The figure the issue asks for (50 calls in under 1 s of wall time) is measured by hand, not asserted:
``time .venv/bin/python -m pytest -q --durations=0 tests/testing/test_fifty_calls.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kernel.testing import TestBackend, mock_credentials, start_test_backend
from tests.testing import notes

USER = mock_credentials.user.header()


@pytest.fixture
async def backend() -> AsyncIterator[TestBackend]:
    async with start_test_backend([notes.plugin]) as b:
        yield b


@pytest.mark.parametrize("n", range(10))
async def test_five_calls(backend: TestBackend, n: int) -> None:
    client = backend.client
    assert (await client.get("/api/notes/public/whoami")).status_code == 200
    assert (await client.get("/api/notes/whoami")).status_code == 401
    assert (await client.post("/api/notes/notes", json={"body": f"note {n}"}, headers=USER)).status_code == 201
    assert (await client.get("/api/notes/notes", headers=USER)).json() == {"notes": [f"note {n}"]}
    assert (await client.get("/api/notes/users-only", headers=mock_credentials.service.header())).status_code == 403
