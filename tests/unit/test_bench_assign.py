"""The assignment benchmark pairs server store times per task, whichever arrives first."""

from __future__ import annotations

from services.cli.bench.assign import StoredTimes


def test_latency_is_between_the_stored_submission_and_the_first_stored_assignment() -> None:
    times = StoredTimes(expected=2)
    times.on_assigned("b", 9_000_000)  # its assignment read before its submission: paired later
    times.on_submitted("a", 1_000_000)
    times.on_submitted("b", 4_000_000)
    assert not times.complete.is_set()
    times.on_assigned("a", 3_000_000)
    times.on_assigned("a", 8_000_000)  # a later attempt's assignment does not count
    assert times.complete.is_set()
    assert sorted(times.latencies_ms()) == [2.0, 5.0]
    assert times.span_s() == 0.008


def test_nothing_stored_measures_nothing() -> None:
    times = StoredTimes(expected=1)
    times.on_assigned("lost", 5)
    assert times.latencies_ms() == [] and times.span_s() == 0.0 and not times.complete.is_set()
