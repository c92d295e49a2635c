"""Circuit breakers without NATS: the sliding window, transitions, probes, reset, disabled breakers."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.configured import breaker_policy
from shared.domain.breaker_policy import BreakerPolicy, Close, Probe, Trip, breaker_transition, window_stats
from shared.domain.breakers import BreakersState, BreakerView, admits, apply_breakers
from shared.domain.outcomes import AgentOutcomes, Outcome, OutcomesState, apply_outcomes
from shared.events import (
    AnyEvent,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReset,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskRequeued,
)
from shared.recorded import Recorded
from shared.settings import SettingsError, load_settings

POLICY = BreakerPolicy(
    failure_threshold=0.5, window_size=4, window_s=60.0, min_calls=4, open_s=30.0, half_open_probes=2
)


class Log:
    """Folds events into the breaker view and the outcomes, as recovery's projection does."""

    def __init__(self) -> None:
        self.breakers = BreakersState()
        self.outcomes = OutcomesState()
        self.seq = 0

    def add(self, *events: AnyEvent) -> Log:
        for event in events:
            self.seq += 1
            recorded = Recorded(self.seq, event.subject, event)
            apply_breakers(self.breakers, recorded)
            apply_outcomes(self.outcomes, recorded)
        return self

    def transition(self, now: float, policy: BreakerPolicy = POLICY) -> Trip | Probe | Close | None:
        return breaker_transition(self.breakers.breakers.get("a"), self.outcomes.agents.get("a"), now, policy)


def ok(task: str, ts: float = 100.0) -> TaskCompleted:
    return TaskCompleted(task_id=task, agent_id="a", attempt=1, ts=ts)


def failed(
    task: str, ts: float = 100.0, failure_type: str = "agent_error", retryable: bool = True
) -> TaskAttemptFailed:
    return TaskAttemptFailed(
        task_id=task,
        agent_id="a",
        attempt=1,
        ts=ts,
        failure_type=failure_type,
        retryable=retryable,  # type: ignore[arg-type]
    )


def test_the_breaker_trips_at_the_threshold_once_the_window_holds_the_minimum_of_calls() -> None:
    log = Log().add(failed("1"), ok("2"), failed("3"))
    assert log.transition(now=101.0) is None, "3 calls: below the minimum of 4"
    log.add(ok("4"))
    trip = log.transition(now=101.0)
    assert isinstance(trip, Trip)
    assert (trip.failure_rate, trip.calls, trip.retry_after_ts) == (0.5, 4, 131.0)
    assert trip.reason == "2 of the last 4 calls failed (threshold 50%)"


def test_outcomes_read_in_a_burst_trip_the_breaker_as_if_judged_one_by_one() -> None:
    log = Log().add(failed("1"), ok("2"), failed("3"), ok("4"))
    crossed = log.seq
    log.add(ok("5"))  # read with the four before it: the window now holds only one failure in four
    assert breaker_transition(None, log.outcomes.agents["a"], 101.0, POLICY) is None, "the window now"
    trip = breaker_transition(None, log.outcomes.agents["a"], 101.0, POLICY, judged_seq=0)
    assert isinstance(trip, Trip) and (trip.failure_rate, trip.calls) == (0.5, 4)
    judged_then = breaker_transition(None, log.outcomes.agents["a"], 101.0, POLICY, judged_seq=crossed)
    assert judged_then is None, "a crossing judged before is not judged again"
    stale = breaker_transition(
        None, log.outcomes.agents["a"], 100.0 + POLICY.window_s + 1, POLICY, judged_seq=0
    )
    assert stale is None, "a crossing older than the window trips nothing"


def test_the_window_is_count_based_time_based_and_starts_at_the_last_transition() -> None:
    log = Log().add(failed("1", ts=10.0), failed("2", ts=10.0), ok("3"), ok("4"), ok("5"), ok("6"))
    stats = window_stats(log.outcomes.agents["a"], 0, 100.0, POLICY)
    assert (stats.calls, stats.failures) == (4, 0), "only the newest 4 calls count"
    wide = BreakerPolicy(window_size=10, window_s=60.0, min_calls=1)
    assert window_stats(log.outcomes.agents["a"], 0, 100.0, wide).calls == 4, "calls older than 60 s left"
    assert window_stats(log.outcomes.agents["a"], 0, 69.0, wide).calls == 6
    log.add(BreakerReset(agent_id="a"))
    assert (
        window_stats(log.outcomes.agents["a"], log.breakers.breakers["a"].last_change_seq, 100.0, wide).calls
        == 0
    )


def test_failures_that_say_nothing_about_the_agent_are_not_calls_of_its_breaker() -> None:
    log = Log().add(
        failed("1", retryable=False),
        failed("2", failure_type="rebalanced"),
        failed("3", failure_type="agent_restarted"),
        failed("4", failure_type="task_timeout"),
        failed("5", failure_type="resource_exhaustion"),
    )
    stats = window_stats(log.outcomes.agents["a"], 0, 100.0, POLICY)
    assert (stats.calls, stats.failures) == (2, 2)


def test_an_open_breaker_goes_half_open_after_its_wait_and_admits_only_its_probes() -> None:
    log = Log().add(BreakerOpened(agent_id="a", retry_after_ts=130.0))
    assert admits(log.breakers, "a") == "circuit breaker open"
    assert log.transition(now=129.9) is None
    assert log.transition(now=130.0) == Probe(probes_allowed=2)
    log.add(BreakerHalfOpened(agent_id="a", probes_allowed=2))
    assert admits(log.breakers, "a") is None
    log.add(
        TaskAssigned(agent_id="a", task_id="p1", attempt=1),
        TaskAssigned(agent_id="a", task_id="p2", attempt=1),
    )
    assert admits(log.breakers, "a") == "circuit breaker half-open: probe quota used"


def test_half_open_closes_when_enough_probes_succeed_and_reopens_when_enough_fail() -> None:
    half_open = [
        BreakerOpened(agent_id="a", retry_after_ts=130.0),
        BreakerHalfOpened(agent_id="a", probes_allowed=2),
    ]
    probes = [
        TaskAssigned(agent_id="a", task_id="p1", attempt=1),
        TaskAssigned(agent_id="a", task_id="p2", attempt=1),
    ]
    good = Log().add(*half_open, *probes, ok("p1"))
    assert good.transition(now=140.0) is None, "1 of 2: a failure of the other would still reach 50%"
    good.add(ok("p2"))
    assert good.transition(now=140.0) == Close(reason="2 of 2 half-open probes succeeded")
    bad = Log().add(*half_open, *probes, failed("p1"))
    trip = bad.transition(now=140.0)
    assert isinstance(trip, Trip) and trip.retry_after_ts == 170.0, "1 of 2 failed: 50% already reached"
    bad.add(BreakerOpened(agent_id="a", retry_after_ts=170.0))
    assert bad.breakers.breakers["a"].times_opened == 2 and bad.breakers.probes == {}


def test_a_lost_probe_counts_as_failed_and_a_cancelled_one_frees_its_slot() -> None:
    log = Log().add(
        BreakerOpened(agent_id="a"),
        BreakerHalfOpened(agent_id="a", probes_allowed=2),
        TaskAssigned(agent_id="a", task_id="p1", attempt=1),
        TaskAssigned(agent_id="a", task_id="p2", attempt=1),
        TaskRequeued(task_id="p1", attempt=2, reason="agent_unresponsive"),
        TaskCancelled(task_id="p2", attempt=1),
    )
    breaker = log.breakers.breakers["a"]
    assert (breaker.probe_failures, breaker.probes_assigned, breaker.probe_tasks) == (1, 1, {})
    assert admits(log.breakers, "a") is None, "the cancelled probe's slot is free again"


def test_a_reset_closes_the_breaker_and_empties_its_window() -> None:
    log = Log().add(failed("1"), failed("2"), failed("3"), failed("4"), BreakerOpened(agent_id="a"))
    log.add(BreakerReset(agent_id="a", requested_by="oncall"))
    assert log.breakers.breakers["a"].status == "closed" and log.breakers.breakers["a"].reason == "reset"
    assert log.transition(now=100.0) is None, "the failures before the reset no longer count"


def test_with_breakers_disabled_nothing_trips_and_an_open_breaker_is_closed() -> None:
    off = BreakerPolicy(enabled=False, min_calls=1, window_size=4)
    log = Log().add(failed("1"), failed("2"), failed("3"), failed("4"))
    assert log.transition(now=100.0, policy=off) is None
    log.add(BreakerOpened(agent_id="a", retry_after_ts=1e12))
    assert log.transition(now=100.0, policy=off) == Close(reason="circuit breakers disabled")
    log.add(BreakerClosed(agent_id="a", reason="circuit breakers disabled"))
    assert admits(log.breakers, "a") is None


@given(
    results=st.lists(st.booleans(), max_size=30),
    min_calls=st.integers(min_value=1, max_value=20),
    threshold=st.floats(min_value=0.05, max_value=1.0),
)
def test_a_breaker_trips_only_with_enough_calls_at_or_above_the_threshold(
    results: list[bool], min_calls: int, threshold: float
) -> None:
    policy = BreakerPolicy(failure_threshold=threshold, window_size=20, min_calls=min_calls, window_s=60.0)
    record = AgentOutcomes(
        outcomes=[
            Outcome(i + 1, 100.0, good, 0.0, "" if good else "agent_error") for i, good in enumerate(results)
        ]
    )
    window = results[-20:]
    rate = window.count(False) / len(window) if window else 0.0
    tripped = isinstance(breaker_transition(None, record, 100.0, policy), Trip)
    assert tripped == (len(window) >= min_calls and rate >= threshold)


def test_settings_that_would_keep_a_breaker_from_ever_tripping_are_refused() -> None:
    with pytest.raises(SettingsError, match="BREAKER_MIN_CALLS"):
        load_settings({"BREAKER_MIN_CALLS": "30", "BREAKER_WINDOW_SIZE": "20"})
    with pytest.raises(SettingsError, match="BREAKER_FAILURE_THRESHOLD"):
        load_settings({"BREAKER_FAILURE_THRESHOLD": "0"})
    policy = breaker_policy(load_settings({"ENABLE_CIRCUIT_BREAKERS": "false"}))
    assert policy.enabled is False and policy.window_size == 20


FAILURE_KINDS = st.sampled_from(["agent_error", "task_timeout", "agent_unresponsive", "rebalanced"])


@given(
    outcomes=st.lists(
        st.tuples(st.booleans(), FAILURE_KINDS, st.booleans(), st.floats(min_value=0.0, max_value=100.0)),
        max_size=140,
    ),
    last_change=st.integers(min_value=0, max_value=150),
    judged=st.none() | st.integers(min_value=0, max_value=150),
    threshold=st.floats(min_value=0.05, max_value=1.0),
    min_calls=st.integers(min_value=1, max_value=10),
)
def test_a_closed_breaker_with_no_fault_since_it_moved_is_judged_at_once_and_the_same(
    outcomes: list[tuple[bool, str, bool, float]],
    last_change: int,
    judged: int | None,
    threshold: float,
    min_calls: int,
) -> None:
    """``last_fault_seq`` (kept by apply) spares the windows when none can hold a failure; the
    verdict is the one of the full computation (a record that does not keep it)."""
    state = OutcomesState()
    for seq, (ok, kind, retryable, ts) in enumerate(outcomes, start=1):
        event = (
            TaskCompleted(task_id=f"t{seq}", agent_id="a", attempt=1, ts=ts)
            if ok
            else TaskAttemptFailed(
                task_id=f"t{seq}",
                agent_id="a",
                attempt=1,
                failure_type=kind,
                retryable=retryable,
                ts=ts,  # type: ignore[arg-type]
            )
        )
        apply_outcomes(state, Recorded(seq, event.subject, event))
    record = state.agents.get("a")
    policy = BreakerPolicy(failure_threshold=threshold, min_calls=min_calls, window_s=60.0)
    breaker = BreakerView(agent_id="a", last_change_seq=last_change) if last_change else None
    unkept = msgspec.structs.replace(record, last_fault_seq=None) if record is not None else None
    assert breaker_transition(breaker, record, 100.0, policy, judged) == breaker_transition(
        breaker, unkept, 100.0, policy, judged
    )


def test_a_closed_breaker_without_faults_reads_no_window(monkeypatch: pytest.MonkeyPatch) -> None:
    state = OutcomesState()
    for seq in range(1, 30):
        event = TaskCompleted(task_id=f"t{seq}", agent_id="a", attempt=1, ts=90.0)
        apply_outcomes(state, Recorded(seq, event.subject, event))
    calls: list[int] = []
    monkeypatch.setattr("shared.domain.breaker_policy.window_stats", lambda *args, **kwargs: calls.append(1))
    assert breaker_transition(None, state.agents["a"], 100.0, BreakerPolicy(), judged_seq=0) is None
    assert calls == []
