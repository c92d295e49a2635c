"""Recovery's, the balancer's and the gateway's views, each event routed only to the parts that
act on it, keep byte for byte the state they kept when every part saw every event: the references
below are those applies as they were (every part in turn; the balancer's load sample over
``group_loads`` and ``misplaced_work``), kept as the oracle, and all are folded over a varied
history with breakers tripping, probing and closing, scale advice, incidents and rebalanced moves
among the task lives."""

from __future__ import annotations

import random
import time

import msgspec
import pytest

from services.balancer.view import (
    PARTS,
    REBALANCED,
    BalancerState,
    _demand,
    apply_balancer,
    apply_every_part,
    apply_router_part,
)
from services.gateway.alerts import apply_alerts
from services.gateway.view import GatewayState, apply_gateway
from services.recovery.view import RecoveryState, apply_recovery
from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import FleetState, admits, apply_fleet
from shared.domain.load_balance import (
    MIN_SAMPLE_GAP_S,
    LoadWindow,
    accepted_assignment,
    capable,
    group_loads,
    misplaced_work,
    takes_work,
)
from shared.domain.outcomes import apply_outcomes
from shared.domain.performance_metrics import apply_metrics
from shared.domain.routing.keys import apply_keys
from shared.domain.schedules import apply_schedules
from shared.domain.workflows import apply_workflows
from shared.events import (
    AgentDeregistered,
    AgentRecovered,
    AgentRegistered,
    AgentStalled,
    AgentUnresponsive,
    BreakerClosed,
    BreakerEvent,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReset,
    Event,
    FailureReported,
    RecoveryActionTaken,
    ScaleRecommended,
    ScheduleCreated,
    ScheduledTask,
    ScheduleFired,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.recorded import Recorded
from tests.varied_history import recorded, varied_events

# --- the references: the applies as they were ------------------------------------------------------


def old_recovery(state: RecoveryState, item: Recorded) -> RecoveryState:
    if not admits(state.fleet, item):
        return state
    apply_fleet(state.fleet, item)
    apply_breakers(state.breakers, item)
    apply_outcomes(state.outcomes, item)
    return state


def old_gateway(state: GatewayState, item: Recorded) -> GatewayState:
    if not admits(state.fleet, item):
        return state
    apply_metrics(state.metrics, state.fleet, state.breakers, item)
    apply_fleet(state.fleet, item)
    apply_workflows(state.workflows, item)
    apply_breakers(state.breakers, item)
    apply_outcomes(state.outcomes, item)
    apply_alerts(state.alerts, item)
    apply_schedules(state.schedules, item)
    apply_keys(state.keys, state.fleet, item)
    return state


def old_sample(window: LoadWindow, fleet: FleetState, breakers: BreakersState, item: Recorded) -> None:
    event = item.event
    if not isinstance(event, TaskAssigned) or event.ts - window.last_sample_ts < MIN_SAMPLE_GAP_S:
        return
    if not accepted_assignment(fleet, event):
        return
    spec = fleet.tasks[event.task_id].spec
    needed = [spec.task_type, *spec.required_capabilities]
    loads = group_loads(fleet, breakers, needed, {event.agent_id: 1})
    chosen = fleet.agents[event.agent_id]
    if not (takes_work(chosen, breakers) and capable(chosen, needed)):
        loads.append((chosen.load + 1, chosen.capacity))
    total, misplaced = misplaced_work(loads)
    if total == 0:
        return
    window.last_sample_ts = event.ts
    window.sums.add(event.ts, misplaced, total)


def old_balancer(state: BalancerState, item: Recorded) -> BalancerState:
    fleet = state.router.fleet
    if not admits(fleet, item):
        return state
    old_sample(state.load, fleet, state.router.breakers, item)
    event = item.event
    match event:
        case TaskSubmitted():
            if event.task_id not in fleet.tasks:
                demand = _demand(state, event.task_type)
                demand.arrivals.add(event.ts, 1.0)
                if event.estimated_duration_s is not None:
                    demand.estimates.add(event.ts, event.estimated_duration_s)
        case TaskStarted() | TaskAttemptFailed():
            state.unstarting.pop(event.agent_id, None)
        case TaskCompleted():
            task = fleet.tasks.get(event.task_id)
            if task is not None and not task.terminal and task.attempt == event.attempt:
                _demand(state, task.spec.task_type).durations.add(event.ts, max(0.0, event.duration_s))
            state.moved.pop(event.task_id, None)
            state.unstarting.pop(event.agent_id, None)
        case AgentRegistered() | AgentDeregistered():
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
    apply_router_part(state.router, item)
    return state


# --- the history ---------------------------------------------------------------------------------


def _history(seed: int, tasks: int = 240) -> list[Recorded]:
    """``varied_events`` with breakers tripping, half-opening (assignments to the agent become
    probes, settled by the task lives' ends) and closing or reset, an agent registered late with a
    capability the tasks do not need, stalls, scale advice, incidents, and some moves made by the
    balancer (``REBALANCED``)."""
    rng = random.Random(seed)
    events: list[Event] = []
    for event in varied_events(tasks, seed=seed):
        if isinstance(event, TaskRequeued) and rng.random() < 0.5:
            event = msgspec.structs.replace(event, reason=REBALANCED)
        if isinstance(event, TaskSubmitted):
            event = msgspec.structs.replace(
                event,
                estimated_duration_s=rng.uniform(0.5, 3.0) if rng.random() < 0.2 else None,
                concurrency_key=rng.choice(("key-a", "key-b")) if rng.random() < 0.3 else None,
                affinity_key=rng.choice(("user-1", "user-2")) if rng.random() < 0.2 else None,
            )
        events.append(event)
    later = [e.task_id for e in events[int(0.6 * len(events)) :] if isinstance(e, TaskStarted)]
    """Tasks that start after the incidents below: their start settles them (``track_recovery``)."""
    target = next(e.task_id for e in events[int(0.6 * len(events)) :] if isinstance(e, TaskSubmitted))
    """A schedule fires it (below): its submission is noted (``apply_schedules``)."""
    agents = [f"agent-{n}" for n in range(6)]
    extra: list[tuple[float, Event]] = []
    for agent in agents[:4]:
        opened, half, closed = sorted(rng.uniform(0.05, 0.95) for _ in range(3))
        extra += [
            (opened, BreakerOpened(agent_id=agent, failure_rate=0.6, reason="failures", retry_after_ts=1.0)),
            (half, BreakerHalfOpened(agent_id=agent, probes_allowed=rng.randint(1, 4))),
            (
                closed,
                BreakerClosed(agent_id=agent, reason="probes ok")
                if rng.random() < 0.5
                else BreakerReset(agent_id=agent),
            ),
        ]
    extra += [
        (0.1, AgentRegistered(agent_id="agent-odd", capabilities={"other": 0.5}, capacity=3)),
        (0.3, AgentStalled(agent_id=agents[2], session="", received_seq=1, pending_seq=5, reason="behind")),
        (0.4, ScaleRecommended(scope="scale-review", capability="review", additional_agents=2)),
        (0.2, ScheduleCreated(scope="sched-hourly", interval_s=3600, task=ScheduledTask(task_type="review"))),
        (0.25, ScheduleFired(scope="sched-hourly", slot_ts=time.time() + 3600, target_id=target)),
        (0.5, AgentUnresponsive(agent_id=agents[5], in_flight=dict.fromkeys(later[:6], 0))),
        (0.55, AgentRecovered(agent_id=agents[5])),
        (0.56, FailureReported(scope="incident-1", failure_type="agent_error", agent_id=agents[1])),
        (0.57, RecoveryActionTaken(scope="incident-1", strategy="reassign", task_ids=later[6:12])),
        (0.8, ScaleRecommended(scope="scale-review", capability="review", additional_agents=0)),
    ]
    for at, event in sorted(extra, key=lambda pair: -pair[0]):  # from the end: earlier indexes stay put
        events.insert(int(at * len(events)), event)
    return recorded(events)


def _encoded(state: object) -> bytes:
    return msgspec.json.encode(state)


@pytest.mark.parametrize("seed", [1, 7, 23])
def test_recovery_keeps_the_same_state_after_every_event(seed: int) -> None:
    new, old = RecoveryState(), RecoveryState()
    history = _history(seed)
    for item in history:
        new = apply_recovery(new, item)
        old = old_recovery(old, item)
        assert _encoded(new) == _encoded(old), item
    assert old.breakers.breakers and old.outcomes.agents  # the history exercised them


@pytest.mark.parametrize("seed", [1, 7, 23])
def test_balancer_keeps_the_same_state_after_every_event(seed: int) -> None:
    new, old = BalancerState(), BalancerState()
    history = _history(seed)
    marked = cleared = 0
    for item in history:
        before = dict(old.unstarting)
        new = apply_balancer(new, item)
        old = old_balancer(old, item)
        assert _encoded(new) == _encoded(old), item
        marked += isinstance(item.event, TaskRequeued) and old.unstarting != before
        cleared += len(old.unstarting) < len(before)
    assert marked and cleared  # agents had unstarted work moved away, and later read their work
    assert old.moved or any(d.durations.sums(0.0).b for d in old.demand.values())
    assert old.scale and old.router.breakers.breakers and old.load.sums.sums(0.0).b > 0


@pytest.mark.parametrize("seed", [1, 7, 23])
def test_gateway_keeps_the_same_state_after_every_event(seed: int) -> None:
    new, old = GatewayState(), GatewayState()
    for item in _history(seed):
        new = apply_gateway(new, item)
        old = old_gateway(old, item)
        assert _encoded(new) == _encoded(old), item
    assert old.workflows.workflows and old.metrics.completions.sums(0.0).b > 0
    assert old.metrics.recovery.durations.buckets  # incidents settled by starts
    assert old.keys.affinity and old.keys.served  # assignments held and released slots
    assert old.schedules.schedules and not old.schedules.targets  # the fired target was submitted


@pytest.mark.parametrize("seed", [1, 7, 23])
def test_the_history_settles_probes(seed: int) -> None:
    """Half-open breakers got probes and task ends settled some (what ``_task_end_breakers``
    forwards): the comparisons above cover them."""
    settled = 0
    state = RecoveryState()
    for item in _history(seed):
        before = _encoded(state.breakers)
        state = apply_recovery(state, item)
        if not isinstance(item.event, TaskAssigned | BreakerEvent) and _encoded(state.breakers) != before:
            settled += 1
    assert settled > 0


def test_every_part_is_what_an_unrouted_type_gets() -> None:
    """A type the table does not name (an agent's cancel request, a workflow's events) goes through
    every part: the same state as the reference's."""
    history = _history(3, tasks=60)
    unrouted = [item for item in history if type(item.event) not in PARTS]
    assert unrouted
    new, old = BalancerState(), BalancerState()
    for item in history:
        new = apply_every_part(new, item)
        old = old_balancer(old, item)
    assert _encoded(new) == _encoded(old)
