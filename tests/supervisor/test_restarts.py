"""Restart policy: backoff doubles up to its cap and starts over after a success; flapping is counted in a window."""

from __future__ import annotations

import pytest

from kernel.supervisor.restarts import RestartPolicy


def test_backoff_doubles_up_to_the_maximum_and_resets_after_a_start() -> None:
    policy = RestartPolicy(limit=100, window=60, initial_delay=0.1, max_delay=0.5)
    assert [policy.next_delay() for _ in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    policy.started()
    assert policy.next_delay() == pytest.approx(0.1)


def test_more_deaths_than_the_limit_within_the_window_is_flapping() -> None:
    policy = RestartPolicy(limit=2, window=60, initial_delay=0.1, max_delay=1)
    assert [policy.died() for _ in range(3)] == [False, False, True]


def test_deaths_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy(limit=1, window=0, initial_delay=0.1, max_delay=1)  # every death leaves the window
    assert not any(policy.died() for _ in range(5))
