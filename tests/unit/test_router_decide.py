"""Routing decisions, without NATS: capability filter, load, capacity, queue reasons, quality
threshold and its deadline, and what an assignment explains."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.decide import Assign, Expire, Hold, next_decision, next_expiry, route_task
from shared.domain.routing.eligibility import BELOW_THRESHOLD
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.view import RouterState, apply_router
from shared.events import (
    AgentDraining,
    AgentRegistered,
    AnyEvent,
    TaskAssigned,
    TaskCompleted,
    TaskQueued,
    TaskSubmitted,
)
from shared.recorded import Recorded


def state_of(*events: AnyEvent) -> RouterState:
    state = RouterState()
    for seq, event in enumerate(events, start=1):
        apply_router(state, Recorded(seq, event.subject, event))
    return state


def apply(state: RouterState, event: AnyEvent, seq: int) -> None:
    apply_router(state, Recorded(seq, event.subject, event))


def test_only_agents_with_every_required_capability_are_candidates() -> None:
    state = state_of(
        AgentRegistered(agent_id="py", capabilities={"review": 1.0, "python": 1.0}),
        AgentRegistered(agent_id="go", capabilities={"review": 1.0, "go": 1.0}),
        TaskSubmitted(task_id="t", task_type="review", required_capabilities=["python"]),
    )
    decision = route_task(state, state.fleet.tasks["t"])
    assert isinstance(decision, Assign) and decision.agent_id == "py"
    assert any(r.agent_id == "go" and "missing capabilities: python" in r.reason for r in decision.rejected)


def test_the_least_loaded_capable_agent_is_chosen() -> None:
    state = state_of(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=4),
        AgentRegistered(agent_id="b", capabilities={"x": 1.0}, capacity=4),
        TaskSubmitted(task_id="t1", task_type="x"),
        TaskAssigned(agent_id="a", task_id="t1", attempt=1),
        TaskSubmitted(task_id="t2", task_type="x"),
    )
    decision = route_task(state, state.fleet.tasks["t2"])
    assert isinstance(decision, Assign) and decision.agent_id == "b"


def test_no_capable_agent_and_all_busy_are_told_apart() -> None:
    state = state_of(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=1),
        TaskSubmitted(task_id="t1", task_type="x"),
        TaskAssigned(agent_id="a", task_id="t1", attempt=1),
        TaskSubmitted(task_id="t2", task_type="x"),
        TaskSubmitted(task_id="t3", task_type="y"),
    )
    busy = route_task(state, state.fleet.tasks["t2"])
    nobody = route_task(state, state.fleet.tasks["t3"])
    assert isinstance(busy, Hold) and busy.reason == "all_capable_agents_busy"
    assert isinstance(nobody, Hold) and nobody.reason == "no_capable_agent"


def test_draining_agents_get_no_new_work() -> None:
    state = state_of(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}),
        AgentDraining(agent_id="a"),
        TaskSubmitted(task_id="t", task_type="x"),
    )
    decision = route_task(state, state.fleet.tasks["t"])
    assert isinstance(decision, Hold)


def test_a_task_held_back_by_its_retry_backoff_waits_until_it_is_due() -> None:
    state = state_of(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}),
        TaskSubmitted(task_id="t", task_type="x"),
    )
    state.fleet.tasks["t"].not_before_ts = 100.0
    assert next_decision(state, now=99.0) is None
    assert isinstance(next_decision(state, now=100.0), Assign)


def test_the_same_state_and_task_always_give_the_same_choice() -> None:
    events = [AgentRegistered(agent_id=f"a{i}", capabilities={"x": 1.0}, capacity=2) for i in range(5)]
    events.append(TaskSubmitted(task_id="t", task_type="x"))
    choices = [next_decision(state_of(*events), now=0.0) for _ in range(5)]
    assert all(choice == choices[0] for choice in choices)


@settings(max_examples=60, deadline=None)
@given(
    capacities=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=5),
    tasks=st.integers(min_value=0, max_value=40),
    completions=st.lists(st.integers(min_value=0, max_value=39), max_size=20),
)
def test_deciding_until_nothing_is_left_never_exceeds_any_capacity(
    capacities: list[int], tasks: int, completions: list[int]
) -> None:
    state = state_of(
        *[
            AgentRegistered(agent_id=f"a{i}", capabilities={"x": 1.0}, capacity=c)
            for i, c in enumerate(capacities)
        ]
    )
    seq = 1000
    for index in range(tasks):
        seq += 1
        apply(state, TaskSubmitted(task_id=f"t{index}", task_type="x"), seq)
    pending_completions = list(completions)
    while True:
        decision = next_decision(state, now=0.0)
        if decision is None:
            if not pending_completions:
                break
            index = pending_completions.pop()
            task = state.fleet.tasks.get(f"t{index}")
            if task is not None and task.agent_id and task.status == "assigned":
                seq += 1
                apply(state, TaskCompleted(task_id=task.task_id, agent_id=task.agent_id, attempt=1), seq)
            continue
        seq += 1
        if isinstance(decision, Assign):
            apply(state, TaskAssigned(agent_id=decision.agent_id, task_id=decision.task_id, attempt=1), seq)
        else:
            apply(state, TaskQueued(task_id=decision.task_id, attempt=1, reason=decision.reason), seq)
        for agent in state.fleet.agents.values():
            assert agent.load <= agent.capacity
    total_capacity = sum(capacities)
    in_flight = sum(a.load for a in state.fleet.agents.values())
    assert in_flight == min(total_capacity, in_flight + len(state.fleet.queue))


def test_an_open_breaker_keeps_work_away_and_half_open_lets_only_the_probes_through() -> None:
    from shared.events import BreakerClosed, BreakerHalfOpened, BreakerOpened

    state = state_of(
        AgentRegistered(agent_id="flaky", capabilities={"x": 1.0}, capacity=5),
        BreakerOpened(agent_id="flaky", failure_rate=0.6),
        TaskSubmitted(task_id="t1", task_type="x"),
        TaskSubmitted(task_id="t2", task_type="x"),
    )
    held = route_task(state, state.fleet.tasks["t1"])
    assert isinstance(held, Hold) and held.reason == "no_capable_agent"
    assert next_decision(state, now=0.0) == held
    apply(state, BreakerHalfOpened(agent_id="flaky", probes_allowed=1), 10)
    probe = next_decision(state, now=0.0)
    assert isinstance(probe, Assign) and probe.task_id == "t1"
    apply(state, TaskAssigned(agent_id="flaky", task_id="t1", attempt=1), 11)
    quota = route_task(state, state.fleet.tasks["t2"])
    assert isinstance(quota, Hold)
    apply(state, BreakerClosed(agent_id="flaky"), 12)
    assert isinstance(route_task(state, state.fleet.tasks["t2"]), Assign)


# --- quality threshold, expiry, explanations ----------------------------------------------------


def test_a_task_below_its_quality_threshold_is_held_naming_the_best_prediction() -> None:
    state = state_of(
        AgentRegistered(agent_id="weak", capabilities={"x": 0.4}),
        AgentRegistered(agent_id="meh", capabilities={"x": 0.6}),
        TaskSubmitted(task_id="t", task_type="x", expected_quality_threshold=0.9),
    )
    held = next_decision(state, now=0.0)
    assert isinstance(held, Hold) and held.reason == BELOW_THRESHOLD
    assert "(meh) is below the required 0.90" in held.detail
    assert next_expiry(state) is None, "without a deadline the task waits"


def test_a_held_task_goes_to_the_first_agent_predicted_to_reach_its_threshold() -> None:
    state = state_of(
        AgentRegistered(agent_id="weak", capabilities={"x": 0.4}, capacity=5),
        TaskSubmitted(task_id="t", task_type="x", expected_quality_threshold=0.8),
        TaskQueued(task_id="t", attempt=1, reason=BELOW_THRESHOLD),
    )
    assert next_decision(state, now=0.0) is None
    apply(state, AgentRegistered(agent_id="strong", capabilities={"x": 1.0}), 10)
    decision = next_decision(state, now=0.0)
    assert isinstance(decision, Assign) and decision.agent_id == "strong"
    weak = next(r for r in decision.rejected if r.agent_id == "weak")
    assert "below the task's threshold 0.80" in weak.reason


def test_a_quality_held_task_fails_once_its_deadline_passes() -> None:
    state = state_of(
        AgentRegistered(agent_id="weak", capabilities={"x": 0.4}),
        TaskSubmitted(task_id="t", task_type="x", expected_quality_threshold=0.9, deadline_ts=50.0),
        TaskQueued(task_id="t", attempt=1, reason=BELOW_THRESHOLD),
    )
    assert next_expiry(state) == 50.0
    assert next_decision(state, now=49.0) is None
    expired = next_decision(state, now=50.0)
    assert isinstance(expired, Expire) and expired.task_id == "t"
    assert "deadline passed" in expired.error and "0.90" in expired.error


def test_a_quality_held_task_past_its_deadline_waits_while_a_good_enough_agent_is_only_busy() -> None:
    state = state_of(
        AgentRegistered(agent_id="strong", capabilities={"x": 1.0}, capacity=1),
        TaskSubmitted(task_id="busy", task_type="x"),
        TaskAssigned(agent_id="strong", task_id="busy", attempt=1),
        TaskSubmitted(task_id="t", task_type="x", expected_quality_threshold=0.8, deadline_ts=50.0),
        TaskQueued(task_id="t", attempt=1, reason=BELOW_THRESHOLD),
    )
    assert next_decision(state, now=60.0) is None
    apply(state, TaskCompleted(task_id="busy", agent_id="strong", attempt=1, quality=0.95), 10)
    decision = next_decision(state, now=60.0)
    assert isinstance(decision, Assign) and decision.agent_id == "strong"


def test_the_breakdown_shows_every_factor_its_weight_and_the_prediction() -> None:
    state = state_of(
        AgentRegistered(agent_id="a", capabilities={"x": 0.9}, capacity=2),
        AgentRegistered(agent_id="b", capabilities={"x": 0.5}, capacity=2),
        TaskSubmitted(task_id="t", task_type="x", routing_strategy="capability_first"),
    )
    decision = route_task(state, state.fleet.tasks["t"], 0.0, RoutingConfig(mode="high_performance"))
    assert isinstance(decision, Assign) and decision.strategy == "capability_first"
    factors = {"capability", "persona", "performance", "timeliness", "load", "availability", "fit"}
    weights = {
        "weight_capability",
        "weight_persona",
        "weight_performance",
        "weight_timeliness",
        "load_weight",
    }
    assert factors | weights | {"predicted_quality", "uncertainty", "success_probability"} <= set(
        decision.breakdown
    )
    fit = sum(
        decision.breakdown[f"weight_{f}"] * decision.breakdown[f]
        for f in ("capability", "persona", "performance", "timeliness")
    )
    assert abs(fit - decision.breakdown["fit"]) < 1e-3
    assert abs(decision.breakdown["fit"] * decision.breakdown["availability"] - decision.score) < 1e-3
    assert decision.explanation.startswith("capability_first (high_performance mode): a scored")
    assert "Runner-up b" in decision.explanation


def test_rejected_candidates_are_listed_best_first_each_with_its_reason() -> None:
    state = state_of(
        AgentRegistered(agent_id="best", capabilities={"x": 1.0}, capacity=1),
        AgentRegistered(agent_id="second", capabilities={"x": 0.7}, capacity=1),
        AgentRegistered(agent_id="full", capabilities={"x": 0.9}, capacity=1),
        AgentRegistered(agent_id="other", capabilities={"y": 1.0}),
        AgentRegistered(agent_id="gone", capabilities={"x": 1.0}),
        AgentDraining(agent_id="gone"),
        TaskSubmitted(task_id="busy", task_type="x"),
        TaskAssigned(agent_id="full", task_id="busy", attempt=1),
        TaskSubmitted(task_id="t", task_type="x", routing_strategy="capability_first"),
    )
    decision = route_task(state, state.fleet.tasks["t"])
    assert isinstance(decision, Assign) and decision.agent_id == "best"
    reasons = {r.agent_id: r.reason for r in decision.rejected}
    assert reasons["second"].startswith("score ") and "lower capability (0.70 vs 1.00)" in reasons["second"]
    assert reasons["full"] == "at capacity (1/1)"
    assert reasons["other"] == "missing capabilities: x"
    assert reasons["gone"] == "agent is draining"
    scored = [r.score for r in decision.rejected if r.score > 0]
    assert scored == sorted(scored, reverse=True)


def test_a_delayed_task_is_not_routed_before_its_time_and_is_routed_at_it() -> None:
    state = state_of(
        AgentRegistered(agent_id="a", capabilities={"x": 1.0}, capacity=2),
        TaskSubmitted(task_id="later", task_type="x", ts=50.0, not_before_ts=100.0),
        TaskSubmitted(task_id="now", task_type="x", ts=60.0),
    )
    assert state.fleet.tasks["later"].not_before_ts == 100.0
    first = next_decision(state, now=99.0)
    assert isinstance(first, Assign) and first.task_id == "now"  # the delayed one is passed over
    apply(state, TaskAssigned(agent_id="a", task_id="now", attempt=1), seq=10)
    assert next_decision(state, now=99.999) is None
    decision = next_decision(state, now=100.0)
    assert isinstance(decision, Assign) and decision.task_id == "later"
