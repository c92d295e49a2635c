"""Routing accuracy from an event log: was each task given to (nearly) the best agent free then?

The log is replayed through the fleet view up to the sequence each assignment was decided at
(``decided_at_seq``: what the router had seen; else just before the assignment), so the agents
that were free then (active, with room, offering the task type) are known, and the hidden world
says each one's true expected quality. A routing is *accurate* when the chosen agent's is at
least 95% of the best free agent's. At the same moments the log also tells what two simple
routers would have picked among the same free agents: a uniformly random one (its expected
quality is the mean) and the least-loaded one (the router Hive had before learning).

Accurate is "as good as the best free agent, give or take 5%": when two agents are truly equal
(or within 5% of each other), choosing either is right, so spreading work over equals costs no
accuracy. The same log also gives the load-balancing efficiency of those decisions, by the code
behind ``GET /orchestration/metrics`` over the measured span (README, Balancer): evenness where
the agents differ is not the goal, concentrating on the better ones is; among equal agents
(``make_equal_world``) it is all there is to judge. Pure: events in, figures out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.cli.bench.routing_world import World
from shared.domain.fleet import AgentView, FleetState, apply_fleet
from shared.domain.load_balance import accepted_assignment, group_loads
from shared.domain.performance_metrics import MetricsView, apply_metrics_view, figures
from shared.events import TaskAssigned, TaskCompleted
from shared.recorded import Recorded

TOLERANCE = 0.05
"""Accurate: within 5% of the best free agent's true expected quality."""


@dataclass
class RoutingFigures:
    decisions: int
    measured: int
    accurate: int
    router_quality: float
    best_free_quality: float
    random_quality: float
    least_loaded_quality: float
    reported_quality: float
    measured_at_append: int = 0
    accurate_at_append: int = 0
    """Judged against the agents free when the assignment reached the log (the router may not
    have seen the latest completions yet): a stricter figure, shown beside the main one."""
    target: float = 0.99
    efficiency: float | None = None
    """Load-balancing efficiency over the measured decisions (None: nothing in flight)."""
    utilisation: float = float("nan")
    """Mean in flight / capacity of the agents able to take each measured task, at its assignment."""

    @property
    def accuracy(self) -> float:
        return self.accurate / self.measured if self.measured else float("nan")

    @property
    def accuracy_at_append(self) -> float:
        return self.accurate_at_append / self.measured_at_append if self.measured_at_append else float("nan")

    @property
    def met(self) -> bool:
        return self.measured > 0 and self.accuracy >= self.target


def _least_loaded(free: list[AgentView]) -> AgentView:
    return min(free, key=lambda a: (a.utilisation, a.load, a.last_assigned_seq, a.agent_id))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _accepted_assignments(
    log: list[Recorded], world: World, *, at_decision: bool
) -> list[tuple[int, TaskAssigned]]:
    """Assignments the fleet view took (bench tasks), each with the last sequence it is judged after:
    the router's view when it decided (`at_decision`), else the log just before the assignment."""
    fleet = FleetState()
    accepted: list[tuple[int, TaskAssigned]] = []
    for recorded in log:
        event = recorded.event
        if isinstance(event, TaskAssigned) and event.task_id in world.tasks:
            task = fleet.tasks.get(event.task_id)
            if task is not None and task.status in ("pending", "queued"):
                seen = recorded.seq - 1
                if at_decision and 0 < event.decided_at_seq < recorded.seq:
                    seen = event.decided_at_seq
                accepted.append((seen, event))
        apply_fleet(fleet, recorded)
    accepted.sort(key=lambda pair: pair[0])
    return accepted


class _Judged:
    def __init__(self) -> None:
        self.accurate = 0
        self.chosen: list[float] = []
        self.best: list[float] = []
        self.random: list[float] = []
        self.least_loaded: list[float] = []
        self.tasks: set[str] = set()

    def judge(self, fleet: FleetState, event: TaskAssigned, world: World) -> None:
        free = [
            agent
            for agent in fleet.agents.values()
            if agent.status == "active"
            and agent.free > 0
            and agent.agent_id in world.agents
            and world.capable(agent.agent_id, event.task_id)
        ]
        if not free:
            return
        qualities = {a.agent_id: world.true_quality(a.agent_id, event.task_id) for a in free}
        best = max(qualities.values())
        mine = world.true_quality(event.agent_id, event.task_id)
        self.accurate += mine >= (1.0 - TOLERANCE) * best
        self.chosen.append(mine)
        self.best.append(best)
        self.random.append(_mean(list(qualities.values())))
        self.least_loaded.append(qualities[_least_loaded(free).agent_id])
        self.tasks.add(event.task_id)


def _judge(
    events: list[Recorded], decisions: list[tuple[int, TaskAssigned]], world: World, warmup: int
) -> _Judged:
    """Replay the fleet view and judge each decision once the log has reached its sequence."""
    fleet = FleetState()
    judged = _Judged()
    position = 0
    for index in range(len(events) + 1):
        reached = events[index].seq if index < len(events) else None
        while position < len(decisions) and (reached is None or decisions[position][0] < reached):
            event = decisions[position][1]
            position += 1
            if position > warmup:
                judged.judge(fleet, event, world)
        if index < len(events):
            apply_fleet(fleet, events[index])
    return judged


def _evenness(events: list[Recorded], world: World, warmup: int) -> tuple[float | None, float]:
    """Efficiency and mean utilisation from the `warmup`-th accepted bench assignment to the end."""
    view = MetricsView()
    utilisation: list[float] = []
    seen = 0
    since: float | None = None
    for recorded in events:
        event = recorded.event
        if (
            isinstance(event, TaskAssigned)
            and event.task_id in world.tasks
            and accepted_assignment(view.fleet, event)
        ):
            seen += 1
            if seen > warmup:
                since = event.ts if since is None else since
                spec = view.fleet.tasks[event.task_id].spec
                loads = group_loads(view.fleet, view.breakers, [spec.task_type], {event.agent_id: 1})
                capacity = sum(slots for _load, slots in loads)
                if capacity:
                    utilisation.append(sum(load for load, _slots in loads) / capacity)
        apply_metrics_view(view, recorded)
    if since is None or not events:
        return None, float("nan")
    until = max(events[-1].event.ts, since)
    found = figures(view.metrics, now=until, window_s=until - since)  # whole seconds of event time
    return found.load_balancing_efficiency.value, _mean(utilisation)


def routing_figures(log: Iterable[Recorded], world: World, warmup: int) -> RoutingFigures:
    """Accuracy, mean true quality and evenness of the decisions after the first `warmup` assignments."""
    events = list(log)
    decisions = _accepted_assignments(events, world, at_decision=True)
    judged = _judge(events, decisions, world, warmup)
    strict = _judge(events, _accepted_assignments(events, world, at_decision=False), world, warmup)
    efficiency, utilisation = _evenness(events, world, warmup)
    reported = [
        r.event.quality
        for r in events
        if isinstance(r.event, TaskCompleted)
        and r.event.task_id in judged.tasks
        and r.event.quality is not None
    ]
    return RoutingFigures(
        decisions=len(decisions),
        measured=len(judged.chosen),
        accurate=judged.accurate,
        router_quality=_mean(judged.chosen),
        best_free_quality=_mean(judged.best),
        random_quality=_mean(judged.random),
        least_loaded_quality=_mean(judged.least_loaded),
        reported_quality=_mean(reported),
        measured_at_append=len(strict.chosen),
        accurate_at_append=strict.accurate,
        efficiency=efficiency,
        utilisation=utilisation,
    )
