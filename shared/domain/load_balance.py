"""Load-balancing efficiency: how much of the work in flight sits beyond the most even placement. Pure.

Among a group of agents, each agent's **fair share** of the ``W`` tasks in flight is its capacity's
share of them, ``W x capacity / total capacity``, rounded down or up (work comes in whole tasks, so
20 agents cannot share 10 tasks more evenly than one each for ten of them). The tasks an agent holds
above its fair share are **misplaced**: the fewest tasks that would have to move to reach the most
even placement. Then

    efficiency = 1 - misplaced / W

1.0 when the load is as even as whole tasks allow, 0.0 when all of it sits where none should.
Over a window, the misplaced and in-flight counts of every sample are summed first (a busy moment
weighs more than a quiet one): ``1 - sum(misplaced) / sum(W)``.

A **sample** is taken when an assignment is stored (at most one per ``MIN_SAMPLE_GAP_S`` of event
time), over the agents that could have taken that task: active, circuit breaker not open, offering
its type and every required capability. That is the placement the router (and the balancer's
moves) just produced, judged among the agents that were real alternatives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from shared.domain.breakers import BreakersState
from shared.domain.fleet import WAITING, AgentView, FleetState
from shared.domain.windows import WindowSums
from shared.events import TaskAssigned
from shared.recorded import Recorded

MIN_SAMPLE_GAP_S: Final = 0.01
"""At most 100 samples per second of event time: sampling costs one pass over the agents."""


def misplaced_work(loads: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """``(in flight, misplaced)`` for agents given as ``(tasks in flight, capacity)``."""
    pairs = [(load, capacity) for load, capacity in loads if capacity > 0]
    total = sum(load for load, _ in pairs)
    capacity_total = sum(capacity for _, capacity in pairs)
    return _misplaced(pairs, total, capacity_total)


def _misplaced(pairs: list[tuple[int, int]], total: int, capacity_total: int) -> tuple[int, int]:
    """``misplaced_work`` of `pairs` (capacities above 0) whose loads and capacities sum to these."""
    if total <= 0 or capacity_total <= 0:
        return max(total, 0), 0
    excess = 0
    rounded_down = 0
    could_round_up = 0
    for load, capacity in pairs:
        share, remainder = divmod(total * capacity, capacity_total)
        rounded_down += share
        if load > share:
            excess += load - share
            if remainder:
                could_round_up += 1
    spare = total - rounded_down
    """Tasks left once every share is rounded down: that many agents get one more."""
    return total, excess - min(spare, could_round_up)


def efficiency(loads: Iterable[tuple[int, int]]) -> float | None:
    """``1 - misplaced / in flight`` (None when nothing is in flight)."""
    total, misplaced = misplaced_work(loads)
    return None if total == 0 else 1.0 - misplaced / total


def takes_work(agent: AgentView, breakers: BreakersState) -> bool:
    """Active, and its circuit breaker is not open."""
    if agent.status != "active":
        return False
    breaker = breakers.breakers.get(agent.agent_id)
    return breaker is None or breaker.status != "open"


def capable(agent: AgentView, needed: Iterable[str]) -> bool:
    return all(name in agent.capabilities for name in needed)


def group_loads(
    fleet: FleetState,
    breakers: BreakersState,
    needed: list[str] | None = None,
    shifts: Mapping[str, int] | None = None,
) -> list[tuple[int, int]]:
    """``(load, capacity)`` of the agents that take work (and offer `needed`), loads shifted by `shifts`."""
    shifts = shifts or {}
    return [
        (agent.load + shifts.get(agent.agent_id, 0), agent.capacity)
        for agent in fleet.agents.values()
        if takes_work(agent, breakers) and (needed is None or capable(agent, needed))
    ]


def fleet_efficiency(
    fleet: FleetState, breakers: BreakersState, shifts: Mapping[str, int] | None = None
) -> float | None:
    """Efficiency right now over every agent that takes work (`shifts`: planned moves applied)."""
    return efficiency(group_loads(fleet, breakers, None, shifts))


class LoadWindow(msgspec.Struct, kw_only=True):
    """Samples of (misplaced, in flight) per second of event time."""

    sums: WindowSums = msgspec.field(default_factory=WindowSums)
    last_sample_ts: float = 0.0

    def efficiency(self, since_ts: float, until_ts: float = math.inf) -> tuple[float | None, int]:
        """Efficiency over the samples from `since_ts` to `until_ts`, and the tasks in flight they summed."""
        sums = self.sums.sums(since_ts, until_ts)
        if sums.b <= 0:
            return None, 0
        return 1.0 - sums.a / sums.b, int(sums.b)


def accepted_assignment(fleet: FleetState, event: TaskAssigned) -> bool:
    """Whether the fleet view, not having applied `event` yet, will take it (as ``apply_fleet`` does)."""
    task = fleet.tasks.get(event.task_id)
    return (
        task is not None
        and not task.terminal
        and task.attempt == event.attempt
        and task.status in WAITING
        and event.agent_id in fleet.agents
    )


def sample_assignment(
    window: LoadWindow, fleet: FleetState, breakers: BreakersState, recorded: Recorded
) -> None:
    """Take a sample at a stored assignment, read against the fleet *before* it applies the event.

    The agents that could have taken the task (``group_loads`` with the chosen one's load shifted
    by the assignment) are gathered and summed in one pass over the fleet: a sample is taken at
    most a hundred times a second of event time, each over every agent."""
    event = recorded.event
    if not isinstance(event, TaskAssigned) or event.ts - window.last_sample_ts < MIN_SAMPLE_GAP_S:
        return
    if not accepted_assignment(fleet, event):
        return
    spec = fleet.tasks[event.task_id].spec
    needed = {spec.task_type, *spec.required_capabilities}
    chosen_id = event.agent_id
    open_breakers = {agent_id for agent_id, view in breakers.breakers.items() if view.status == "open"}
    pairs: list[tuple[int, int]] = []
    total = capacity_total = 0
    chosen_counted = False
    for agent in fleet.agents.values():
        if (
            agent.status != "active"
            or agent.agent_id in open_breakers
            or not needed <= agent.capabilities.keys()
        ):
            continue
        load = len(agent.in_flight)
        if agent.agent_id == chosen_id:
            load += 1
            chosen_counted = True
        if agent.capacity > 0:
            pairs.append((load, agent.capacity))
            total += load
            capacity_total += agent.capacity
    if not chosen_counted:  # the router knew better (a probe...): count it
        chosen = fleet.agents[chosen_id]
        if chosen.capacity > 0:
            pairs.append((len(chosen.in_flight) + 1, chosen.capacity))
            total += len(chosen.in_flight) + 1
            capacity_total += chosen.capacity
    total, misplaced = _misplaced(pairs, total, capacity_total)
    if total == 0:
        return
    window.last_sample_ts = event.ts
    window.sums.add(event.ts, misplaced, total)
