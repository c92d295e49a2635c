"""What splitting the fleet among routers would cost in routing accuracy: a model, not the product.

Hive's routers each read the whole fleet (README, "Why this design"), so an added router adds a
copy of that reading. The alternative, routers that each own a partition of the fleet (Temporal's
task-queue partitions, Hatchet's scheduler partitions), reads less per router but decides each
task among one partition's agents. This runs the routing benchmark's hidden world and task stream
through `partitions` pure routers, each reading only its own agents' events and the tasks placed
with it, and writes one log in time order, so ``routing_figures`` judges every assignment against
the best agent free in the *whole* fleet at that moment.

How a task finds its partition (``placement``):

* ``home``: its own partition (a stable hash of its id, as a subject-mapped ``partition()`` would
  place it); sent on only when no agent there offers its type at all. Nothing crosses partitions.
* ``offer``: every partition says what its router would decide for the task now and the best
  offer (highest score among those that would assign) takes it; when none would, it waits in a
  pool every partition looks at when one of its slots frees (as a held task is anyone's today).
  This is the ceiling of forwarding: offers as fresh as a request to every router per task.
* ``summary``: what a deployment could afford. Every ``summary_s`` each partition tells the others
  what it would offer a task of each type and preferred style (a task with the middle of every
  other trait) and how many slots its agents offering the type have free; a task goes to the best
  such offer with slots left (the placer counts its own sends against them), else waits in the pool
  as above. An offer gone stale holds the task where it went until a slot frees there.

Agents are dealt to partitions in turn (sorted by id), so each holds about the same capacity.
One partition is the router alone: ``routing_sim.simulate`` runs that. Deterministic for a seed;
pure (no NATS).
"""

from __future__ import annotations

import heapq
import random
import zlib
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from services.cli.bench.routing_world import STYLES, HiddenAgent, World
from services.router.decide import Assign, Decision, Expire, Hold, next_decision, route_task
from shared.domain.fleet import FleetState, TaskView, apply_fleet
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.view import RouterState, apply_router
from shared.events import (
    AgentRegistered,
    AnyEvent,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskProfile,
    TaskQueued,
    TaskSubmitted,
)
from shared.recorded import Recorded

Placement = Literal["home", "offer", "summary"]
PLACEMENTS: tuple[Placement, ...] = ("home", "offer", "summary")
SUMMARY_S = 0.1
"""How often each partition tells the others what it would offer (``summary`` placement)."""
RELOOK_S = 1.0
"""While tasks wait in the pool, how often every router looks at them (a slot may have freed
unseen: a stale summary sent none there)."""


@dataclass
class PartitionRun:
    """The log of a partitioned run and what it says about the partitions."""

    log: list[Recorded]
    agents_per_partition: list[int]
    views: list[RouterState] = field(default_factory=list)
    """Each partition's router view at the end: its agents and the tasks placed with it, no more."""
    forwarded: int = 0
    """Tasks decided outside their home partition (``home``: no agent there offers the type;
    ``offer``, ``summary``: another partition offered more, or the task waited in the pool)."""
    pooled: int = 0
    """Tasks no partition would take on arrival (``offer``, ``summary``), placed from the pool."""
    unassigned: list[str] = field(default_factory=list)
    """Tasks never assigned: none unless no agent offers their type (the run goes on until every
    other task is done)."""


def task_partition(task_id: str, partitions: int) -> int:
    """A task's home partition: a stable hash of its id (CRC-32), as deterministic as NATS's
    subject-mapping ``partition()``."""
    return zlib.crc32(task_id.encode()) % partitions


def deal_agents(agent_ids: list[str], partitions: int) -> dict[str, int]:
    """Agent -> partition, dealt in turn in id order (equal shares of a fleet of equal agents)."""
    return {agent_id: index % partitions for index, agent_id in enumerate(sorted(agent_ids))}


def registration(agent: HiddenAgent) -> AgentRegistered:
    """How a hidden agent registers: what it declares, not its true skill."""
    return AgentRegistered(
        agent_id=agent.agent_id,
        capabilities=agent.capabilities,
        persona=agent.persona,
        capacity=agent.capacity,
        session="sim",
    )


def completion(
    world: World, task_id: str, agent_id: str, attempt: int, rng: random.Random, work_s: float
) -> TaskCompleted:
    """An agent's report of a task done, with a quality drawn from its hidden skill."""
    return TaskCompleted(
        task_id=task_id,
        agent_id=agent_id,
        attempt=attempt,
        quality=world.reported_quality(agent_id, task_id, rng),
        duration_s=work_s,
    )


def decision_event(decision: Decision, seen_seq: int) -> AnyEvent | None:
    """What the router appends for `decision`, made on a view that had read `seen_seq` (None for
    the decisions of keys, which the benchmark's tasks have none of)."""
    if isinstance(decision, Assign):
        return TaskAssigned(
            agent_id=decision.agent_id,
            task_id=decision.task_id,
            attempt=decision.attempt,
            strategy=decision.strategy,
            score=decision.score,
            breakdown=decision.breakdown,
            rejected=decision.rejected,
            explanation=decision.explanation,
            decided_at_seq=seen_seq,
        )
    if isinstance(decision, Hold):
        return TaskQueued(
            task_id=decision.task_id, attempt=decision.attempt, reason=decision.reason, detail=decision.detail
        )
    if isinstance(decision, Expire):
        return TaskFailed(
            task_id=decision.task_id,
            attempt=decision.attempt,
            error=decision.error,
            failure_type="deadline_exceeded",
        )
    return None


class _Partitioned:
    """One log in time order, and a router view per partition reading only its part of it."""

    def __init__(self, partitions: int) -> None:
        self.records: list[Recorded] = []
        self.views = [RouterState() for _ in range(partitions)]

    def append(self, event: AnyEvent, ts: float, partition: int | None) -> Recorded:
        """Store `event`; the view of `partition` (None: none yet) applies it."""
        stamped = msgspec.structs.replace(event, ts=ts)
        recorded = Recorded(len(self.records) + 1, stamped.subject, stamped)
        self.records.append(recorded)
        if partition is not None:
            apply_router(self.views[partition], recorded)
        return recorded


def _task_view(recorded: Recorded) -> TaskView:
    """The view a router would keep of a submission alone (what an offer is worked out on)."""
    scratch = FleetState()
    apply_fleet(scratch, recorded)
    assert isinstance(recorded.event, TaskSubmitted)
    return scratch.tasks[recorded.event.task_id]


@dataclass
class _Summary:
    """What one partition offers, as of its last word: (task type, style) -> score, and free slots
    per task type (counted down by each task sent to it since)."""

    scores: dict[tuple[str, str | None], float]
    room: dict[str, int]


def _summarise(view: RouterState, now: float, config: RoutingConfig | None) -> _Summary:
    """What `view`'s router offers each task type its agents offer, for each preferred style."""
    scores: dict[tuple[str, str | None], float] = {}
    room: dict[str, int] = {}
    for agent in view.fleet.agents.values():
        for task_type in agent.capabilities:
            room[task_type] = room.get(task_type, 0) + max(0, agent.capacity - len(agent.in_flight))
    for task_type in room:
        for style in (*STYLES, None):
            probe = TaskSubmitted(
                task_id=f"probe-{task_type}-{style}",
                task_type=task_type,
                profile=TaskProfile(
                    preferred_cognitive_style=style, creativity_requirements=0.5, analytical_depth=0.5
                ),
            )
            decision = route_task(view, _task_view(Recorded(0, probe.subject, probe)), now, config)
            if isinstance(decision, Assign):
                scores[(task_type, style)] = decision.score
    return _Summary(scores, room)


def _has_room(view: RouterState) -> bool:
    return any(agent.capacity > len(agent.in_flight) for agent in view.fleet.agents.values())


def simulate_partitioned(
    world: World,
    tasks: list[TaskSubmitted],
    *,
    partitions: int,
    placement: Placement,
    rate: float,
    work_s: float,
    jitter: float = 0.3,
    config: RoutingConfig | None = None,
    seed: int = 7,
    summary_s: float = SUMMARY_S,
) -> PartitionRun:
    """Run `tasks` through `partitions` pure routers, each owning a share of the fleet."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    rng = random.Random(seed)
    log = _Partitioned(partitions)
    owner = deal_agents(list(world.agents), partitions)
    offered: list[set[str]] = [set() for _ in range(partitions)]
    for agent in world.agents.values():
        log.append(registration(agent), 0.0, owner[agent.agent_id])
        offered[owner[agent.agent_id]].update(agent.capabilities)
    run = PartitionRun(log.records, [list(owner.values()).count(p) for p in range(partitions)], log.views)
    pool: dict[str, Recorded] = {}
    """Submissions no partition could take yet (``offer``), oldest first."""
    agenda: list[tuple[float, int, str, str, int]] = []
    for index, task in enumerate(tasks):
        heapq.heappush(agenda, (index / rate, index, task.task_id, "", 0))
    by_id = {task.task_id: task for task in tasks}
    order = len(tasks)

    def place(recorded: Recorded, partition: int) -> None:
        event = recorded.event
        assert isinstance(event, TaskSubmitted)
        run.forwarded += partition != task_partition(event.task_id, partitions)
        apply_router(log.views[partition], recorded)

    def best_offer(recorded: Recorded, among: range | list[int], now: float) -> int | None:
        view = _task_view(recorded)
        best: tuple[float, int] | None = None
        for partition in among:
            decision = route_task(log.views[partition], view, now, config)
            if isinstance(decision, Assign) and (best is None or decision.score > best[0]):
                best = (decision.score, partition)
        return None if best is None else best[1]

    summaries: list[_Summary] = []
    summarised_at = -1.0

    def from_summaries(task: TaskSubmitted, now: float) -> int | None:
        nonlocal summaries, summarised_at
        if not summaries or now - summarised_at >= summary_s:
            summaries = [_summarise(view, now, config) for view in log.views]
            summarised_at = now
        key = (task.task_type, task.profile.preferred_cognitive_style)
        best: tuple[float, int] | None = None
        for partition, summary in enumerate(summaries):
            score = summary.scores.get(key)
            room = summary.room.get(task.task_type, 0)
            if score is not None and room > 0 and (best is None or score > best[0]):
                best = (score, partition)
        if best is None:
            return None
        summaries[best[1]].room[task.task_type] -= 1
        return best[1]

    def decide(partition: int, now: float) -> None:
        nonlocal order
        view = log.views[partition]
        while (decision := next_decision(view, now, (), config)) is not None:
            event = decision_event(decision, len(log.records))
            if event is None:
                continue
            log.append(event, now, partition)
            if isinstance(decision, Assign):
                done = now + work_s * (1.0 + rng.uniform(-jitter, jitter))
                order += 1
                heapq.heappush(agenda, (done, order, decision.task_id, decision.agent_id, decision.attempt))

    def serve_pool(partition: int, now: float) -> None:
        """A slot may have freed in `partition`: it takes the oldest waiting task it would assign
        now, then the next, while it has room."""
        for pooled_id in list(pool):
            if not _has_room(log.views[partition]):
                return
            if best_offer(pool[pooled_id], [partition], now) is None:
                continue
            place(pool.pop(pooled_id), partition)
            decide(partition, now)

    def complete(task_id: str, agent_id: str, attempt: int, now: float) -> None:
        partition = owner[agent_id]
        log.append(completion(world, task_id, agent_id, attempt, rng, work_s), now, partition)
        decide(partition, now)
        serve_pool(partition, now)

    relooking = False

    def relook_soon(now: float) -> None:
        """While tasks wait in the pool, every router looks at them each second (as the router
        looks at its queue each second while work waits)."""
        nonlocal order, relooking
        if pool and not relooking:
            order += 1
            heapq.heappush(agenda, (now + RELOOK_S, order, "", "", 0))
            relooking = True

    while agenda:
        now, _order, task_id, agent_id, attempt = heapq.heappop(agenda)
        if not task_id:
            relooking = False
            waiting = len(pool)
            for partition in range(partitions):
                serve_pool(partition, now)
            if agenda or len(pool) < waiting:  # else nothing will ever change: they wait for good
                relook_soon(now)
            continue
        if not agent_id:
            recorded = log.append(by_id[task_id], now, None)
            task_type = by_id[task_id].task_type
            if placement == "home":
                home = task_partition(task_id, partitions)
                chosen = next(
                    (p for p in [home, *range(partitions)] if task_type in offered[p]),
                    home,
                )
            else:
                found = (
                    best_offer(recorded, range(partitions), now)
                    if placement == "offer"
                    else from_summaries(by_id[task_id], now)
                )
                if found is None:
                    pool[task_id] = recorded
                    run.pooled += 1
                    relook_soon(now)
                    continue
                chosen = found
            place(recorded, chosen)
            decide(chosen, now)
            continue
        complete(task_id, agent_id, attempt, now)
    assigned = {r.event.task_id for r in log.records if isinstance(r.event, TaskAssigned)}
    run.unassigned = [task.task_id for task in tasks if task.task_id not in assigned]
    return run
