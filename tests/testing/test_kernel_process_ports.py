"""``KernelProcess`` chooses its ports again when another process took one between its choice and the
kernel's bind (tests run side by side); a port the test chose itself is never replaced."""

from __future__ import annotations

import socket

import pytest

from kernel.testing import KernelProcess


def test_a_port_taken_before_the_kernel_binds_it_is_chosen_again() -> None:
    k = KernelProcess()
    taken = k.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with k:
            assert k.port != taken
            assert k.readiness()[0] == 200


def test_a_metrics_port_the_test_chose_is_not_replaced() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        chosen = squatter.getsockname()[1]
        k = KernelProcess({"backend": {"metrics": {"port": chosen}}})
        with pytest.raises(RuntimeError, match="Address already in use|metrics"):
            k.start()
        k.stop()
        assert k.metrics_port == chosen
