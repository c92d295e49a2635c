"""The figures of ``hive bench keys`` from a log: violations, slots held at the end, slot use."""

from __future__ import annotations

from services.cli.bench.key_figures import fill_time, key_peaks, refill_gaps, slot_use, violations
from services.cli.bench.keys import limits_for
from shared.events import TaskAssigned, TaskCompleted, TaskRequeued, TaskSubmitted


def test_a_peak_over_a_keys_limit_is_a_violation_and_what_runs_at_the_end_is_held() -> None:
    events = [
        TaskSubmitted(task_id="a", task_type="x", concurrency_key="k", ts=0.0),
        TaskSubmitted(task_id="b", task_type="x", concurrency_key="k", ts=0.0),
        TaskAssigned(agent_id="g", task_id="a", attempt=1, ts=1.0),
        TaskAssigned(agent_id="g", task_id="b", attempt=1, ts=1.0),
        TaskCompleted(agent_id="g", task_id="a", attempt=1, ts=2.0),
        TaskRequeued(task_id="b", attempt=2, ts=2.0),
        TaskAssigned(agent_id="g", task_id="b", attempt=2, ts=3.0),
    ]
    peaks, at_end = key_peaks(events)
    assert peaks == {"k": 2} and at_end == {"k": 1}
    assert violations(peaks, {"k": 1}) == {"k": (2, 1)}
    assert violations(peaks, {"k": 2}) == {}


def test_slot_use_compares_running_with_what_the_limits_allow_given_the_work_left() -> None:
    events = [
        TaskSubmitted(task_id="a", task_type="x", concurrency_key="k", ts=0.0),
        TaskSubmitted(task_id="b", task_type="x", concurrency_key="k", ts=0.0),
        TaskSubmitted(task_id="c", task_type="x", concurrency_key="k", ts=0.0),
        TaskAssigned(agent_id="g", task_id="a", attempt=1, ts=0.0),
        TaskAssigned(agent_id="g", task_id="b", attempt=1, ts=1.0),  # a second slot idle for 1 s
        TaskCompleted(agent_id="g", task_id="a", attempt=1, ts=2.0),
        TaskAssigned(agent_id="g", task_id="c", attempt=1, ts=2.0),
        TaskCompleted(agent_id="g", task_id="b", attempt=1, ts=3.0),
        TaskCompleted(agent_id="g", task_id="c", attempt=1, ts=4.0),
    ]
    use = slot_use(events, {"k": 2}, capacity=10)
    assert use.allowed_slot_s == 2 * 3 + 1 * 1  # two slots while 2+ tasks are left, then one
    assert use.used_slot_s == 6
    assert abs(use.utilisation - 6 / 7) < 1e-9
    assert slot_use(events, {"k": 2}, capacity=1).allowed_slot_s == 4


def test_limits_are_drawn_from_the_seed_within_their_bounds() -> None:
    limits = limits_for(1000, 1, 5, 7)
    assert limits == limits_for(1000, 1, 5, 7) and len(limits) == 1000
    assert set(limits.values()) == {1, 2, 3, 4, 5}


def test_a_slot_freed_while_its_key_has_work_waiting_counts_until_the_keys_next_assignment() -> None:
    events = [
        TaskSubmitted(task_id="a", task_type="x", concurrency_key="k", ts=0.0),
        TaskSubmitted(task_id="b", task_type="x", concurrency_key="k", ts=0.0),
        TaskAssigned(agent_id="g", task_id="a", attempt=1, ts=0.5),
        TaskCompleted(agent_id="g", task_id="a", attempt=1, ts=2.0),
        TaskAssigned(agent_id="g", task_id="b", attempt=1, ts=2.25),
        TaskCompleted(agent_id="g", task_id="b", attempt=1, ts=3.0),  # nothing waits: no gap
    ]
    assert refill_gaps(events) == [0.25]
    assert fill_time(events, slots=1) == 0.5
    assert fill_time(events, slots=3) is None
