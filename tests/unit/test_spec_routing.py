"""The specification's routing vocabulary and the quality wait, without NATS: every strategy and mode
it names decides something, aliases decide as the strategy they name, a task held below its quality
threshold without a deadline goes to the best available agent once its wait is over, and resource
constraints are matched against agent metadata."""

from __future__ import annotations

import math
import typing

from services.balancer.decide import RebalancePolicy, plan_moves
from services.balancer.view import BalancerState, apply_balancer
from services.router.decide import Assign, Hold, next_decision, next_expiry, route_task
from shared.domain.routing.eligibility import BELOW_THRESHOLD
from shared.domain.routing.policy import (
    ALIASES,
    MODES,
    STRATEGIES,
    RoutingConfig,
    canonical,
    effective_weights,
)
from shared.domain.routing.view import RouterState, apply_router
from shared.events import (
    AgentRegistered,
    AnyEvent,
    LoadBalancingStrategy,
    OrchestrationMode,
    Persona,
    RoutingStrategy,
    TaskAssigned,
    TaskProfile,
    TaskQueued,
    TaskStarted,
    TaskSubmitted,
)
from shared.recorded import Recorded
from shared.settings import Settings
from tests.unit.test_balancer_decide import agent, only_move, stuck_on

WAIT = RoutingConfig(quality_wait_s=10.0)


def state_of(*events: AnyEvent) -> RouterState:
    state = RouterState()
    for seq, event in enumerate(events, start=1):
        apply_router(state, Recorded(seq, event.subject, event))
    return state


def fleet_of_personas() -> list[AnyEvent]:
    return [
        AgentRegistered(
            agent_id="thinker",
            capabilities={"review": 0.9},
            persona=Persona(cognitive_style="analytical", creativity=0.2, analytical_depth=0.9),
        ),
        AgentRegistered(
            agent_id="maker",
            capabilities={"review": 0.95},
            persona=Persona(cognitive_style="creative", creativity=0.9, analytical_depth=0.3),
        ),
    ]


def test_every_strategy_name_resolves_to_weights_and_every_mode_has_a_profile() -> None:
    for strategy in typing.get_args(RoutingStrategy):
        assert canonical(strategy) in STRATEGIES
        assert canonical(canonical(strategy)) == canonical(strategy), "an alias names a real strategy"
    assert set(MODES) == set(typing.get_args(OrchestrationMode))
    assert set(ALIASES).isdisjoint(STRATEGIES)


def test_an_alias_decides_exactly_as_the_strategy_it_names() -> None:
    profile = TaskProfile(creativity_requirements=0.3, analytical_depth=0.8)
    for alias, name in ALIASES.items():
        state = state_of(
            *fleet_of_personas(),
            TaskSubmitted(task_id="a", task_type="review", profile=profile, routing_strategy=alias),
            TaskSubmitted(task_id="n", task_type="review", profile=profile, routing_strategy=name),
        )
        by_alias = route_task(state, state.fleet.tasks["a"])
        by_name = route_task(state, state.fleet.tasks["n"])
        assert isinstance(by_alias, Assign) and isinstance(by_name, Assign)
        assert (by_alias.agent_id, by_alias.strategy, by_alias.score) == (
            by_name.agent_id,
            name,
            by_name.score,
        )


def test_performance_weighted_persona_weighs_persona_and_performance_above_capability() -> None:
    row = STRATEGIES["performance_weighted_persona"]
    assert row.persona > row.capability and row.performance > row.capability
    state = state_of(
        *fleet_of_personas(),
        TaskSubmitted(
            task_id="t",
            task_type="review",
            profile=TaskProfile(creativity_requirements=0.2, analytical_depth=0.9),
            routing_strategy="performance_weighted_persona",
        ),
    )
    decision = route_task(state, state.fleet.tasks["t"])
    assert isinstance(decision, Assign) and decision.agent_id == "thinker", "the better persona fit wins"


def test_energy_efficient_ignores_load_and_never_explores_and_emergency_prefers_proven_fast_agents() -> None:
    task = TaskSubmitted(task_id="t", task_type="review")
    frugal = effective_weights("load_balanced", "energy_efficient", task, state_of().adaptive)
    assert frugal.load == 0.0 and frugal.risk == 0.0
    urgent = effective_weights("adaptive", "emergency", task, state_of().adaptive)
    standard = effective_weights("adaptive", "standard", task, state_of().adaptive)
    assert urgent.risk < 0 and urgent.timeliness > standard.timeliness


# --- the quality wait -------------------------------------------------------------------------------


def held(**task: typing.Any) -> RouterState:
    return state_of(
        AgentRegistered(agent_id="weak", capabilities={"x": 0.4}),
        AgentRegistered(agent_id="meh", capabilities={"x": 0.6}),
        TaskSubmitted(task_id="t", task_type="x", expected_quality_threshold=0.9, ts=1000.0, **task),
        TaskQueued(task_id="t", attempt=1, reason=BELOW_THRESHOLD),
    )


def test_a_task_held_below_its_threshold_without_a_deadline_goes_to_the_best_agent_after_its_wait() -> None:
    state = held()
    assert next_expiry(state, WAIT) == 1010.0, "the router looks again when the wait ends"
    assert next_decision(state, now=1009.0, config=WAIT) is None
    decision = next_decision(state, now=1010.0, config=WAIT)
    assert isinstance(decision, Assign) and decision.agent_id == "meh"
    assert decision.explanation.startswith("no agent was predicted to reach quality 0.90 within 10s")
    assert "best available agent" in decision.explanation


def test_the_tasks_own_max_acceptable_delay_replaces_the_default_wait() -> None:
    state = held(quality_wait_s=120.0)
    assert next_expiry(state, WAIT) == 1120.0
    assert next_decision(state, now=1100.0, config=WAIT) is None
    assert isinstance(next_decision(state, now=1120.0, config=WAIT), Assign)


def test_a_task_with_a_deadline_or_an_infinite_wait_keeps_waiting_for_a_good_enough_agent() -> None:
    with_deadline = held(deadline_ts=5000.0)
    assert next_expiry(with_deadline, WAIT) == 5000.0
    assert next_decision(with_deadline, now=2000.0, config=WAIT) is None
    forever = RoutingConfig(quality_wait_s=math.inf)
    assert next_expiry(held(), forever) is None
    assert next_decision(held(), now=1e9, config=forever) is None


def test_the_router_waits_ten_seconds_by_default() -> None:
    assert Settings().quality_wait_s == 10.0


# --- resource constraints ---------------------------------------------------------------------------


def test_resource_constraints_are_matched_against_the_agents_metadata() -> None:
    state = state_of(
        AgentRegistered(agent_id="cpu", capabilities={"x": 1.0}, metadata={"gpu": "none"}),
        AgentRegistered(agent_id="gpu", capabilities={"x": 0.5}, metadata={"gpu": "a100"}),
        TaskSubmitted(task_id="t", task_type="x", resource_constraints={"gpu": "a100"}),
        TaskSubmitted(task_id="u", task_type="x", resource_constraints={"region": "eu"}),
    )
    decision = route_task(state, state.fleet.tasks["t"])
    assert isinstance(decision, Assign) and decision.agent_id == "gpu"
    assert any(r.agent_id == "cpu" and "gpu=a100" in r.reason for r in decision.rejected)
    nowhere = route_task(state, state.fleet.tasks["u"])
    assert isinstance(nowhere, Hold) and "metadata {'region': 'eu'}" in nowhere.detail


# --- load-balancing strategies ------------------------------------------------------------------------


def test_each_load_balancing_strategy_picks_its_own_target_for_a_move() -> None:
    events = [
        agent("slow"),
        agent("busy_big", capacity=4, proficiency=1.0),  # 2 of 4 held, given work last, strongest
        agent("idle_small", capacity=1, proficiency=0.9),  # nothing held, never given work
        *held_by("busy_big", "b1", "b2"),
        *stuck_on("slow"),
    ]
    state = state_of_balancer(*events)
    chosen = {
        strategy: only_move(plan_moves(state, now=103.0, policy=RebalancePolicy(strategy=strategy)))[2]
        for strategy in typing.get_args(LoadBalancingStrategy)
    }
    assert chosen == {
        "adaptive_hybrid": "busy_big",  # 3/4 after the move against 1/1
        "weighted_round_robin": "busy_big",
        "least_connections": "idle_small",  # 1 task against 3
        "round_robin": "idle_small",  # given work longest ago (never)
        "capability_aware": "busy_big",
        "performance_based": "busy_big",
    }


def state_of_balancer(*events: AnyEvent) -> BalancerState:
    state = BalancerState()
    for seq, event in enumerate(events, start=1):
        apply_balancer(state, Recorded(seq, event.subject, event))
    return state


def held_by(agent_id: str, *task_ids: str) -> list[AnyEvent]:
    events: list[AnyEvent] = []
    for task_id in task_ids:
        events += [
            TaskSubmitted(task_id=task_id, task_type="review", ts=100.0),
            TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1, ts=100.0),
            TaskStarted(task_id=task_id, agent_id=agent_id, attempt=1),
        ]
    return events


def test_a_delayed_tasks_quality_wait_counts_from_its_start() -> None:
    state = held(not_before_ts=1500.0)
    assert next_expiry(state, WAIT) == 1510.0
    assert next_decision(state, now=1509.0, config=WAIT) is None
    decision = next_decision(state, now=1510.0, config=WAIT)
    assert isinstance(decision, Assign) and "within 10s (its quality wait)" in decision.explanation
