"""The handshake's refusal of a peer of another protocol version: the error names both versions, and whose is whose."""

from __future__ import annotations

import logging

import pytest

from kernel import protocol as p
from kernel.transport.connection import hello_refusal


@pytest.mark.parametrize("theirs", [p.PROTOCOL_VERSION - 1, p.PROTOCOL_VERSION + 1, 99], ids=["older", "newer", "far"])
def test_a_refusal_names_the_peers_version_and_ours(theirs: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="kernel.transport"):
        refused = hello_refusal(p.Hello(theirs, "worker", "echo", "echo.0.1"), "gateway 0")
    assert refused is not None and (refused.stream, refused.name) == (0, "ProtocolError")
    assert refused.message == (
        f"protocol version mismatch: peer worker echo.0.1 speaks version {theirs}, "
        f"this side speaks {p.PROTOCOL_VERSION}"
    )
    # the side that refuses logs the same words, naming itself
    assert [r.getMessage() for r in caplog.records] == [f"gateway 0: {refused.message}"]


def test_a_refusal_of_a_peer_without_an_id_reads_cleanly() -> None:
    refused = hello_refusal(p.Hello(p.PROTOCOL_VERSION + 1, "gateway"), "supervisor")
    assert refused is not None
    assert refused.message.startswith("protocol version mismatch: peer gateway speaks version ")
