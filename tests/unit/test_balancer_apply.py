"""The balancer's cheaper apply (revision 1) decides and reports exactly what the apply it replaced
did: the reference below is that apply as it was (the router's whole view, adaptive weights aside,
and every system event read), kept here as the oracle."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.balancer.decide import (
    Move,
    RebalancePolicy,
    efficiency_once_landed,
    plan_moves,
    waiting_attempts,
)
from services.balancer.scaling import ScalePolicy, all_advice, changed_advice
from services.balancer.view import (
    BALANCER_VIEW,
    REBALANCED,
    BalancerState,
    _demand,
    apply_balancer,
    ignores_balancer,
)
from shared.domain.breakers import apply_breakers
from shared.domain.fleet import WAITING, FleetState, admits, apply_fleet, correlation_of
from shared.domain.load_balance import fleet_efficiency, sample_assignment
from shared.domain.routing.eligibility import BELOW_THRESHOLD
from shared.domain.routing.keys import KeysState, apply_affinity, apply_keys
from shared.domain.routing.performance import learn, outcome_of
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.view import RouterState, apply_admitted
from shared.events import (
    AgentDeregistered,
    AgentDraining,
    AgentQuarantined,
    AgentRecovered,
    AgentRegistered,
    AgentStalled,
    AgentUnresponsive,
    AnyEvent,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReset,
    ConcurrencyLimitSet,
    KeySlotClaimed,
    LoadBalancingStrategy,
    LoadRebalanced,
    Persona,
    RateTokensTaken,
    RebalanceRequested,
    RejectedCandidate,
    ScaleRecommended,
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
from shared.projection_spec import ProjectionSpec, fold
from shared.recorded import Recorded

# --- the reference: the balancer's apply and skips as they were (revision 0) ------------------------


def reference_apply(state: BalancerState, recorded: Recorded) -> BalancerState:
    """Revision 0, plus the rule the balancer gained since: an agent work was moved away from
    unstarted is marked until it starts or ends an attempt, or registers anew."""
    fleet = state.router.fleet
    if not admits(fleet, recorded):
        return state
    sample_assignment(state.load, fleet, state.router.breakers, recorded)
    event = recorded.event
    match event:
        case TaskSubmitted():
            if event.task_id not in fleet.tasks:
                demand = _demand(state, event.task_type)
                demand.arrivals.add(event.ts, 1.0)
                if event.estimated_duration_s is not None:
                    demand.estimates.add(event.ts, event.estimated_duration_s)
        case TaskCompleted():
            task = fleet.tasks.get(event.task_id)
            if task is not None and not task.terminal and task.attempt == event.attempt:
                _demand(state, task.spec.task_type).durations.add(event.ts, max(0.0, event.duration_s))
            state.moved.pop(event.task_id, None)
            state.unstarting.pop(event.agent_id, None)
        case TaskStarted() | TaskAttemptFailed() | AgentRegistered() | AgentDeregistered():
            state.unstarting.pop(event.agent_id, None)
        case TaskRequeued():
            task = fleet.tasks.get(event.task_id)
            accepted = task is not None and not task.terminal and event.attempt == task.attempt + 1
            if accepted and event.reason == REBALANCED:
                state.moved[event.task_id] = state.moved.get(event.task_id, 0) + 1
                if task is not None and task.agent_id is not None:
                    state.unstarting[task.agent_id] = event.ts
        case TaskFailed() | TaskCancelled():
            state.moved.pop(event.task_id, None)
        case ScaleRecommended():
            state.scale[event.capability] = event
        case _:
            pass
    _reference_router_apply(state.router, recorded)
    return state


def _reference_router_apply(router: RouterState, recorded: Recorded) -> None:
    """The router's apply without the adaptive weights, as revision 0 of the balancer applied it."""
    outcome = outcome_of(router.fleet, recorded)
    if outcome is not None:
        learn(router.performance, outcome)
    apply_fleet(router.fleet, recorded)
    apply_breakers(router.breakers, recorded)
    apply_keys(router.keys, router.fleet, recorded)


def reference_ignores(state: BalancerState, subject: str) -> bool:
    tokens = subject.split(".")
    if len(tokens) < 5:
        return False
    return tokens[2] == "workflow" or (tokens[2] == "task" and tokens[4] == "progress")


REFERENCE_VIEW: ProjectionSpec[BalancerState] = ProjectionSpec(
    name="balancer",
    state_type=BalancerState,
    initial=BalancerState,
    apply=reference_apply,
    ignores=reference_ignores,
)
REVISION_0_SCHEMA = "balancer-r0-28128d72aeb7da66"
"""The snapshot schema id of the apply above (measured on main before revision 1)."""
REVISION_1_BEFORE_UNSTARTING = "balancer-r1-28128d72aeb7da66"
"""Revision 1's schema id before the state kept ``unstarting`` (measured on bc8b241)."""


# --- random histories ---------------------------------------------------------------------------

AGENTS = ("a0", "a1", "a2", "a3")
TASKS = ("t0", "t1", "t2", "t3", "t4", "t5")
TYPES = ("review", "code")
KEYS = ("k0", "k1")
FAILURE_TYPES = ("agent_error", "timeout", "rebalanced", "agent_unresponsive")
STRATEGIES: tuple[LoadBalancingStrategy, ...] = (
    "adaptive_hybrid",
    "least_connections",
    "round_robin",
    "weighted_round_robin",
    "capability_aware",
    "performance_based",
)


@st.composite
def histories(draw: st.DrawFn) -> list[AnyEvent]:
    """A few agents registered, then tasks and agents living, failing and moving, with breakers,
    affinity and concurrency keys, rate tokens and scale advice: most events current, some stale."""
    events: list[AnyEvent] = [
        AgentRegistered(
            agent_id=agent_id,
            capabilities={kind: draw(st.floats(0.3, 1.0)) for kind in TYPES if draw(st.booleans())}
            or {"review": 0.8},
            capacity=draw(st.integers(1, 3)),
            persona=Persona(cognitive_style=draw(st.sampled_from(["analytical", "creative"]))),
            ts=0.0,
        )
        for agent_id in AGENTS
        if agent_id == "a0" or draw(st.booleans())
    ]
    ts = 1.0
    attempts = dict.fromkeys(TASKS, 1)
    for _ in range(draw(st.integers(0, 50))):
        ts += draw(st.sampled_from([0.0, 0.004, 0.3, 1.5, 3.0, 20.0]))
        task_id = draw(st.sampled_from(TASKS))
        agent_id = draw(st.sampled_from(AGENTS))
        attempt = attempts[task_id] + draw(st.sampled_from([0, 0, 0, 0, 1, -1]))
        kind = draw(st.integers(0, 24))
        event: AnyEvent
        if kind <= 2:
            affinity_key = draw(st.sampled_from([None, None, *KEYS]))
            event = TaskSubmitted(
                task_id=task_id,
                task_type=draw(st.sampled_from(TYPES)),
                priority=draw(st.sampled_from(["low", "normal", "high", "critical"])),
                affinity_key=affinity_key,
                affinity=draw(st.sampled_from(["soft", "hard"])),
                concurrency_key=draw(st.sampled_from([None, "c0"])),
                expected_quality_threshold=draw(st.sampled_from([0.0, 0.0, 0.5, 0.9])),
                estimated_duration_s=draw(st.sampled_from([None, 0.5, 4.0])),
                not_before_ts=draw(st.sampled_from([None, None, ts + 5.0])),
                profile=TaskProfile(preferred_cognitive_style=draw(st.sampled_from([None, "analytical"]))),
                correlation_id=draw(st.sampled_from(["", f"corr-{task_id}"])),
                ts=ts,
            )
        elif kind <= 6:
            event = TaskAssigned(
                task_id=task_id,
                agent_id=agent_id,
                attempt=attempt,
                breakdown={"capability": 0.5, "load": 0.2},
                rejected=[RejectedCandidate(agent_id="a3", score=0.1, reason="busy")],
                explanation="because",
                ts=ts,
            )
        elif kind <= 8:
            event = TaskStarted(task_id=task_id, agent_id=agent_id, attempt=attempt, ts=ts)
        elif kind <= 11:
            event = TaskCompleted(
                task_id=task_id,
                agent_id=agent_id,
                attempt=attempt,
                quality=draw(st.sampled_from([None, 0.2, 0.7, 0.95])),
                duration_s=draw(st.sampled_from([0.0, 0.5, 2.0, -1.0])),
                ts=ts,
            )
        elif kind == 12:
            event = TaskAttemptFailed(
                task_id=task_id,
                agent_id=agent_id,
                attempt=attempt,
                failure_type=draw(st.sampled_from(FAILURE_TYPES)),
                retryable=draw(st.booleans()),
                ts=ts,
            )
        elif kind == 13:
            event = TaskRequeued(
                task_id=task_id,
                attempt=attempts[task_id] + 1,
                reason=draw(st.sampled_from([REBALANCED, "agent_unresponsive", ""])),
                preferred_agent_id=draw(st.sampled_from([None, agent_id])),
                excluded_agent_ids=draw(st.sampled_from([[], [agent_id]])),
                not_before_ts=draw(st.sampled_from([0.0, ts + 2.0])),
                ts=ts,
            )
            attempts[task_id] += 1
        elif kind == 14:
            event = TaskQueued(
                task_id=task_id,
                attempt=attempt,
                reason=draw(st.sampled_from([BELOW_THRESHOLD, "no_capacity"])),
                ts=ts,
            )
        elif kind == 15:
            event = draw(
                st.sampled_from(
                    [
                        TaskFailed(task_id=task_id, attempt=attempt, ts=ts),
                        TaskCancelled(task_id=task_id, ts=ts),
                        TaskProgress(
                            task_id=task_id, agent_id=agent_id, attempt=attempt, percent=50.0, ts=ts
                        ),
                    ]
                )
            )
        elif kind == 16:
            event = draw(
                st.sampled_from(
                    [
                        AgentDraining(agent_id=agent_id, ts=ts),
                        AgentDeregistered(agent_id=agent_id, ts=ts),
                        AgentUnresponsive(agent_id=agent_id, ts=ts),
                        AgentRecovered(agent_id=agent_id, ts=ts),
                        AgentQuarantined(agent_id=agent_id, until_ts=ts + 10.0, ts=ts),
                        AgentStalled(agent_id=agent_id, ts=ts),
                        AgentRegistered(agent_id=agent_id, capabilities={"review": 0.6, "code": 0.9}, ts=ts),
                    ]
                )
            )
        elif kind == 17:
            event = draw(
                st.sampled_from(
                    [
                        BreakerOpened(agent_id=agent_id, retry_after_ts=ts + 5.0, ts=ts),
                        BreakerHalfOpened(agent_id=agent_id, probes_allowed=1, ts=ts),
                        BreakerClosed(agent_id=agent_id, ts=ts),
                        BreakerReset(agent_id=agent_id, ts=ts),
                    ]
                )
            )
        elif kind == 18:
            capability = draw(st.sampled_from(TYPES))
            event = ScaleRecommended(
                scope=f"scale-{capability}",
                capability=capability,
                additional_agents=draw(st.integers(0, 3)),
                ts=ts,
            )
        elif kind == 19:
            event = KeySlotClaimed(scope="key-c0", key="c0", task_id=task_id, attempt=attempt, ts=ts)
        elif kind == 20:
            event = RateTokensTaken(scope="rate-r0", key="r0", task_id=task_id, attempt=attempt, ts=ts)
        elif kind == 21:
            event = ConcurrencyLimitSet(scope="limit-c0", pattern="c0", max_running=1, ts=ts)
        elif kind == 22:
            event = draw(
                st.sampled_from(
                    [RebalanceRequested(scope="req-1", ts=ts), LoadRebalanced(scope="req-1", ts=ts)]
                )
            )
        else:
            event = TaskStarted(task_id=task_id, agent_id=agent_id, attempt=attempts[task_id], ts=ts)
        events.append(event)
    return events


def recorded_log(events: list[AnyEvent]) -> list[Recorded]:
    return [Recorded(seq, event.subject, event) for seq, event in enumerate(events, start=1)]


# --- what the balancer decides and reports --------------------------------------------------------


def decisions(state: BalancerState, now: float) -> list[object]:
    """Every move (with its explanation) and advice the balancer would make at `now`, under every
    strategy and policy it uses, and every figure it reports (health, gauges, summaries)."""
    router = state.router
    out: list[object] = []
    config = RoutingConfig()
    for strategy in STRATEGIES:
        for unstarted_after_s, max_moves in ((2.0, 100), (0.0, 1)):
            policy = RebalancePolicy(
                unstarted_after_s=unstarted_after_s, max_moves=max_moves, strategy=strategy
            )
            plan = plan_moves(state, now, policy, config)
            out.append(plan)
            out.append(efficiency_once_landed(router, plan.moves))
            out.append([correlation_of(router.fleet, move.task_id) for move in plan.moves])
    waiting = waiting_attempts(router, now, RebalancePolicy())
    out.append([(w.task.task_id, w.task.attempt, w.holder.agent_id, w.waited_s) for w in waiting])
    landed = [
        Move(task_id=task_id, attempt=attempt, from_agent_id="a0", to_agent_id="a1", waited_s=0.0,
             quality_from=0.0, quality_to=0.0)
        for task_id in TASKS
        for attempt in (1, 2)
    ]  # fmt: skip
    out.append(efficiency_once_landed(router, landed))
    for window_s in (5.0, 60.0):
        scale_policy = ScalePolicy(window_s=window_s)
        advice = all_advice(state, now, scale_policy)
        out.append(advice)
        out.append(changed_advice(state, advice, now, scale_policy))
    fleet, breakers = router.fleet, router.breakers
    agents = [a for a in fleet.agents.values() if a.status == "active"]
    out.append((len(agents), sum(a.load for a in agents), sum(a.capacity for a in agents)))
    out.append(fleet_efficiency(fleet, breakers))
    out.append([(a.agent_id, a.status, a.utilisation) for a in fleet.agents.values()])
    for since in (0.0, now - 300.0, now - 1.0):
        out.append(state.load.efficiency(since))
    out.append(sorted(state.scale.items()))
    return out


def kept(router: RouterState) -> bytes:
    """The router part of a balancer state without what revision 1 no longer keeps."""
    fleet = msgspec.msgpack.decode(msgspec.msgpack.encode(router.fleet), type=FleetState)
    fleet.queue = []
    for task in fleet.tasks.values():
        task.assignments = []
    trimmed = msgspec.structs.replace(router, fleet=fleet, keys=KeysState(affinity=router.keys.affinity))
    return msgspec.msgpack.encode(trimmed)


@settings(max_examples=150, deadline=None)
@given(histories(), st.sampled_from([0.0, 1.5, 4.0, 30.0]))
def test_the_balancers_apply_decides_and_reports_what_the_old_one_did(
    events: list[AnyEvent], later: float
) -> None:
    """After every event, folded through the runner's skips: the same moves, notes, efficiencies,
    advice and figures, and the same state but for what revision 1 does not keep."""
    log = recorded_log(events)
    old, new = REFERENCE_VIEW.initial(), BALANCER_VIEW.initial()
    for index, recorded in enumerate(log):
        old = fold(REFERENCE_VIEW, [recorded], old)
        new = fold(BALANCER_VIEW, [recorded], new)
        assert kept(new.router) == kept(old.router)
        assert msgspec.msgpack.encode(new.load) == msgspec.msgpack.encode(old.load)
        assert msgspec.msgpack.encode(new.demand) == msgspec.msgpack.encode(old.demand)
        assert new.moved == old.moved
        assert new.unstarting == old.unstarting
        assert new.scale == old.scale
        if index % 7 == 0 or index == len(log) - 1:
            now = recorded.event.ts + later
            assert decisions(new, now) == decisions(old, now)


def test_the_history_strategy_makes_moves_and_advice() -> None:
    """The property above is not vacuous: a history like the ones it draws moves work and advises."""
    events: list[AnyEvent] = [
        AgentRegistered(agent_id="a0", capabilities={"review": 0.9}, capacity=2, ts=0.0),
        AgentRegistered(agent_id="a1", capabilities={"review": 0.9}, capacity=2, ts=0.0),
        TaskSubmitted(task_id="t0", task_type="review", affinity_key="k0", ts=1.0),
        TaskAssigned(task_id="t0", agent_id="a0", attempt=1, ts=1.0),
        TaskSubmitted(task_id="t1", task_type="code", ts=1.0),
    ]
    old = fold(REFERENCE_VIEW, recorded_log(events))
    new = fold(BALANCER_VIEW, recorded_log(events))
    moves = plan_moves(new, 10.0, RebalancePolicy()).moves
    assert [(m.task_id, m.to_agent_id) for m in moves] == [("t0", "a1")]
    assert [a.capability for a in all_advice(new, 10.0, ScalePolicy())] == ["code", "review"]
    assert decisions(new, 10.0) == decisions(old, 10.0)


def test_the_reference_keeps_the_mark_of_an_agent_work_was_moved_away_from_unstarted() -> None:
    """The case the property above once drew: work moved away from a2 unstarted leaves a2 no target
    until it reads its work, in the reference as in the balancer (the reference lacked the rule)."""
    events: list[AnyEvent] = [
        AgentRegistered(agent_id="a0", capabilities={"review": 0.7}, capacity=1, ts=0.0),
        AgentRegistered(agent_id="a2", capabilities={"review": 0.6}, capacity=3, ts=0.0),
        TaskSubmitted(task_id="t1", task_type="review", ts=1.0),
        TaskAssigned(task_id="t1", agent_id="a2", attempt=1, ts=1.0),
        TaskRequeued(task_id="t1", attempt=2, reason=REBALANCED, ts=1.0),
        TaskAssigned(task_id="t1", agent_id="a0", attempt=2, ts=1.0),
    ]
    old = fold(REFERENCE_VIEW, recorded_log(events))
    new = fold(BALANCER_VIEW, recorded_log(events))
    assert old.unstarting == new.unstarting == {"a2": 1.0}
    assert decisions(new, 5.0) == decisions(old, 5.0)
    [note] = plan_moves(new, 5.0, RebalancePolicy()).notes
    assert "have not started or ended an attempt" in note
    back = [AgentRegistered(agent_id="a2", capabilities={"review": 0.6}, capacity=3, ts=2.0)]
    assert fold(REFERENCE_VIEW, recorded_log(back), old).unstarting == {}


# --- what revision 1 no longer keeps or reads ------------------------------------------------------


def test_the_balancer_keeps_no_queue_assignment_records_nor_keys_but_affinity() -> None:
    """Sorting every submission into a queue, copying every routing explanation and keeping the
    keys' limits, slots and tokens cost every event and fed no decision of the balancer."""
    events: list[AnyEvent] = [
        AgentRegistered(agent_id="a0", capabilities={"review": 0.9}, capacity=2, ts=0.0),
        ConcurrencyLimitSet(scope="limit-c0", pattern="c0", max_running=1, ts=0.5),
        TaskSubmitted(task_id="t0", task_type="review", affinity_key="k0", concurrency_key="c0", ts=1.0),
        TaskSubmitted(task_id="t1", task_type="review", ts=1.0),
        TaskAssigned(
            task_id="t0", agent_id="a0", attempt=1, breakdown={"load": 0.5}, explanation="x", ts=1.0
        ),
    ]
    state = BalancerState()
    for recorded in recorded_log(events):
        apply_balancer(state, recorded)
    fleet = state.router.fleet
    assert fleet.queue == []
    assert fleet.tasks["t0"].assignments == []
    assert fleet.tasks["t1"].status in WAITING
    assert fleet.agents["a0"].in_flight == {"t0": 1}
    assert state.router.keys == KeysState(affinity={"k0": "a0"})


def test_the_balancer_skips_system_events_but_the_scale_advice_undecoded() -> None:
    """Keys' slots and tokens come with tasks that use them: the balancer no longer decodes them."""
    state = BalancerState()
    skipped = [
        KeySlotClaimed(scope="key-c0", key="c0", task_id="t0", attempt=1),
        RateTokensTaken(scope="rate-r0", key="r0", task_id="t0", attempt=1),
        ConcurrencyLimitSet(scope="limit-c0", pattern="c0", max_running=1),
        RebalanceRequested(scope="req-1"),
        LoadRebalanced(scope="req-1"),
    ]
    for event in skipped:
        assert ignores_balancer(state, event.subject), event.subject
    assert not ignores_balancer(state, ScaleRecommended(scope="scale-review", capability="review").subject)
    assert not ignores_balancer(state, TaskStarted(task_id="t0", agent_id="a0", attempt=1).subject)
    assert not ignores_balancer(state, BreakerOpened(agent_id="a0").subject)


def test_a_snapshot_of_the_old_apply_is_not_loaded() -> None:
    """What apply puts in the state changed (revision 1), and then its shape (``unstarting``):
    each gives a new schema id, so a snapshot of an earlier apply (revision 0's queue and records,
    stale once folded on; no marks of agents that left work unstarted) is rebuilt from the log."""
    assert BALANCER_VIEW.revision == 1
    assert BALANCER_VIEW.schema.startswith("balancer-r1-")
    assert BALANCER_VIEW.schema not in (REVISION_0_SCHEMA, REVISION_1_BEFORE_UNSTARTING)
    assert REFERENCE_VIEW.schema.startswith("balancer-r0-")
    assert REFERENCE_VIEW.schema.removeprefix("balancer-r0-") == BALANCER_VIEW.schema.removeprefix(
        "balancer-r1-"
    )


@settings(max_examples=200, deadline=None)
@given(histories())
def test_apply_affinity_keeps_the_affinity_apply_keys_does(events: list[AnyEvent]) -> None:
    """The hard affinity binding the balancer's eligibility reads is the router's own."""
    router = RouterState()
    affinity = KeysState()
    for recorded in recorded_log(events):
        if admits(router.fleet, recorded):
            apply_admitted(router, recorded)  # the fleet, then apply_keys
            apply_affinity(affinity, router.fleet, recorded)
        assert list(affinity.affinity.items()) == list(router.keys.affinity.items())
    assert affinity == KeysState(affinity=router.keys.affinity)
