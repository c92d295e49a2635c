"""The balancer's projection, kept by a pure apply.

* ``router``: the router's own view (fleet, breakers, learned performance), folded by the
  router's apply, so a move is judged by exactly the predictions the router makes; but for the
  adaptive weights, left unlearned: they weigh a score's signals, and a move reads no score, only
  the predicted quality, its uncertainty and the declared capability (``decide._predicted``),
  which no weight enters. Not learning them saves every outcome's ``observe``; a snapshot made
  when they were learned still loads (the same shape), its weights unread;
* ``load``: load-balancing efficiency samples (``shared/domain/load_balance.py``);
* ``demand``: per task type, arrivals and completed durations per second (scale advice);
* ``moved``: how often each live task was moved already (bounded: finished tasks leave);
* ``scale``: the standing scale advice per capability, as last appended.
"""

from __future__ import annotations

import msgspec

from shared.domain.fleet import admits
from shared.domain.load_balance import LoadWindow, sample_assignment
from shared.domain.routing.view import RouterState, apply_admitted
from shared.domain.windows import WindowSums
from shared.events import (
    ScaleRecommended,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskRequeued,
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
    scale: dict[str, ScaleRecommended] = {}


def _demand(state: BalancerState, task_type: str) -> TypeDemand:
    found = state.demand.get(task_type)
    if found is None:
        found = state.demand[task_type] = TypeDemand()
    return found


def apply_balancer(state: BalancerState, recorded: Recorded) -> BalancerState:
    """Balancer figures first (they read the fleet before the event), then the router's view."""
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
        case TaskRequeued():
            task = fleet.tasks.get(event.task_id)
            accepted = task is not None and not task.terminal and event.attempt == task.attempt + 1
            if accepted and event.reason == REBALANCED:
                state.moved[event.task_id] = state.moved.get(event.task_id, 0) + 1
        case TaskFailed() | TaskCancelled():
            state.moved.pop(event.task_id, None)
        case ScaleRecommended():
            state.scale[event.capability] = event
        case _:
            pass
    apply_admitted(state.router, recorded, adaptive=False)  # admitted above, on the same fleet
    return state


PROGRESS = TaskProgress.event_type()


def ignores_balancer(state: BalancerState, subject: str) -> bool:
    """Skipped undecoded: workflow events (neither the router's view nor the balancer's figures
    read them) and a task's progress (a move waits for a start, which the agent reports before any
    progress; no figure reads the percentage). Still counted in their aggregate's version, so a
    move is appended against the very version of the task its plan saw.

    Skipped rather than filtered out on the consumer: a consumer with several filter subjects
    costs the server, and this reader, more per message (measured: twice the reader's CPU on a log
    with progress reports) than delivering the few messages skipped here."""
    tokens = subject.split(".")
    if len(tokens) < 5:
        return False
    return tokens[2] == "workflow" or (tokens[2] == "task" and tokens[4] == PROGRESS)


BALANCER_VIEW: ProjectionSpec[BalancerState] = ProjectionSpec(
    name="balancer",
    state_type=BalancerState,
    initial=BalancerState,
    apply=apply_balancer,
    ignores=ignores_balancer,
)
