"""Garbage-collector pauses are counted per generation, and a service's start-up heap is frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared.gcpause import BUCKETS_S, GcPauses, freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the test process back its collector as it was (a test may freeze it)."""
    try:
        yield
    finally:
        gc.unfreeze()


def test_each_pause_lands_in_its_bucket_and_in_the_totals_and_longest() -> None:
    pauses = GcPauses("router")
    pauses.record(0, 0.0004, 0.0003)
    pauses.record(2, 0.030, 0.012)
    pauses.record(2, 0.300, 0.020)  # longer than every bound: the overflow bucket
    assert pauses.counts[0][0] == 1
    assert pauses.counts[2][BUCKETS_S.index(0.05)] == 1 and pauses.counts[2][-1] == 1
    summary = pauses.summary()
    assert summary["2"] == {
        "count": 2,
        "total_ms": 330.0,
        "max_ms": 300.0,
        "cpu_total_ms": 32.0,
        "cpu_max_ms": 20.0,
    }
    assert summary["1"]["count"] == 0


def test_prometheus_reads_a_cumulative_histogram_per_generation() -> None:
    pauses = GcPauses("router")
    pauses.record(2, 0.030)
    pauses.record(2, 0.300)
    [family] = list(pauses.collect())
    samples = {
        (sample.name, sample.labels.get("generation"), sample.labels.get("le")): sample.value
        for sample in family.samples
    }
    assert samples[("hive_gc_pause_seconds_bucket", "2", "0.025")] == 0
    assert samples[("hive_gc_pause_seconds_bucket", "2", "0.05")] == 1
    assert samples[("hive_gc_pause_seconds_bucket", "2", "+Inf")] == 2
    assert samples[("hive_gc_pause_seconds_count", "2", None)] == 2
    assert samples[("hive_gc_pause_seconds_sum", "2", None)] == pytest.approx(0.33)
    assert samples[("hive_gc_pause_seconds_count", "0", None)] == 0


def test_a_real_collection_is_timed_until_the_counter_is_closed() -> None:
    pauses = GcPauses("router").install()
    try:
        gc.collect()
        assert pauses.summary()["2"]["count"] == 1
        pauses.reset()
        assert pauses.summary()["2"] == {
            "count": 0,
            "total_ms": 0.0,
            "max_ms": 0.0,
            "cpu_total_ms": 0.0,
            "cpu_max_ms": 0.0,
        }
    finally:
        pauses.close()
    gc.collect()
    assert pauses.summary()["2"]["count"] == 0
    assert pauses._on_gc not in gc.callbacks


def test_what_lives_at_the_freeze_is_walked_by_no_later_collection(unfrozen: None) -> None:
    kept = [[index] for index in range(10_000)]  # tracked containers, alive from the start
    frozen = freeze_startup_heap()
    assert frozen >= len(kept) and gc.get_freeze_count() == frozen
    assert not any(item is kept for item in gc.get_objects())
    fresh = [[0]]
    assert any(item is fresh for item in gc.get_objects())  # later objects are still collected
