"""Bounded windows over event time: sums per second and latency percentiles that never undershoot."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.windows import BIN_FLOOR_MS, BIN_RATIO, LatencyWindow, WindowSums, histogram_percentile


def test_sums_cover_the_seconds_from_the_start_of_the_window_on() -> None:
    sums = WindowSums()
    sums.add(100.2, 1.0, 2.0)
    sums.add(100.7, 1.0, 2.0)
    sums.add(105.5, 3.0, 4.0)
    assert sums.sums(100.0).a == 5.0 and sums.sums(100.0).b == 8.0
    assert sums.sums(100.0).first_ts == 100.2
    assert sums.sums(101.0).a == 3.0 and sums.sums(101.0).first_ts == 105.5
    assert sums.sums(106.0).first_ts is None


def test_a_window_forgets_seconds_older_than_its_horizon() -> None:
    sums = WindowSums(horizon_s=10.0)
    for second in range(100):
        sums.add(float(second), 1.0)
    assert len(sums.buckets) <= 11
    assert sums.sums(0.0).a <= 11


@given(st.lists(st.floats(min_value=0.01, max_value=60_000.0), min_size=1, max_size=200))
def test_a_percentile_is_never_below_the_true_one_nor_more_than_one_bin_above_it(values: list[float]) -> None:
    window = LatencyWindow()
    for value in values:
        window.add(1000.0, value)
    ordered = sorted(values)
    for q in (50.0, 95.0, 99.0, 100.0):
        found = histogram_percentile(window.merged(0.0), q)
        rank = max(1, -(-int(q * len(ordered)) // 100))
        exact = ordered[min(len(ordered), rank) - 1]
        assert found is not None
        assert exact <= found <= max(exact * BIN_RATIO * 1.0001, BIN_FLOOR_MS)


def test_latencies_outside_the_window_do_not_count() -> None:
    window = LatencyWindow()
    window.add(10.0, 500.0)
    window.add(20.0, 5.0)
    assert histogram_percentile(window.merged(15.0), 100) is not None
    assert histogram_percentile(window.merged(15.0), 100) < 6.0  # type: ignore[operator]
    assert histogram_percentile(window.merged(25.0), 50) is None
