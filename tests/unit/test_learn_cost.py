"""The cheaper learning (``learn``, ``_refit``, ``observe``) gives byte for byte the numbers of the
plain formulas it replaced: the reference below is the code as it was, kept here as the oracle."""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import services.balancer.decide as balancer_decide
from services.balancer.decide import RebalancePolicy, plan_moves
from services.balancer.view import BalancerState, apply_balancer
from shared.domain.fleet import WAITING, AssignmentRecord, FleetState, TaskView, apply_fleet
from shared.domain.routing.adaptive import RECORDED_AS, SIGNALS, AdaptiveState, observe
from shared.domain.routing.keys import KeysState
from shared.domain.routing.performance import (
    ANY_STYLE,
    FIT_SWEEPS,
    NOISE_SD,
    PRIOR_WEIGHT,
    STYLE_SD,
    TYPE_SD,
    AgentRecord,
    Cell,
    Outcome,
    PerformanceState,
    learn,
    predict,
    style_key,
)
from shared.domain.routing.view import RouterState, apply_router
from shared.events import (
    AgentDeregistered,
    AgentDraining,
    AgentQuarantined,
    AgentRecovered,
    AgentRegistered,
    AgentStalled,
    AgentUnresponsive,
    AnyEvent,
    LoadBalancingStrategy,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskProfile,
    TaskProgress,
    TaskQueued,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.recorded import Recorded

# --- the reference: learn, _refit and observe as they were -----------------------------------------


def _reference_record(cell: Cell, success: bool, quality: float | None, duration_s: float | None) -> None:
    cell.attempts += 1
    if success:
        cell.successes += 1
    if success and quality is not None:
        cell.rated += 1
        cell.quality_sum += quality
        cell.quality_sq += quality * quality
    if success and duration_s is not None and duration_s > 0:
        cell.timed += 1
        cell.duration_sum += duration_s


def reference_learn(state: PerformanceState, outcome: Outcome) -> PerformanceState:
    record = state.agents.get(outcome.agent_id)
    if record is None:
        record = state.agents[outcome.agent_id] = AgentRecord()
    task_type = outcome.task.spec.task_type
    style = style_key(outcome.task)
    cells = (
        record.overall,
        record.by_type.setdefault(task_type, Cell()),
        record.by_type_style.setdefault(task_type, {}).setdefault(style, Cell()),
        state.fleet_by_type.setdefault(task_type, Cell()),
    )
    for cell in cells:
        _reference_record(cell, outcome.success, outcome.quality, outcome.duration_s)
    record.last_outcome_at[task_type] = state.fleet_by_type[task_type].attempts
    if outcome.success and outcome.quality is not None:
        reference_refit(record)
    state.outcomes += 1
    return state


def reference_refit(record: AgentRecord) -> None:
    cells = [
        (task_type, style, cell)
        for task_type, by_style in record.by_type_style.items()
        for style, cell in by_style.items()
        if cell.rated
    ]
    squares = sum(max(0.0, cell.quality_sq - cell.rated * cell.quality_mean**2) for _t, _s, cell in cells)
    freedom = sum(cell.rated - 1 for _t, _s, cell in cells)
    noise = (squares + PRIOR_WEIGHT * NOISE_SD**2) / (freedom + PRIOR_WEIGHT)
    record.noise_variance = noise
    information: dict[str, float] = {}
    for task_type, style, cell in cells:
        share = cell.rated / record.by_type[task_type].rated
        information[style] = information.get(style, 0.0) + cell.rated * (1.0 - share)
    record.style_information = information
    mean = record.overall.quality_mean
    types = record.type_effect
    styles = record.style_effect
    for _sweep in range(FIT_SWEEPS):
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for task_type, style, cell in cells:
            residual = cell.quality_mean - mean - styles.get(style, 0.0)
            sums[task_type] = sums.get(task_type, 0.0) + cell.rated * residual
            counts[task_type] = counts.get(task_type, 0) + cell.rated
        for task_type, total in sums.items():
            types[task_type] = total / (counts[task_type] + noise / TYPE_SD**2)
        sums.clear()
        counts.clear()
        for task_type, style, cell in cells:
            residual = cell.quality_mean - mean - types.get(task_type, 0.0)
            sums[style] = sums.get(style, 0.0) + cell.rated * residual
            counts[style] = counts.get(style, 0) + cell.rated
        for style, total in sums.items():
            styles[style] = total / (counts[style] + noise / STYLE_SD**2)


def reference_observe(state: AdaptiveState, outcome: Outcome) -> AdaptiveState:
    if outcome.success and outcome.quality is None:
        return state
    realised = outcome.quality if outcome.success and outcome.quality is not None else 0.0
    records = outcome.task.assignments
    if not records or records[-1].attempt != outcome.task.attempt:
        return state
    scores = records[-1].breakdown
    if not all(key in scores for key in RECORDED_AS.values()):
        return state
    for signal in SIGNALS:
        error = scores[RECORDED_AS[signal]] - realised
        state.losses[signal] = 0.98 * state.losses.get(signal, 0.0) + error * error
    state.outcomes += 1
    return state


# --- random histories ------------------------------------------------------------------------------

AGENTS = ("a", "b", "c")
TYPES = ("review", "code", "plan")
STYLES = (None, "analytical", "creative", "pragmatic")
QUALITIES = st.one_of(
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    st.sampled_from([None, 0.0, 1.0, 0.1, 0.7]),
)
DURATIONS = st.one_of(st.sampled_from([0.0, -1.0, 0.25]), st.floats(min_value=-5.0, max_value=500.0))
BREAKDOWNS: st.SearchStrategy[dict[str, float]] = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {key: st.floats(min_value=0.0, max_value=1.0, allow_nan=False) for key in RECORDED_AS.values()}
    ),
)


@st.composite
def outcomes(draw: st.DrawFn) -> Outcome:
    style = draw(st.sampled_from(STYLES))
    profile = TaskProfile(preferred_cognitive_style=style)  # type: ignore[arg-type]
    attempt = draw(st.integers(min_value=1, max_value=2))
    task = TaskView(
        spec=TaskSubmitted(task_id="t", task_type=draw(st.sampled_from(TYPES)), profile=profile),
        attempt=attempt,
        assignments=[
            AssignmentRecord(
                agent_id="a",
                attempt=draw(st.integers(min_value=1, max_value=2)),
                seq=1,
                ts=0.0,
                breakdown=draw(BREAKDOWNS),
            )
        ]
        if draw(st.booleans())
        else [],
    )
    return Outcome(
        agent_id=draw(st.sampled_from(AGENTS)),
        task=task,
        success=draw(st.sampled_from([True, True, True, False])),
        quality=draw(QUALITIES),
        duration_s=draw(DURATIONS),
    )


def _prediction_bytes(state: PerformanceState) -> bytes:
    """Every prediction a decision could ask of `state`: each agent (and one never seen), type
    (and one never seen) and style, with and without a reference duration."""
    found: list[Any] = []
    for agent in (*AGENTS, "new"):
        for task_type in (*TYPES, "other"):
            for style in STYLES:
                profile = TaskProfile(preferred_cognitive_style=style)  # type: ignore[arg-type]
                probe = TaskView(spec=TaskSubmitted(task_id="p", task_type=task_type, profile=profile))
                for reference in (None, 3.0):
                    found.append(predict(state, agent, probe, declared=0.6, reference_s=reference))
    return msgspec.msgpack.encode(found)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(outcomes(), st.booleans()), min_size=1, max_size=120))
def test_learning_gives_the_very_numbers_of_the_plain_formulas(history: list[tuple[Outcome, bool]]) -> None:
    """Over random outcome histories read at random points, the state (msgpack: every float's
    bits) and every prediction are those of the reference; so are the adaptive losses."""
    state, reference = PerformanceState(), PerformanceState()
    adaptive, adaptive_reference = AdaptiveState(), AdaptiveState()
    for outcome, read in history:
        learn(state, outcome)
        reference_learn(reference, outcome)
        observe(adaptive, outcome)
        reference_observe(adaptive_reference, outcome)
        if read:
            assert msgspec.msgpack.encode(state) == msgspec.msgpack.encode(reference)
            assert _prediction_bytes(state) == _prediction_bytes(reference)
            assert msgspec.msgpack.encode(adaptive) == msgspec.msgpack.encode(adaptive_reference)
    assert msgspec.msgpack.encode(state) == msgspec.msgpack.encode(reference)
    assert _prediction_bytes(state) == _prediction_bytes(reference)
    assert msgspec.msgpack.encode(adaptive) == msgspec.msgpack.encode(adaptive_reference)


def test_long_histories_give_the_very_numbers_too() -> None:
    """Thousands of outcomes on many types and styles (cells with many outcomes, effects far from
    where they started): the state is the reference's all along."""
    rng = random.Random(7)
    state, reference = PerformanceState(), PerformanceState()
    for index in range(3000):
        style = rng.choice(STYLES)
        probe = TaskView(
            spec=TaskSubmitted(
                task_id="t",
                task_type=rng.choice(TYPES),
                profile=TaskProfile(preferred_cognitive_style=style),  # type: ignore[arg-type]
            )
        )
        agent = rng.choice(AGENTS)
        success = rng.random() < 0.9
        quality = None if rng.random() < 0.05 else min(1.0, max(0.0, rng.gauss(0.7, 0.15)))
        outcome = Outcome(
            agent_id=agent, task=probe, success=success, quality=quality, duration_s=rng.random()
        )
        learn(state, outcome)
        reference_learn(reference, outcome)
        if index % 50 == 0:
            assert msgspec.msgpack.encode(state) == msgspec.msgpack.encode(reference)
    assert msgspec.msgpack.encode(state) == msgspec.msgpack.encode(reference)
    assert _prediction_bytes(state) == _prediction_bytes(reference)


def test_a_refit_continues_from_the_last_one_so_it_cannot_be_put_off() -> None:
    """Why the refit is not lazy: with several types and styles, three sweeps after each outcome
    leave other effects than three sweeps after the last outcome alone."""
    outcomes_seen = [
        ("review", "analytical", 0.9),
        ("code", "analytical", 0.5),
        ("review", "creative", 0.2),
        ("code", "creative", 0.8),
        ("plan", "analytical", 0.7),
    ]
    eager = PerformanceState()
    for task_type, style, quality in outcomes_seen:
        probe = TaskView(
            spec=TaskSubmitted(
                task_id="t",
                task_type=task_type,
                profile=TaskProfile(preferred_cognitive_style=style),  # type: ignore[arg-type]
            )
        )
        learn(eager, Outcome(agent_id="a", task=probe, success=True, quality=quality, duration_s=1.0))
    once = msgspec.convert(msgspec.to_builtins(eager), PerformanceState)
    record = once.agents["a"]
    record.type_effect.clear()
    record.style_effect.clear()
    reference_refit(record)
    differences = [abs(record.type_effect[t] - eager.agents["a"].type_effect[t]) for t in record.type_effect]
    assert max(differences) > 1e-6
    assert all(math.isfinite(value) for value in eager.agents["a"].style_effect.values())
    assert ANY_STYLE not in eager.agents["a"].style_effect


# --- the fleet and the views that fold it ------------------------------------------------------------

TASK_IDS = ("t0", "t1", "t2", "t3")
PRIORITIES = ("low", "normal", "high", "critical")


@st.composite
def fleet_events(draw: st.DrawFn) -> AnyEvent:
    """Events of a few tasks and agents, at random attempts: most of them stale or out of order."""
    task_id = draw(st.sampled_from(TASK_IDS))
    agent_id = draw(st.sampled_from(AGENTS))
    attempt = draw(st.integers(min_value=1, max_value=3))
    ts = draw(st.floats(min_value=0.0, max_value=100.0))
    kind = draw(st.integers(min_value=0, max_value=9))
    if kind == 0:
        return TaskSubmitted(
            task_id=task_id,
            task_type=draw(st.sampled_from(TYPES)),
            priority=draw(st.sampled_from(PRIORITIES)),
            ts=ts,
        )
    if kind == 1:
        return TaskAssigned(
            task_id=task_id,
            agent_id=agent_id,
            attempt=attempt,
            ts=ts,
            breakdown=draw(BREAKDOWNS),
        )
    if kind == 2:
        return TaskStarted(task_id=task_id, agent_id=agent_id, attempt=attempt, ts=ts)
    if kind == 3:
        return TaskCompleted(
            task_id=task_id,
            agent_id=agent_id,
            attempt=attempt,
            ts=ts,
            quality=draw(QUALITIES),
            duration_s=1.0,
        )
    if kind == 4:
        return TaskAttemptFailed(
            task_id=task_id,
            agent_id=agent_id,
            attempt=attempt,
            ts=ts,
            failure_type=draw(st.sampled_from(["agent_error", "rebalanced", "timeout"])),
            retryable=draw(st.booleans()),
        )
    if kind == 5:
        return TaskRequeued(
            task_id=task_id, attempt=attempt, ts=ts, reason=draw(st.sampled_from(["", "rebalanced"]))
        )
    if kind == 6:
        return TaskQueued(task_id=task_id, attempt=attempt, reason="no agent", ts=ts)
    if kind == 7:
        return TaskFailed(task_id=task_id, attempt=attempt, ts=ts)
    if kind == 8:
        return TaskCancelled(task_id=task_id, ts=ts)
    return AgentRegistered(agent_id=agent_id, capabilities={task_type: 1.0 for task_type in TYPES}, ts=ts)


@settings(max_examples=300, deadline=None)
@given(st.lists(fleet_events(), max_size=60))
def test_only_waiting_tasks_are_ever_queued(events: list[AnyEvent]) -> None:
    """Why ending a task looks for it in the queue only when it waits: after every event, the queue
    is exactly the keys of the waiting tasks, in order."""
    fleet = FleetState()
    for seq, event in enumerate(events, start=1):
        apply_fleet(fleet, Recorded(seq, event.subject, event))
        waiting = sorted(task.queue_key for task in fleet.tasks.values() if task.status in WAITING)
        assert fleet.queue == waiting


@settings(max_examples=200, deadline=None)
@given(st.lists(fleet_events(), max_size=60))
def test_the_balancer_keeps_the_very_router_state_the_router_does(events: list[AnyEvent]) -> None:
    """The balancer asks ``admits`` once and applies the router's view with the router's own
    functions: its router state is the router's own, byte for byte, after every event, but for
    what no move reads: the adaptive weights, the queue, the assignment records and the keys
    but affinity (``services/balancer/view.py``; ``test_balancer_apply.py`` compares decisions)."""
    router, balancer = RouterState(), BalancerState()
    for seq, event in enumerate(events, start=1):
        recorded = Recorded(seq, event.subject, event)
        apply_router(router, recorded)
        apply_balancer(balancer, recorded)
        assert balancer.router.adaptive == AdaptiveState()
        fleet = msgspec.msgpack.decode(msgspec.msgpack.encode(router.fleet), type=FleetState)
        fleet.queue = []
        for task in fleet.tasks.values():
            task.assignments = []
        unlearned = msgspec.structs.replace(
            router, adaptive=AdaptiveState(), fleet=fleet, keys=KeysState(affinity=router.keys.affinity)
        )
        assert msgspec.msgpack.encode(balancer.router) == msgspec.msgpack.encode(unlearned)


def test_the_balancer_learns_no_adaptive_weights() -> None:
    """Outcomes with the scores of their assignment teach the router's weights, not the balancer's."""
    events: list[AnyEvent] = [AgentRegistered(agent_id="a", capabilities={"review": 1.0}, capacity=4)]
    breakdown = dict.fromkeys(RECORDED_AS.values(), 0.5)
    for index in range(3):
        events += [
            TaskSubmitted(task_id=f"t{index}", task_type="review"),
            TaskAssigned(task_id=f"t{index}", agent_id="a", attempt=1, breakdown=breakdown),
            TaskCompleted(task_id=f"t{index}", agent_id="a", attempt=1, quality=0.9),
        ]
    router, balancer = RouterState(), BalancerState()
    for seq, event in enumerate(events, start=1):
        apply_router(router, Recorded(seq, event.subject, event))
        apply_balancer(balancer, Recorded(seq, event.subject, event))
    assert router.adaptive.outcomes == 3
    assert balancer.router.adaptive == AdaptiveState()
    assert balancer.router.performance == router.performance


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=3, max_size=3),
    st.integers(min_value=1, max_value=500),
    st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=4, max_size=12),
    st.sampled_from(["adaptive_hybrid", "performance_based", "capability_aware", "least_connections"]),
)
def test_a_plan_reads_no_adaptive_weight(
    losses: list[float], outcomes_seen: int, qualities: list[float], strategy: LoadBalancingStrategy
) -> None:
    """Why the balancer need not learn the weights: with any learned weights a plan is the same
    (moves, their predicted qualities, notes, efficiencies)."""
    events: list[AnyEvent] = [
        AgentRegistered(agent_id=name, capabilities={"review": proficiency}, capacity=3, ts=1.0)
        for name, proficiency in (("slow", 0.9), ("b", 0.6), ("c", 0.8), ("d", 0.7))
    ]
    for index, quality in enumerate(qualities):
        name = ("b", "c", "d")[index % 3]
        events += [
            TaskSubmitted(task_id=f"done{index}", task_type="review", ts=2.0),
            TaskAssigned(task_id=f"done{index}", agent_id=name, attempt=1, ts=2.0),
            TaskCompleted(task_id=f"done{index}", agent_id=name, attempt=1, quality=quality, ts=3.0),
        ]
    for index in range(3):
        events += [
            TaskSubmitted(task_id=f"stuck{index}", task_type="review", ts=100.0),
            TaskAssigned(task_id=f"stuck{index}", agent_id="slow", attempt=1, ts=100.0),
        ]
    state = BalancerState()
    for seq, event in enumerate(events, start=1):
        apply_balancer(state, Recorded(seq, event.subject, event))
    policy = RebalancePolicy(quality_tolerance=0.5, strategy=strategy)
    unlearned = plan_moves(state, now=110.0, policy=policy)
    learned = AdaptiveState(losses=dict(zip(SIGNALS, losses, strict=True)), outcomes=outcomes_seen)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(balancer_decide, "UNLEARNED", learned)
        assert plan_moves(state, now=110.0, policy=policy) == unlearned
    assert unlearned.waiting == 3


def test_the_fleets_cases_are_of_unrelated_classes() -> None:
    """``apply_fleet`` tries its cases in order of how often they come: safe while no class of a
    case derives from another's (an event matches one case whatever the order)."""
    cases = [
        TaskAssigned, TaskSubmitted, TaskCompleted, TaskQueued, TaskStarted, TaskProgress,
        TaskAttemptFailed, TaskRequeued, TaskFailed, TaskCancelled, AgentRegistered, AgentDraining,
        AgentDeregistered, AgentUnresponsive, AgentStalled, AgentRecovered, AgentQuarantined,
    ]  # fmt: skip
    for one in cases:
        for other in cases:
            assert one is other or not issubclass(one, other)
