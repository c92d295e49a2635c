"""How far behind the log a projection read in bursts may be (``ProjectionRunner.lag_s``): what a
decision judging how long something has not happened may count up to."""

from __future__ import annotations

import math
import time
from typing import cast

import pytest

from services.balancer.view import BALANCER_VIEW, BalancerState
from shared.bus import EventBus, stored_time
from shared.projection import ProjectionRunner


class StoredNothingNew:
    """Just enough of a bus for ``catch_up``: the log ends where the view is."""

    service = "test"

    def __init__(self) -> None:
        self.runner: ProjectionRunner[BalancerState] | None = None

    async def last_sequence(self) -> int:
        assert self.runner is not None
        return self.runner.seq

    async def last_sequence_of(self, subject_filter: str) -> int:
        return await self.last_sequence()


def runner(linger_s: float) -> ProjectionRunner[BalancerState]:
    bus = StoredNothingNew()
    made = ProjectionRunner(cast(EventBus, bus), BALANCER_VIEW, linger_s=linger_s)
    bus.runner = made
    return made


def test_a_reader_of_each_event_as_stored_counts_as_current() -> None:
    assert runner(0.0).lag_s() == 0.0


def test_a_reader_in_bursts_is_behind_without_bound_until_a_burst_ends_at_the_end_of_the_log() -> None:
    assert runner(0.05).lag_s() == math.inf


async def test_a_burst_ending_at_the_end_of_the_log_vouches_from_when_it_was_asked_for() -> None:
    view = runner(0.001)
    view._asked_at = time.monotonic() - 5.0  # a burst asked for 5 s ago, and read since
    await view._pace()  # called when that burst ended with nothing left
    assert view.lag_s() >= 5.0  # what was stored after it was asked for may be unread
    await view._pace()  # the next burst, asked for after the linger, ended at the end of the log too
    assert view.lag_s() < 1.0


async def test_catch_up_vouches_from_when_it_asked_for_the_end_of_the_log() -> None:
    view = runner(0.05)
    await view.catch_up()
    assert view.lag_s() < 1.0
    view._asked_at = time.monotonic() - 5.0
    await view._pace()  # an older horizon never replaces a newer one
    assert view.lag_s() < 1.0


def test_a_stored_time_is_read_to_the_nanosecond_in_any_offset() -> None:
    """The server's ``Nats-Time-Stamp`` (RFC 3339 with nanoseconds, which ``datetime`` cannot read)."""
    assert stored_time("2026-12-02T14:42:46.260284123Z") == pytest.approx(1796222566.260284123, abs=1e-6)
    assert stored_time("2026-12-02T14:42:46Z") == 1796222566.0
    assert stored_time("2026-12-02T15:42:46.5+01:00") == 1796222566.5
    with pytest.raises(ValueError, match="not a stored time"):
        stored_time("yesterday")
