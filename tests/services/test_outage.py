"""kernel_services.outage: an outage logged when it starts and when it ends, never at every failed call."""

from __future__ import annotations

import errno

from kernel.testing import RecordingLogger
from kernel_services.outage import Outage, reason


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() -> None:
    log = RecordingLogger()
    outage = Outage(log, "The Redis cache")
    outage.ok()  # nothing was down: nothing to say
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('10.0.0.5', 6379)")
    for _ in range(100):
        outage.failed(refused, "reads are misses")
    assert outage.down
    outage.ok()
    outage.ok()
    assert len(log.lines) == 2
    assert log.lines[0].startswith("The Redis cache is unavailable (ConnectionRefusedError: ")
    assert log.lines[0].endswith("; reads are misses")
    assert log.lines[1].startswith("The Redis cache is back after ")
    outage.failed(TimeoutError(), "again")  # the next outage is logged again
    assert len(log.lines) == 3
    outage.ok()
    assert len(log.lines) == 4


def test_the_reason_shown_to_clients_names_the_cause_not_the_address() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('10.0.0.5', 5432)")
    assert reason(refused) == "connection refused"
    assert reason(TimeoutError("no answer from 10.0.0.5")) == "timed out"
    assert reason(RuntimeError("connection was closed in the middle of operation\nmore")) == (
        "connection was closed in the middle of operation"
    )
