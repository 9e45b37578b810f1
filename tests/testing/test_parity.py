"""The in-process test backend is the production gateway: the same requests get the same answers, headers included.

Both backends serve the ``notes`` plugin on one config that turns on every layer of the edge a request
can meet (CORS, security headers, request ids, compression, the limits). The in-process backend
differs only in its transport (``kernel.gateway.memory_transport``); a real ``kernel serve`` adds only
what its HTTP server writes (``date``, ``server``). A layer left out of the in-process composition,
or composed in another order, shows here as a difference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from kernel.testing import TestBackend, TestDatabases, mock_credentials, start_test_backend
from tests.testing import notes

ORIGIN = "https://app.example.com"
CONFIG: dict[str, Any] = {
    "backend": {
        "cors": {"origin": [ORIGIN], "credentials": True},
        "gateway": {"maxHeaders": 40, "maxRequestBodySize": 2048},
    },
    "notes": {"greeting": "same everywhere"},
}
#: what only the HTTP server writes (its framing of a body of unknown length), and a new id per request
SERVER_ONLY = {"date", "server", "transfer-encoding", "x-request-id"}
JANE = mock_credentials.user("user:default/jane").header()


def _requests() -> list[tuple[str, str, dict[str, Any]]]:
    many = {f"x-extra-{i}": "1" for i in range(45)}
    return [
        ("GET", "/api/notes/public/whoami", {}),
        ("GET", "/api/notes/whoami", {}),
        ("GET", "/api/notes/whoami", {"headers": JANE}),
        ("GET", "/api/notes/cookie/whoami", {}),
        ("GET", "/api/notes/greeting", {"headers": {**JANE, "origin": ORIGIN}}),
        ("GET", "/api/notes/boom", {"headers": JANE}),
        ("GET", "/api/notes/crash", {"headers": JANE}),
        ("GET", "/api/nobody/here", {"headers": JANE}),
        ("OPTIONS", "/api/notes/greeting", {"headers": {"origin": ORIGIN, "access-control-request-method": "POST"}}),
        ("GET", "/api/notes/whoami", {"headers": {**JANE, **many}}),
        ("POST", "/api/notes/notes", {"headers": JANE, "json": {"body": "x" * 4096}}),
        ("GET", "/api/notes/notes", {"headers": {**JANE, "accept-encoding": "gzip"}}),
        ("GET", "/.kernel/health/v1/liveness", {}),
        ("GET", "/no/such/root/route", {}),
        ("PUT", "/.kernel/health/v1/liveness", {}),
    ]


async def _answers(backend: TestBackend) -> list[tuple[int, dict[str, str], bytes]]:
    answers = []
    for method, path, options in _requests():
        resp = await backend.client.request(method, path, **options)
        headers = {k: v for k, v in resp.headers.items() if k not in SERVER_ONLY}
        assert "x-request-id" in resp.headers or resp.status_code in (431,), (method, path)
        answers.append((resp.status_code, headers, resp.content))
    return answers


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def databases() -> AsyncIterator[TestDatabases]:
    dbs = TestDatabases()
    yield dbs
    await dbs.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_in_process_and_a_real_kernel_answer_alike(databases: TestDatabases) -> None:
    answers = {}
    for mode in ("in-process", "process"):
        db = await databases.init("sqlite")
        config = {**CONFIG, "backend": {**CONFIG["backend"], "database": db.config}}
        async with start_test_backend([notes.plugin], config=config, mode=mode) as backend:  # type: ignore[arg-type]
            answers[mode] = await _answers(backend)
    statuses = [status for status, _, _ in answers["process"]]
    # every layer was met: a CORS preflight, the header-count and body limits, errors of both sides
    assert statuses == [200, 401, 200, 401, 200, 400, 500, 404, 204, 431, 413, 200, 200, 404, 405]
    for sent, local, real in zip(_requests(), answers["in-process"], answers["process"], strict=True):
        assert local[0] == real[0], sent
        assert local[1] == real[1], (sent, set(local[1].items()) ^ set(real[1].items()))
        assert local[2] == real[2], sent
