"""Strategy table, incident plans and failure prediction, without NATS."""

from __future__ import annotations

import typing

from hypothesis import given
from hypothesis import strategies as st

from services.recovery.decide import MAX_INFRASTRUCTURE_REQUEUES, GiveUp, Requeue, after_lost_attempt
from services.recovery.incidents import FailAttempt, Incident, plan_incident
from shared.domain.breakers import BreakerView
from shared.domain.fleet import AgentView, FleetState, apply_fleet
from shared.domain.heartbeats import JitterStats
from shared.domain.outcomes import AgentOutcomes, Outcome
from shared.domain.prediction import predict
from shared.domain.strategies import ACTIONS, SEVERITIES, STRATEGIES, choose_strategy, unresponsive_severity
from shared.events import (
    AgentDeregistered,
    AgentRegistered,
    AnyEvent,
    FailureType,
    RetryPolicy,
    TaskAssigned,
    TaskRequeued,
    TaskSubmitted,
)
from shared.recorded import Recorded


def fleet(*events: AnyEvent) -> FleetState:
    state = FleetState()
    for seq, event in enumerate(events, start=1):
        apply_fleet(state, Recorded(seq, event.subject, event))
    return state


def busy_agent(tasks: tuple[str, ...] = ("t1", "t2")) -> list[AnyEvent]:
    events: list[AnyEvent] = [AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=3, session="s")]
    for task_id in tasks:
        events += [
            TaskSubmitted(task_id=task_id, task_type="x"),
            TaskAssigned(agent_id="a", task_id=task_id, attempt=1, session="s"),
        ]
    return events


# --- strategies -----------------------------------------------------------------------------------


def test_every_failure_type_and_severity_has_a_strategy_with_actions() -> None:
    assert set(STRATEGIES) == set(typing.get_args(FailureType))
    for failure_type in STRATEGIES:
        for severity in SEVERITIES:
            plan = choose_strategy(failure_type, severity)  # type: ignore[arg-type]
            assert plan.actions == list(ACTIONS[plan.strategy])


def test_the_strategy_grows_with_the_severity() -> None:
    assert choose_strategy("agent_error", "low").strategy == "retry_with_backoff"
    assert choose_strategy("agent_error", "high").strategy == "quarantine_agent"
    critical = choose_strategy("agent_error", "critical")
    assert critical.strategy == "escalate" and critical.escalated
    assert choose_strategy("agent_unresponsive", "medium").strategy == "reassign"
    assert choose_strategy("resource_exhaustion", "critical").actions == ["restart", "reassign"]


def test_an_agent_that_keeps_going_silent_is_a_high_severity_incident() -> None:
    assert unresponsive_severity([1000.0], now=1000.0) == "medium"
    assert unresponsive_severity([100.0, 900.0, 1000.0], now=1000.0) == "medium", "the first is too old"
    assert unresponsive_severity([500.0, 900.0, 1000.0], now=1000.0) == "high"


# --- incidents ------------------------------------------------------------------------------------


def test_reassigning_moves_every_attempt_of_the_agent_now_and_tells_it_to_stop() -> None:
    state = fleet(*busy_agent())
    incident = Incident(
        incident_id="i", failure_type="network_partition", severity="medium", ts=50.0, agent_id="a"
    )
    steps = plan_incident(state, incident, choose_strategy("network_partition", "medium"), quarantine_s=300.0)
    assert steps.task_steps == [
        Requeue(
            task_id="t1", attempt=2, reason="network_partition", previous_agent_id="a", not_before_ts=0.0
        ),
        Requeue(
            task_id="t2", attempt=2, reason="network_partition", previous_agent_id="a", not_before_ts=0.0
        ),
    ]
    assert [(s.agent_id, s.task_id, s.attempt) for s in steps.stops] == [("a", "t1", 1), ("a", "t2", 1)]
    assert steps.quarantine_until_ts is None and steps.restart_session is None


def test_quarantine_and_restart_act_on_the_agent_and_retry_fails_the_attempt() -> None:
    state = fleet(*busy_agent(("t1",)))
    incident = Incident(incident_id="i", failure_type="agent_error", severity="high", ts=50.0, agent_id="a")
    quarantined = plan_incident(state, incident, choose_strategy("agent_error", "high"), quarantine_s=300.0)
    assert quarantined.quarantine_until_ts == 350.0
    restart = plan_incident(state, incident, choose_strategy("resource_exhaustion", "critical"), 300.0)
    assert restart.restart_session == "s"
    by_task = Incident(
        incident_id="j", failure_type="agent_error", severity="low", ts=50.0, task_id="t1", detail="oom"
    )
    retry = plan_incident(state, by_task, choose_strategy("agent_error", "low"), 300.0)
    assert retry.agent_id == "a", "the holder of the task is the agent in question"
    assert retry.task_steps == [
        FailAttempt(task_id="t1", attempt=1, agent_id="a", failure_type="agent_error", error="oom")
    ]


def test_only_attempts_still_current_are_acted_on_so_a_redelivered_incident_changes_nothing() -> None:
    state = fleet(*busy_agent(), TaskRequeued(task_id="t1", attempt=2, reason="agent_unresponsive"))
    incident = Incident(
        incident_id="i",
        failure_type="agent_unresponsive",
        severity="medium",
        ts=50.0,
        agent_id="a",
        attempts={"t1": 1, "t2": 1},
    )
    steps = plan_incident(state, incident, choose_strategy("agent_unresponsive", "medium"), 300.0)
    assert steps.task_ids == ["t2"]


def test_a_task_held_by_another_agent_or_an_unregistered_agent_is_left_alone_with_a_note() -> None:
    state = fleet(*busy_agent(("t1",)), AgentRegistered(agent_id="b", capabilities={"x": 1.0}))
    wrong = Incident(
        incident_id="i", failure_type="agent_error", severity="high", ts=1.0, agent_id="b", task_id="t1"
    )
    steps = plan_incident(state, wrong, choose_strategy("agent_error", "high"), 300.0)
    assert steps.task_steps == [] and "held by a, not b" in steps.notes[0]
    gone = fleet(*busy_agent(("t1",)), AgentDeregistered(agent_id="a"))
    left = Incident(incident_id="i", failure_type="agent_error", severity="high", ts=1.0, agent_id="a")
    steps = plan_incident(gone, left, choose_strategy("agent_error", "high"), 300.0)
    assert steps.quarantine_until_ts is None and "not registered" in steps.notes[0]


def test_a_task_that_keeps_losing_its_agents_fails_beyond_its_budget_plus_the_infrastructure_allowance() -> (
    None
):
    events = busy_agent(("t",))
    events[1] = TaskSubmitted(task_id="t", task_type="x", retry=RetryPolicy(max_attempts=2))
    state = fleet(*events)
    task = state.tasks["t"]
    assert isinstance(after_lost_attempt(task, "agent_unresponsive"), Requeue)
    task.attempt = 2 + MAX_INFRASTRUCTURE_REQUEUES
    decision = after_lost_attempt(task, "agent_unresponsive")
    assert isinstance(decision, GiveUp) and "lost to agent_unresponsive" in decision.error


# --- prediction -----------------------------------------------------------------------------------


def outcomes(results: list[bool], durations: list[float] | None = None) -> AgentOutcomes:
    spans = durations or [1.0] * len(results)
    return AgentOutcomes(
        outcomes=[
            Outcome(i + 1, 100.0 + i, good, spans[i], "" if good else "agent_error")
            for i, good in enumerate(results)
        ]
    )


AGENT = AgentView(agent_id="a")
STEADY = JitterStats(samples=10, mean_interval_s=0.5, stdev_s=0.01, since_last_s=0.2)


def test_a_healthy_agent_is_low_risk_and_every_factor_is_explained() -> None:
    prediction = predict(AGENT, outcomes([True] * 10), None, STEADY, interval_s=0.5)
    assert prediction.risk == "low" and prediction.probability < 0.1
    assert {f.name for f in prediction.factors} == {
        "error_rate",
        "latency_trend",
        "heartbeat_jitter",
        "heartbeat_gap",
        "breaker_history",
    }
    assert all(f.detail for f in prediction.factors)


def test_slowing_down_a_jittery_heartbeat_and_an_open_breaker_each_raise_the_risk() -> None:
    base = predict(AGENT, outcomes([True] * 8), None, STEADY, 0.5).probability
    slower = predict(AGENT, outcomes([True] * 8, [1.0] * 4 + [2.0] * 4), None, STEADY, 0.5)
    trend = {f.name: f for f in slower.factors}["latency_trend"]
    assert trend.value == 1.0 and "+100%" in trend.detail and slower.probability > base
    jittery = JitterStats(samples=10, mean_interval_s=0.6, stdev_s=0.4, since_last_s=1.4)
    assert predict(AGENT, outcomes([True] * 8), None, jittery, 0.5).probability > base
    tripped = BreakerView(agent_id="a", status="open", times_opened=2)
    assert predict(AGENT, outcomes([True] * 8), tripped, STEADY, 0.5).probability > base


def test_an_unresponsive_agent_is_certain_to_have_failed() -> None:
    prediction = predict(AgentView(agent_id="a", status="unresponsive"), None, None, None, 0.5)
    assert prediction.probability == 1.0 and prediction.note


@given(st.lists(st.booleans(), min_size=1, max_size=20), st.integers(min_value=0, max_value=19))
def test_the_probability_is_a_probability_and_grows_with_failures(results: list[bool], flip: int) -> None:
    before = predict(AGENT, outcomes(results), None, STEADY, 0.5).probability
    assert 0.0 <= before <= 1.0
    worse = list(results)
    worse[flip % len(worse)] = False
    assert predict(AGENT, outcomes(worse), None, STEADY, 0.5).probability >= before
