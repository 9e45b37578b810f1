"""``Upstream.get_list`` against a real HTTP server on 127.0.0.1: whole bodies, the size bound, short reasons."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from frobs_support import FakeApi
from kernel_frobs_aggregator.upstream import MAX_BODY_BYTES, Upstream, UpstreamError

from kernel.testing import RecordingLogger


@pytest.fixture(scope="module")
def api() -> Iterator[FakeApi]:
    fake = FakeApi("/list", [], delay=2.0).start()
    yield fake
    fake.stop()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    client = Upstream(RecordingLogger())
    yield client
    await client.close()


async def test_a_body_of_many_chunks_is_read_whole(api: FakeApi, upstream: Upstream) -> None:
    api.data = [{"id": f"frob-{i}", "status": "x" * 100} for i in range(20_000)]  # ~2.5 MB
    try:
        assert await upstream.get_list("frobs", f"{api.url}/list", timeout=10) == api.data
    finally:
        api.data = []


async def test_a_body_over_the_bound_is_refused(api: FakeApi, upstream: Upstream) -> None:
    api.data = ["x" * (1 << 20)] * ((MAX_BODY_BYTES >> 20) + 1)
    try:
        with pytest.raises(UpstreamError, match=f"^answered more than {MAX_BODY_BYTES >> 20} MiB$"):
            await upstream.get_list("frobs", f"{api.url}/list", timeout=10)
    finally:
        api.data = []


@pytest.mark.parametrize(
    ("path", "mode", "reason"),
    [
        ("/list", "broken", "answered HTTP 500"),
        ("/nope", "ok", "answered HTTP 404"),
        ("/list", "not-json", "answered something that is not a JSON array"),
        ("/list", "slow", "did not answer within 0.5s"),
    ],
)
async def test_failures_are_short_reasons(api: FakeApi, upstream: Upstream, path: str, mode: str, reason: str) -> None:
    api.mode = mode
    try:
        with pytest.raises(UpstreamError) as caught:
            await upstream.get_list("frobs", f"{api.url}{path}", timeout=0.5)
    finally:
        api.mode = "ok"
    assert str(caught.value) == reason


async def test_a_closed_port_is_unreachable(upstream: Upstream) -> None:
    closed = FakeApi("/list", [])  # a free port nobody listens on
    with pytest.raises(UpstreamError, match="^unreachable$"):
        await upstream.get_list("frobs", f"{closed.url}/list", timeout=5)
