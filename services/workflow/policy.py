"""What execution modes and optimization goals change in how a workflow is dispatched. Pure.

Execution mode: how many ready steps of one workflow are in flight at once.

* ``sequential``: one step at a time, in the goal's order.
* ``parallel``: every ready step as soon as its dependencies allow.
* ``adaptive`` (default): like parallel, but never more steps of one kind (task type plus required
  capabilities) in flight than the active agents able to run that kind have capacity (at least
  one). The surplus waits in the workflow, in the goal's order, instead of at the back of the
  router's queue: critical steps keep going first, a wide fan-out does not bury other work, and
  cancelling or adding steps still affects what has not started.
* The specification's ``mixed`` is parallel (parallelizable steps together, the others alone),
  ``optimized`` is adaptive, and ``fault_tolerant`` is adaptive with larger retry budgets (written
  into its steps when it is submitted: ``shared/domain/workflow_spec.py``).

In parallel and adaptive modes a step with ``parallelizable: false`` runs alone: it starts when
nothing else of its workflow is in flight, and steps after it in the goal's order wait until it
has ended (so it is never starved by a stream of parallel work). ``max_concurrent_tasks`` caps the
steps in flight in every mode.

Optimization goal: the order ready steps are taken in, and what their tasks ask of the router.

* ``minimize_time``: longest remaining chain first (critical-path list scheduling); steps with no
  slack are submitted one priority level higher; tasks ask for ``load_balanced`` routing (the
  agent that can start soonest).
* ``maximize_quality``: declared priority, then declaration order; tasks ask for
  ``performance_optimized`` routing (the agent with the best predicted outcome).
* ``maximize_throughput``: shortest estimated step first (the most steps finished soonest), then
  declared priority; tasks ask for ``load_balanced`` routing.
* ``balance_all`` (default): declared priority, then longest remaining chain; tasks use the
  router's default strategy.
* ``minimize_risk`` is maximize_quality (the predicted outcome includes the success probability),
  ``minimize_cost`` is balance_all (Hive has no price per agent: a task costs its agent's time,
  which the default routing already spends on the agents predicted to do best).

Resource allocation strategy: when not ``optimized`` (the goal decides), the routing strategy the
tasks ask for (``RESOURCE_ROUTING``); ``priority_based`` instead takes ready steps by declared
priority first, whatever the goal.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.domain.fleet import FleetState
from shared.domain.workflows import StepView
from shared.events import (
    PRIORITY_RANK,
    ExecutionMode,
    OptimizationGoal,
    Priority,
    ResourceAllocation,
    RoutingStrategy,
)

Kind = tuple[str, tuple[str, ...]]
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "critical")

GOAL_ALIASES: dict[OptimizationGoal, OptimizationGoal] = {
    "minimize_risk": "maximize_quality",
    "minimize_cost": "balance_all",
}
MODE_ALIASES: dict[ExecutionMode, ExecutionMode] = {
    "mixed": "parallel",
    "optimized": "adaptive",
    "fault_tolerant": "adaptive",
}

ROUTING_BY_GOAL: dict[str, RoutingStrategy | None] = {
    "minimize_time": "load_balanced",
    "maximize_quality": "performance_optimized",
    "maximize_throughput": "load_balanced",
    "balance_all": None,
}

RESOURCE_ROUTING: dict[ResourceAllocation, RoutingStrategy] = {
    "greedy": "capability_first",
    "balanced": "load_balanced",
    "performance_weighted": "performance_optimized",
    "adaptive_learning": "adaptive",
}
"""Resource allocation strategies that choose the routing (``optimized``, ``priority_based``: the goal's)."""


def goal_of(goal: OptimizationGoal) -> OptimizationGoal:
    return GOAL_ALIASES.get(goal, goal)


def dispatch_mode(mode: ExecutionMode) -> ExecutionMode:
    """sequential, parallel or adaptive: how the mode dispatches."""
    return MODE_ALIASES.get(mode, mode)


def order_key(
    goal: OptimizationGoal, step: StepView, bottom_level: float, allocation: ResourceAllocation = "optimized"
) -> tuple[float, float, int]:
    """Sort key of a ready step: smaller goes first."""
    goal = goal_of(goal)
    rank = float(PRIORITY_RANK[step.spec.priority])
    if allocation == "priority_based":
        return (-rank, -bottom_level, step.index)
    if goal == "minimize_time":
        return (-bottom_level, -rank, step.index)
    if goal == "maximize_quality":
        return (-rank, 0.0, step.index)
    if goal == "maximize_throughput":
        return (step.spec.estimated_duration_minutes, -rank, step.index)
    return (-rank, -bottom_level, step.index)


def task_priority(goal: OptimizationGoal, step: StepView, critical: bool) -> Priority:
    """The priority the step's task is submitted with."""
    declared = step.spec.priority
    if goal_of(goal) != "minimize_time" or not critical:
        return declared
    return PRIORITIES[min(PRIORITY_RANK[declared] + 1, len(PRIORITIES) - 1)]


def routing_strategy(
    goal: OptimizationGoal, allocation: ResourceAllocation = "optimized"
) -> RoutingStrategy | None:
    """What the step's task asks of the router: the allocation strategy's choice, else the goal's."""
    return RESOURCE_ROUTING.get(allocation) or ROUTING_BY_GOAL[goal_of(goal)]


def kind_of(step: StepView) -> Kind:
    """Steps of one kind fit the same agents."""
    return (step.spec.task_type, tuple(sorted(set(step.spec.required_capabilities))))


def capable_capacity(fleet: FleetState, kind: Kind) -> int:
    """Total capacity of the active agents offering everything a kind of step needs."""
    needed = {kind[0], *kind[1]}
    return sum(
        agent.capacity
        for agent in fleet.agents.values()
        if agent.status == "active" and needed.issubset(agent.capabilities)
    )


def select(
    mode: ExecutionMode,
    ready: list[StepView],
    in_flight: list[StepView],
    width_of: Callable[[Kind], int],
    max_in_flight: int | None = None,
) -> list[StepView]:
    """Which of the ready steps (already in the goal's order) to dispatch now."""
    if max_in_flight is not None:
        room = max(0, max_in_flight - len(in_flight))
        return select(mode, ready, in_flight, width_of)[:room]
    mode = dispatch_mode(mode)
    if mode == "sequential":
        return ready[:1] if not in_flight else []
    if any(not step.spec.parallelizable for step in in_flight):
        return []
    chosen: list[StepView] = []
    load: dict[Kind, int] = {}
    for step in in_flight:
        load[kind_of(step)] = load.get(kind_of(step), 0) + 1
    for step in ready:
        if not step.spec.parallelizable:
            if not in_flight and not chosen:
                chosen.append(step)
            break
        kind = kind_of(step)
        if mode == "adaptive" and load.get(kind, 0) >= max(1, width_of(kind)):
            continue
        chosen.append(step)
        load[kind] = load.get(kind, 0) + 1
    return chosen
