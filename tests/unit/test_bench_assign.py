"""The assignment benchmark pairs server store times per task, whichever arrives first."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from services.cli.bench.assign import StoredTimes, full_collections, gc_pauses_of, parse_assign_services
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
