"""The assignment benchmark pairs server store times per task, whichever arrives first."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

import pytest

from services.cli.bench.assign import (
    CpuTimeline,
    StoredTimes,
    balancer_moves_of,
    full_collections,
    gc_pauses_of,
    parse_assign_services,
    run_ns,
    slow_windows,
    tail_shares,
)
from services.cli.main import build_parser
from services.cli.stack import SERVICE_NAMES


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


def test_the_breakdown_splits_each_latency_at_the_routers_decision() -> None:
    times = StoredTimes(expected=2)
    times.on_submitted("a", 1_000_000)
    times.on_submitted("b", 2_000_000)
    times.on_assigned("a", 9_000_000, decided_ns=7_000_000)
    times.on_assigned("a", 20_000_000, decided_ns=19_000_000)  # a later attempt: not this one
    times.on_assigned("b", 4_000_000)  # decided when, not said: left out of the breakdown
    assert times.breakdown_ms() == ([6.0], [2.0])


def test_assign_runs_router_and_recovery_unless_told_and_all_means_the_five() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "assign"]).services == ("router", "recovery")
    assert parser.parse_args(["bench", "assign", "--services", "all"]).services == SERVICE_NAMES
    assert set(SERVICE_NAMES) == {"router", "balancer", "recovery", "workflow", "gateway"}
    chosen = parser.parse_args(["bench", "assign", "--services", "router,balancer"]).services
    assert chosen == ("router", "balancer")
    for refused in ("recovery", "router,gateway", "router,nope"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_assign_services(refused)


def test_each_instances_full_collections_are_read_from_its_health_answer() -> None:
    full = {"count": 2, "total_ms": 9.0, "max_ms": 6.5, "cpu_total_ms": 4.0, "cpu_max_ms": 3.0}
    replies: list[dict[str, Any]] = [
        {"instance": "router-0", "gc": {"frozen": 40_000, "pauses": {"0": {"count": 9}, "2": full}}},
        {"instance": "recovery-0"},  # a service of before: says nothing of its collections
    ]
    pauses = gc_pauses_of(replies)
    assert list(pauses) == ["router-0"]
    assert full_collections(pauses) == "router-0 2 (longest 6.5 ms, 3.0 ms CPU)"


def _ticks(cpu: list[dict[str, float]], tick_ns: int = 50_000_000) -> list[tuple[int, int, dict[str, float]]]:
    return [(i * tick_ns, (i + 1) * tick_ns, per) for i, per in enumerate(cpu)]


def test_the_slow_ticks_are_those_the_slowest_assignments_waited_in_with_what_ran_then() -> None:
    times = StoredTimes(expected=3)
    times.on_submitted("quick", 10_000_000)
    times.on_assigned("quick", 12_000_000)  # 2 ms, in tick 0
    times.on_submitted("slow", 60_000_000)
    times.on_assigned("slow", 130_000_000)  # 70 ms, over ticks 1 and 2
    times.on_submitted("mid", 160_000_000)
    times.on_assigned("mid", 170_000_000)  # 10 ms, tick 3
    cpu = [{"router": 20.0, "gateway": 1.0}, {"router": 10.0, "gateway": 40.0}]
    cpu += [{"router": 15.0, "gateway": 30.0}, {"router": 20.0, "gateway": 2.0}]
    windows = slow_windows(times, _ticks(cpu), top=2)
    assert [(w["at_ms"], w["worst_ms"]) for w in windows] == [(50.0, 70.0), (100.0, 70.0)]
    assert windows[0]["cpu_ms"] == {"router": 10.0, "gateway": 40.0}
    shares = tail_shares(times, _ticks(cpu), q=99)  # the p99 of three is the slowest
    assert shares["gateway"] == (35.0, 1.5), "busy while the slowest waited, not otherwise"
    assert shares["router"] == (12.5, 20.0)


def test_no_ticks_no_windows() -> None:
    times = StoredTimes(expected=1)
    times.on_submitted("a", 1)
    times.on_assigned("a", 2)
    assert slow_windows(times, []) == [] and tail_shares(times, []) == {}


def test_the_timeline_samples_each_process_s_cpu_per_tick() -> None:
    """Each tick holds what the process ran in it: together, what it ran over the whole window."""
    spin = "import time\nend = time.time() + 5\nwhile time.time() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        timeline = CpuTimeline({"busy": [busy.pid], "gone": [2**22 + 7]}, tick_s=0.02)
        before = run_ns(busy.pid)
        timeline.start()
        time.sleep(0.3)
        timeline.stop()
        after = run_ns(busy.pid)
    finally:
        busy.kill()
        busy.wait()
    ticks = timeline.ticks()
    assert len(ticks) >= 5
    assert all(t1 > t0 and set(cpu) == {"busy", "gone"} for t0, t1, cpu in ticks)
    assert before is not None and after is not None
    # The ticks' ms are floats: their sum may pass the whole by a rounding (seen when the process was
    # not rescheduled between the first and last reads, so both bounds are the same counter values).
    assert 0 < sum(cpu["busy"] for _, _, cpu in ticks) <= (after - before) / 1e6 + 1e-6
    assert all(cpu["gone"] == 0 for _, _, cpu in ticks)
    assert run_ns(2**22 + 7) is None


def test_the_balancers_moves_are_summed_from_their_health_answers() -> None:
    replies: list[dict[str, Any]] = [
        {"service": "balancer", "details": {"moves_made": 2, "moves_refused": 5}},
        {"service": "balancer", "details": {"moves_made": 1}},
        {"service": "router", "details": {"moves_made": 9}},
    ]
    assert balancer_moves_of(replies) == {"made": 3, "refused": 5}
    assert balancer_moves_of(replies[2:]) == {}, "no balancer ran: nothing to say"
