"""The balancer's projection, kept by a pure apply.

* ``router``: of the router's own view, what a move, the scale advice and the balancer's figures
  read, folded by the router's own functions, so a move is judged by exactly the predictions the
  router makes (``learn`` on the same outcomes) among the agents it would consider (the fleet, the
  breakers, a hard affinity key's agent). Not kept, because no decision or figure of the
  balancer reads them (``apply_router_part``): the adaptive weights (they weigh a score's
  signals; a move reads no score, only the predicted quality, its uncertainty and the declared
  capability, ``decide._predicted``), the fleet's sorted queue (the scale advice counts the
  waiting tasks by their status when it is evaluated, every few seconds, rather than every
  submission, assignment and requeue sorting one in or out), each task's assignment records (the
  routing explanations: a copy of every ``task.assigned``'s breakdown and rejected candidates),
  and of the keys all but ``affinity`` (limits, slots, tokens). Those fields stay in the shape,
  empty;
* ``load``: load-balancing efficiency samples (``shared/domain/load_balance.py``);
* ``demand``: per task type, arrivals and completed durations per second (scale advice);
* ``moved``: how often each live task was moved already (bounded: finished tasks leave);
* ``unstarting``: the agents work was moved away from, unstarted, since they last started or
  ended an attempt (bounded by the fleet);
* ``scale``: the standing scale advice per capability, as last appended.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from shared.domain.breakers import apply_breakers, apply_task_end
from shared.domain.fleet import admits, apply_fleet
from shared.domain.load_balance import LoadWindow, sample_assignment
from shared.domain.routed_apply import apply_routed
from shared.domain.routing.keys import apply_affinity
from shared.domain.routing.performance import learn, outcome_of
from shared.domain.routing.view import RouterState
from shared.domain.windows import WindowSums
from shared.events import (
    AgentDeregistered,
    AgentDraining,
    AgentQuarantined,
    AgentRecovered,
    AgentRegistered,
    AgentStalled,
    AgentUnresponsive,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReset,
    ScaleRecommended,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskQueued,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded

REBALANCED = "rebalanced"
"""The reason of a ``task.requeued`` the balancer appends (an infrastructure failure: no budget used)."""


class TypeDemand(msgspec.Struct, kw_only=True):
    arrivals: WindowSums = msgspec.field(default_factory=WindowSums)
    """Tasks submitted (a = b = 1 each)."""
    estimates: WindowSums = msgspec.field(default_factory=WindowSums)
    """a: estimated durations summed; b: tasks that gave one."""
    durations: WindowSums = msgspec.field(default_factory=WindowSums)
    """a: durations of completed tasks summed; b: completed tasks."""


class BalancerState(msgspec.Struct, kw_only=True):
    router: RouterState = msgspec.field(default_factory=RouterState)
    load: LoadWindow = msgspec.field(default_factory=LoadWindow)
    demand: dict[str, TypeDemand] = {}
    moved: dict[str, int] = {}
    """task id -> times the balancer moved it."""
    unstarting: dict[str, float] = {}
    """agent id -> when the balancer last moved an attempt away from it unstarted. No move goes
    to such an agent until it starts or ends an attempt, or registers anew: emptied of the work it
    did not start, it looks idle, and work moved onto it would wait there again (two stalled
    agents would trade a task until its moves ran out, then it would wait for its timeout)."""
    scale: dict[str, ScaleRecommended] = {}


def _demand(state: BalancerState, task_type: str) -> TypeDemand:
    found = state.demand.get(task_type)
    if found is None:
        found = state.demand[task_type] = TypeDemand()
    return found


def apply_router_part(router: RouterState, recorded: Recorded) -> RouterState:
    """``routing.view.apply_admitted`` (an event the fleet ``admits``, asked by the caller) keeping
    only what the balancer reads (module docstring): outcomes learned before the fleet applies the
    event, as the router does, and the same fleet, breakers, performance and affinity after every
    event (``tests/unit/test_balancer_apply.py`` checks it against the router's own apply)."""
    fleet = router.fleet
    outcome = outcome_of(fleet, recorded)
    if outcome is not None:
        learn(router.performance, outcome)
    apply_fleet(fleet, recorded, queue=False, assignments=False)
    apply_breakers(router.breakers, recorded)
    apply_affinity(router.keys, fleet, recorded)
    return router


def apply_every_part(state: BalancerState, recorded: Recorded) -> BalancerState:
    """Balancer figures first (they read the fleet before the event), then the router's view: what
    ``apply_balancer`` does for a type it does not route."""
    fleet = state.router.fleet
    if not admits(fleet, recorded):
        return state
    sample_assignment(state.load, fleet, state.router.breakers, recorded)
    event = recorded.event
    match event:
        case TaskSubmitted():
            _arrival(state, recorded)
        case TaskStarted() | TaskAttemptFailed() | AgentRegistered() | AgentDeregistered():
            _reads_work(state, recorded)
        case TaskCompleted():
            _completion(state, recorded)
            _reads_work(state, recorded)
        case TaskRequeued():
            _requeue(state, recorded)
        case TaskFailed() | TaskCancelled():
            _end(state, recorded)
        case ScaleRecommended():
            _scale(state, recorded)
        case _:
            pass
    apply_router_part(state.router, recorded)  # admitted above, on the same fleet
    return state


# --- the parts, each one acting on what its type table routes to it --------------------------------


def _sample(state: BalancerState, recorded: Recorded) -> None:
    sample_assignment(state.load, state.router.fleet, state.router.breakers, recorded)


def _arrival(state: BalancerState, recorded: Recorded) -> None:
    event = recorded.event
    assert isinstance(event, TaskSubmitted)
    if event.task_id not in state.router.fleet.tasks:
        demand = _demand(state, event.task_type)
        demand.arrivals.add(event.ts, 1.0)
        if event.estimated_duration_s is not None:
            demand.estimates.add(event.ts, event.estimated_duration_s)


def _completion(state: BalancerState, recorded: Recorded) -> None:
    event = recorded.event
    assert isinstance(event, TaskCompleted)
    task = state.router.fleet.tasks.get(event.task_id)
    if task is not None and not task.terminal and task.attempt == event.attempt:
        _demand(state, task.spec.task_type).durations.add(event.ts, max(0.0, event.duration_s))
    state.moved.pop(event.task_id, None)


def _requeue(state: BalancerState, recorded: Recorded) -> None:
    event = recorded.event
    assert isinstance(event, TaskRequeued)
    task = state.router.fleet.tasks.get(event.task_id)
    accepted = task is not None and not task.terminal and event.attempt == task.attempt + 1
    if accepted and event.reason == REBALANCED:
        state.moved[event.task_id] = state.moved.get(event.task_id, 0) + 1
        if task is not None and task.agent_id is not None:
            state.unstarting[task.agent_id] = event.ts


def _reads_work(state: BalancerState, recorded: Recorded) -> None:
    """The agent reads its work again: it started or ended an attempt (a report the fleet admits),
    or registered anew (or left)."""
    if state.unstarting:
        event = recorded.event
        assert isinstance(
            event, TaskStarted | TaskCompleted | TaskAttemptFailed | AgentRegistered | AgentDeregistered
        )
        state.unstarting.pop(event.agent_id, None)


def _end(state: BalancerState, recorded: Recorded) -> None:
    event = recorded.event
    assert isinstance(event, TaskFailed | TaskCancelled)
    state.moved.pop(event.task_id, None)


def _scale(state: BalancerState, recorded: Recorded) -> None:
    event = recorded.event
    assert isinstance(event, ScaleRecommended)
    state.scale[event.capability] = event


def _learn(state: BalancerState, recorded: Recorded) -> None:
    """Before the fleet applies the event: it still says who held the attempt."""
    outcome = outcome_of(state.router.fleet, recorded)
    if outcome is not None:
        learn(state.router.performance, outcome)


def _fleet(state: BalancerState, recorded: Recorded) -> None:
    apply_fleet(state.router.fleet, recorded, queue=False, assignments=False)


def _breakers(state: BalancerState, recorded: Recorded) -> None:
    apply_breakers(state.router.breakers, recorded)


def _task_end_breakers(state: BalancerState, recorded: Recorded) -> None:
    apply_task_end(state.router.breakers, recorded)


def _affinity(state: BalancerState, recorded: Recorded) -> None:
    """After the fleet: it reads the assignment as applied."""
    apply_affinity(state.router.keys, state.router.fleet, recorded)


Part = Callable[[BalancerState, Recorded], None]

FLEET_ONLY: frozenset[type] = frozenset(
    {
        TaskQueued,
        TaskProgress,
        AgentDraining,
        AgentUnresponsive,
        AgentStalled,
        AgentRecovered,
        AgentQuarantined,
    }
)
"""Events (of exactly these types) only the fleet acts on: no figure counts them, none is an
outcome to learn from, and the breakers and the affinity have no case for them."""

PARTS: dict[type, tuple[Part, ...]] = {
    **{kind: (_fleet,) for kind in FLEET_ONLY},
    TaskSubmitted: (_arrival, _fleet),
    TaskAssigned: (_sample, _fleet, _breakers, _affinity),
    TaskStarted: (_reads_work, _fleet),
    TaskCompleted: (_completion, _reads_work, _learn, _fleet, _task_end_breakers),
    TaskAttemptFailed: (_reads_work, _learn, _fleet, _task_end_breakers),
    AgentRegistered: (_reads_work, _fleet),
    AgentDeregistered: (_reads_work, _fleet),
    TaskRequeued: (_requeue, _fleet, _task_end_breakers),
    TaskFailed: (_end, _fleet),
    TaskCancelled: (_end, _fleet, _task_end_breakers),
    BreakerOpened: (_breakers,),
    BreakerHalfOpened: (_breakers,),
    BreakerClosed: (_breakers,),
    BreakerReset: (_breakers,),
    ScaleRecommended: (_scale,),
}
"""Event type -> the parts that act on it, in ``apply_every_part``'s order: the load sample (an
assignment), the demand, moves and unstarting figures, what is learned of an outcome (a completion or an
attempt's failure), the fleet, the breakers (transitions, assignments, a probe's end), the affinity
(an assignment). A type not here goes through every part."""


def apply_balancer(state: BalancerState, recorded: Recorded) -> BalancerState:
    """``apply_every_part``, each event handed only to the parts that act on it
    (``tests/unit/test_apply_cost.py`` checks the state is the same, byte for byte)."""
    return apply_routed(state, recorded, PARTS, apply_every_part, state.router.fleet)


PROGRESS = TaskProgress.event_type()
SCALE_RECOMMENDED = ScaleRecommended.event_type()


def ignores_balancer(state: BalancerState, subject: str) -> bool:
    """Skipped undecoded: workflow events (neither the router's view nor the balancer's figures
    read them), a task's progress (a move waits for a start, which the agent reports before any
    progress; no figure reads the percentage) and every system event but the scale advice (the
    others are keys' limits, slots and tokens, which the view no longer keeps, or facts no
    decision reads; an optimize request comes through the work consumer, its answer is found by
    its scope's version). Still counted in their aggregate's version, so a move is appended
    against the very version of the task its plan saw, and advice against its scope's.

    Skipped rather than filtered out on the consumer. Only the workflows could be (no append of
    the balancer is guarded by a workflow's version; progress moves a task's, the system events a
    scope's), and a consumer with several filter subjects costs nats-server 2.15 about a hundred
    times more per message whenever it catches up (a restart, a rebuild) on a log where a subject
    holds several messages, as progress reports do: ``python -m services.cli.bench.read_cost
    --progress 2`` measured 318 us of server CPU per message for recovery's view so filtered, 3 us
    read whole (reader 20 and 14 us); at the end of the log, the same. Delivering the few messages
    skipped here costs less."""
    tokens = subject.split(".")
    if len(tokens) < 5:
        return False
    aggregate = tokens[2]
    if aggregate == "task":
        return tokens[4] == PROGRESS
    if aggregate == "system":
        return tokens[4] != SCALE_RECOMMENDED
    return aggregate == "workflow"


BALANCER_VIEW: ProjectionSpec[BalancerState] = ProjectionSpec(
    name="balancer",
    state_type=BalancerState,
    initial=BalancerState,
    apply=apply_balancer,
    revision=1,
    ignores=ignores_balancer,
)
"""Revision 1: the router part keeps no queue, assignment records nor keys but affinity
(``apply_router_part``); a snapshot of revision 0 holds them, and is rebuilt from the log."""
