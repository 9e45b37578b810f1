"""``kernel.supervisor.logrelay``: whole lines from every pipe, each plugin within its rate, never a blocked writer."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time

from kernel.settings import LoggingSettings, LogRate, PluginLogging
from kernel.supervisor.logrelay import MAX_LINE, LogRelay, TokenBucket


def _relayed(relay_settings: LoggingSettings, writes: list[tuple[str, bytes]]) -> tuple[bytes, LogRelay]:
    """What the relay writes out when each named pipe (a plugin id, "" a kernel process) gets these writes."""
    out_r, out_w = os.pipe()
    names = list(dict.fromkeys(name for name, _ in writes))
    chunks: list[bytes] = []

    def read() -> None:
        while chunk := os.read(out_r, 1 << 20):
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()

    async def run() -> LogRelay:
        relay = LogRelay(relay_settings, out_w)
        pipes = {name: relay.pipe(name) for name in names}
        for name, data in writes:
            os.write(pipes[name], data)
            await asyncio.sleep(0)  # the relay reads in between: a half line waits for its end
            await asyncio.sleep(0.01)
        for fd in pipes.values():
            os.close(fd)
        relay.close()
        return relay

    relay = asyncio.run(run())
    os.close(out_w)
    reader.join()
    os.close(out_r)
    return b"".join(chunks), relay


def test_half_lines_of_two_children_are_never_interleaved() -> None:
    unlimited = LoggingSettings(rate=LogRate(lines_per_second=0))
    out, relay = _relayed(
        unlimited,
        [("a", b"first half of a, "), ("b", b"all of b\nhalf of b, "), ("a", b"second half of a\n"), ("b", b"end\n")],
    )
    assert out.splitlines() == [b"all of b", b"first half of a, second half of a", b"half of b, end"]
    assert relay.counts() == {}


def test_a_line_without_its_end_is_relayed_when_the_child_is_gone_and_a_long_one_is_cut() -> None:
    out, _ = _relayed(
        LoggingSettings(), [("a", b"x" * 40_000), ("a", b"x" * (MAX_LINE - 39_990)), ("b", b"no newline")]
    )
    assert out.splitlines() == [b"x" * MAX_LINE, b"x" * 10, b"no newline"]


def test_a_plugin_past_its_rate_loses_lines_counted_and_others_keep_theirs() -> None:
    settings = LoggingSettings(
        rate=LogRate(lines_per_second=0.001, burst=2), plugins={"quiet": PluginLogging(rate=LogRate(0, 1))}
    )
    noisy = b"".join(b"noisy %d\n" % i for i in range(10))
    quiet = b"".join(b"quiet %d\n" % i for i in range(10))
    out, relay = _relayed(settings, [("noisy", noisy), ("quiet", quiet), ("", b"kernel line\n")])
    assert out.splitlines() == [b"noisy 0", b"noisy 1", *quiet.splitlines(), b"kernel line"]
    assert relay.counts() == {"rate": {"noisy": 8}}


def test_the_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(LogRate(lines_per_second=10, burst=5))
    now = 1e9  # long after it was made: full
    assert bucket.take(now, 8) == 5
    assert bucket.take(now, 1) == 0
    assert bucket.take(now + 0.5, 10) == 5
    assert bucket.take(now + 0.6, 10) == 1
    assert bucket.take(now + 100, 10) == 5


def test_an_output_nobody_reads_blocks_no_one_and_drops_counted() -> None:
    out_r, out_w = os.pipe()  # never read: the writer thread blocks once the pipe is full, nobody else
    lines, buffer = 6000, 100_000
    line = b"y" * 99 + b"\n"

    async def run() -> LogRelay:
        relay = LogRelay(LoggingSettings(rate=LogRate(lines_per_second=0)), out_w, buffer_bytes=buffer)
        fd = relay.pipe("chatty")
        for _ in range(lines):  # 600 kB, far more than the output can hold
            os.write(fd, line)
            await asyncio.sleep(0)  # the loop runs on: nothing blocks it
        os.close(fd)
        deadline = time.monotonic() + 10
        while relay.open_pipes:  # every line read (what the pipe still held when the writer stopped, too)
            assert time.monotonic() < deadline, "the relay never read its pipe to the end"
            await asyncio.sleep(0.01)
        relay.close(timeout=0.5)
        return relay

    relay = asyncio.run(run())
    dropped = relay.counts()["backlog"]["chatty"]
    # kept at most: what the unread pipe holds, the chunk the writer thread is stuck writing (a
    # buffer's worth at most) and the buffer filled again behind it; every other line is dropped
    kept_at_most = (fcntl.fcntl(out_w, fcntl.F_GETPIPE_SZ) + 2 * buffer) // len(line) + 1
    assert lines - kept_at_most <= dropped < lines
    os.close(out_r)
    os.close(out_w)
