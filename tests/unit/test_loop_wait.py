"""The selector's timeout (loop.wait_time): never more than MAX_WAIT, whatever
the deadline; at once when events are pending; none without a deadline."""

from __future__ import annotations

import math

import pytest

from start_server.loop import MAX_WAIT, wait_time


@pytest.mark.parametrize(
    ("deadline", "now", "pending", "expected"),
    [
        (None, 5.0, False, None),
        (None, 5.0, True, 0.0),
        (7.5, 5.0, False, 2.5),
        (7.5, 5.0, True, 0.0),
        (4.0, 5.0, False, 0.0),  # overdue
        (5.0 + 3e6, 5.0, False, MAX_WAIT),  # 35 days: over epoll's int milliseconds
        (1e300, 5.0, False, MAX_WAIT),
        (math.inf, 5.0, False, MAX_WAIT),
        (math.nan, 5.0, False, MAX_WAIT),  # never a spin
        (-math.inf, 5.0, False, 0.0),
    ],
)
def test_wait_time(deadline: float, now: float, pending: bool, expected: float) -> None:
    assert wait_time(deadline, now, pending) == expected


def test_the_longest_wait_fits_epoll() -> None:
    """epoll_wait takes an int of milliseconds (Python raises OverflowError past it)."""
    assert MAX_WAIT * 1000 < 2**31 - 1
