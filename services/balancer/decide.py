"""Rebalancing decisions, pure: which assigned-but-unstarted attempts to move, and to whom.

Where work waits in Hive. The router never gives an agent more than its capacity and the SDK
starts an assignment as soon as it reads it, so "assigned" normally lasts milliseconds, or until
the work ends or reports its start (the SDK reports ``task.started`` only for work still running
``START_REPORT_AFTER_S`` = 0.25 s after the assignment: ``shared/domain/starts.py``). Work waits
*at an agent* when that agent does not start it: its assignment reader is stalled or lagging (a
blocked event loop, a lost consumer, an agent that only starts work when its own workers free up)
while its heartbeats still say it is alive, or its circuit breaker opened after the assignment was
made (the agent is failing; the router would not give it that work now). Work that waits in the
*queue* because no capable agent has room needs more agents, not moves (``scaling``).

A move is decided when all of these hold:

* the attempt is ``assigned`` (not started) and has waited ``unstarted_after_s``, or its holder's
  breaker is open; the holder is active or draining (silent agents are recovery's work); and it
  is at least ``START_REPORTED_WITHIN_S`` (1 s) old whatever ``unstarted_after_s`` says: a younger
  one may be running with its start report deferred (the default ``REBALANCE_AFTER_S``, 2 s, is
  8x the deferral bound);
* it is not a probe of a half-open breaker (the breaker needs that probe's own outcome; recovery's
  timeout is the backstop);
* the task was moved fewer than ``max_moves_per_task`` times;
* a target exists: an agent the router could give the task to (active, capable, not excluded)
  whose breaker is closed, with a free slot once the moves planned before it are counted, holding
  no long-unstarted work itself nor emptied of such work by an earlier move without starting or
  ending an attempt since (``BalancerState.unstarting``: two stalled agents would otherwise trade
  a task until its moves ran out), whose predicted quality (the router's own model, the very
  prediction its routing uses) reaches the task's threshold, and whose *vouched* quality is at
  least ``(1 - quality_tolerance)`` x the holder's. Vouched quality is the prediction minus one
  standard deviation: what the agent has shown, not what it says of itself, so a proven holder is
  not traded for an unknown agent, while an unproven holder's self-description does not pin work
  on it. A move never trades quality for speed beyond that tolerance.

Among the targets the least utilised after the move wins (ties: higher predicted quality, then the
agent id): the ``adaptive_hybrid`` load-balancing strategy. An optimize request may name another
(``target_key``): ``least_connections`` the fewest tasks in flight, ``round_robin`` the agent
given work longest ago, ``weighted_round_robin`` the least utilised then longest idle,
``capability_aware`` the strongest declared proficiency, ``performance_based`` the highest
predicted quality; each then falls back on the default order. A move becomes ``task.requeued``
(attempt + 1, reason ``rebalanced``, the target as preferred agent), appended against the task's
last sequence as this view saw it: if the agent started the attempt meanwhile, its
``task.started`` moved that sequence and the server refuses it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import msgspec

from services.balancer.view import BalancerState
from shared.domain.fleet import WAITING, AgentView, TaskView
from shared.domain.load_balance import fleet_efficiency
from shared.domain.routing.adaptive import AdaptiveState
from shared.domain.routing.eligibility import ineligibility
from shared.domain.routing.performance import reference_duration
from shared.domain.routing.policy import RoutingConfig, Weights, effective_weights, strategy_of
from shared.domain.routing.scoring import score_candidate
from shared.domain.routing.view import RouterState
from shared.domain.starts import may_run_unreported
from shared.events import PRIORITY_RANK, LoadBalancingStrategy

MAX_NOTES: Final = 20

UNLEARNED: Final = AdaptiveState()
"""The adaptive weights a plan scores with: the starting ones. A move reads no score, only what
no weight enters (``_predicted``), so the balancer's view does not learn them (``view.py``)."""


class RebalancePolicy(msgspec.Struct, frozen=True, kw_only=True):
    unstarted_after_s: float = 2.0
    quality_tolerance: float = 0.05
    max_moves: int = 100
    max_moves_per_task: int = 2
    strategy: LoadBalancingStrategy = "adaptive_hybrid"


def target_key(
    strategy: LoadBalancingStrategy, agent: AgentView, load: int, quality: float, capability: float
) -> tuple[float, ...]:
    """Sort key of a move's target under a load-balancing strategy: smaller wins. `load` counts
    the moves already planned onto the agent."""
    utilisation = (load + 1) / agent.capacity
    if strategy == "least_connections":
        return (load + 1, utilisation, -quality)
    if strategy == "round_robin":
        return (agent.last_assigned_seq, utilisation, -quality)
    if strategy == "weighted_round_robin":
        return (utilisation, agent.last_assigned_seq, -quality)
    if strategy == "capability_aware":
        return (-capability, utilisation, -quality)
    if strategy == "performance_based":
        return (-quality, utilisation)
    return (utilisation, -quality)


class Waiting(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt its holder has not started."""

    task: TaskView
    holder: AgentView
    waited_s: float


class Move(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str
    attempt: int
    """The new attempt."""
    from_agent_id: str
    to_agent_id: str
    waited_s: float
    quality_from: float
    quality_to: float

    def as_record(self) -> dict[str, str]:
        """The move as ``system.load_rebalanced`` records it."""
        return {
            "task_id": self.task_id,
            "attempt": str(self.attempt),
            "from_agent_id": self.from_agent_id,
            "to_agent_id": self.to_agent_id,
            "waited_s": f"{self.waited_s:.3f}",
            "quality_from": f"{self.quality_from:.4f}",
            "quality_to": f"{self.quality_to:.4f}",
        }


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    moves: list[Move]
    notes: list[str]
    """Why waiting work stays where it is (at most ``MAX_NOTES``)."""
    waiting: int
    """Attempts waiting unstarted past the limit (or at an agent whose breaker is open)."""
    efficiency_before: float | None
    efficiency_after: float | None
    """Fleet-wide efficiency now, and once every move lands on its target."""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a rebalance did: the plan it started from, the moves made (planned, on a dry run),
    notes on what stayed, and the fleet-wide efficiency once the moves land."""

    plan: Plan
    moves: list[Move]
    notes: list[str]
    efficiency_after: float | None


def waiting_attempts(
    state: RouterState, now: float, policy: RebalancePolicy, seen_until: float | None = None
) -> list[Waiting]:
    """Unstarted attempts past the limit (or at an open breaker), longest waiting first.

    `seen_until`: the time up to which the view has applied everything the log held (None: `now`,
    a current view). An attempt has waited unstarted only as long as the view can vouch for: a
    view 3 s behind the log sees every attempt of the last 3 s unstarted, started or finished
    meanwhile, and a move of one would only be refused by the server (an append and a catch-up
    for nothing). So the wait, and the age under which a start report may still be deferred,
    count up to `seen_until`."""
    if seen_until is not None and seen_until < now:
        now = seen_until
    found: list[Waiting] = []
    fleet = state.fleet
    for holder in fleet.agents.values():
        if holder.status not in ("active", "draining") or not holder.in_flight:
            continue
        breaker = state.breakers.breakers.get(holder.agent_id)
        breaker_open = breaker is not None and breaker.status == "open"
        for task_id, attempt in holder.in_flight.items():
            task = fleet.tasks.get(task_id)
            if task is None or task.status != "assigned" or task.attempt != attempt:
                continue
            waited = max(0.0, now - (task.assigned_ts if task.assigned_ts is not None else now))
            if may_run_unreported(task.assigned_ts, now):
                continue  # its handler may be running, its task.started still to come
            if waited >= policy.unstarted_after_s or breaker_open:
                found.append(Waiting(task=task, holder=holder, waited_s=waited))
    found.sort(key=lambda w: (-w.waited_s, -PRIORITY_RANK[w.task.spec.priority], w.task.task_id))
    return found


def _predicted(
    state: RouterState,
    agent: AgentView,
    task: TaskView,
    now: float,
    weights: Weights,
    reference: float | None,
) -> tuple[float, float, float]:
    """The router's predicted quality of `agent` on `task` (what its score is built on), the
    quality it vouches for (the prediction minus one standard deviation) and its capability score.
    `weights` and `reference` depend on the task alone: the caller computes them once for all
    candidates. No weight enters these three figures (only the score, not read here)."""
    scored = score_candidate(state.performance, state.breakers, agent, task, weights, now, reference)
    prediction = scored.prediction
    return prediction.quality, max(0.0, prediction.quality - prediction.uncertainty), scored.capability


def _breaker_closed(state: RouterState, agent_id: str) -> bool:
    breaker = state.breakers.breakers.get(agent_id)
    return breaker is None or breaker.status == "closed"


def plan_moves(
    state: BalancerState,
    now: float,
    policy: RebalancePolicy,
    config: RoutingConfig | None = None,
    seen_until: float | None = None,
    settled: Collection[str] = (),
) -> Plan:
    """The moves to make now, most-waiting first, and notes on the waiting work left in place.
    `seen_until`: how far the view is complete (``waiting_attempts``). `settled`: tasks a move of
    which the server refused in this rebalance (changed since the view read them: started, ended),
    left where they are so their targets' slots go to the other waiting work without the view
    catching up first."""
    config = config or RoutingConfig()
    router = state.router
    waiting = waiting_attempts(router, now, policy, seen_until)
    stuck_holders = {w.holder.agent_id for w in waiting}
    planned_in: dict[str, int] = {}
    shifts: dict[str, int] = {}
    moves: list[Move] = []
    notes: list[str] = []

    def note(item: Waiting, why: str) -> None:
        if len(notes) < MAX_NOTES:
            notes.append(
                f"task {item.task.task_id} on {item.holder.agent_id} (unstarted {item.waited_s:.1f} s): {why}"
            )

    for item in waiting:
        task, holder = item.task, item.holder
        if task.task_id in settled:
            continue
        if len(moves) >= policy.max_moves:
            note(item, f"move limit ({policy.max_moves}) reached")
            continue
        probed = router.breakers.probes.get(task.task_id) == holder.agent_id
        if probed:
            note(item, "a probe of the agent's half-open breaker: its outcome decides the breaker")
            continue
        if state.moved.get(task.task_id, 0) >= policy.max_moves_per_task:
            note(item, f"already moved {policy.max_moves_per_task} time(s)")
            continue
        weights = effective_weights(strategy_of(task, config), config.mode, task.spec, UNLEARNED)
        reference = reference_duration(router.performance, task)
        holder_quality, holder_vouched, _capability = _predicted(
            router, holder, task, now, weights, reference
        )
        floor = holder_vouched * (1.0 - policy.quality_tolerance)
        threshold = task.spec.expected_quality_threshold
        best: tuple[tuple[tuple[float, ...], str], AgentView, float] | None = None
        best_below: tuple[float, str] | None = None
        unstarting: str | None = None
        for agent in router.fleet.agents.values():
            if agent.agent_id == holder.agent_id or agent.agent_id in stuck_holders:
                continue
            if ineligibility(router, agent, task) is not None or not _breaker_closed(router, agent.agent_id):
                continue
            load = agent.load + planned_in.get(agent.agent_id, 0)
            if load >= agent.capacity:
                continue
            if agent.agent_id in state.unstarting:
                unstarting = unstarting or agent.agent_id
                continue
            quality, vouched, capability = _predicted(router, agent, task, now, weights, reference)
            if vouched < floor or quality < threshold:
                if best_below is None or vouched > best_below[0]:
                    best_below = (vouched, agent.agent_id)
                continue
            key = (target_key(policy.strategy, agent, load, quality, capability), agent.agent_id)
            if best is None or key < best[0]:
                best = (key, agent, quality)
        if best is None:
            if best_below is not None:
                note(
                    item,
                    f"the best free capable agent, {best_below[1]}, is vouched for at {best_below[0]:.2f}, "
                    f"below {floor:.2f} ({holder.agent_id}'s {holder_vouched:.2f} less the "
                    f"{policy.quality_tolerance:.0%} tolerance), or predicted below the task's threshold "
                    f"{threshold:.2f}",
                )
            elif unstarting is not None:
                note(
                    item,
                    f"the free capable agents (such as {unstarting}) have not started or ended an "
                    "attempt since work was moved away from them unstarted",
                )
            else:
                note(item, "no other capable agent with a closed breaker has a free slot")
            continue
        _key, target, quality = best
        planned_in[target.agent_id] = planned_in.get(target.agent_id, 0) + 1
        shifts[target.agent_id] = shifts.get(target.agent_id, 0) + 1
        shifts[holder.agent_id] = shifts.get(holder.agent_id, 0) - 1
        moves.append(
            Move(
                task_id=task.task_id,
                attempt=task.attempt + 1,
                from_agent_id=holder.agent_id,
                to_agent_id=target.agent_id,
                waited_s=item.waited_s,
                quality_from=holder_quality,
                quality_to=quality,
            )
        )
    before = fleet_efficiency(router.fleet, router.breakers)
    after = fleet_efficiency(router.fleet, router.breakers, shifts) if moves else before
    return Plan(
        moves=moves,
        notes=notes,
        waiting=len(waiting),
        efficiency_before=before,
        efficiency_after=after,
    )


def efficiency_once_landed(state: RouterState, moves: list[Move]) -> float | None:
    """Fleet-wide efficiency once the moved attempts still waiting land on their targets."""
    shifts: dict[str, int] = {}
    for move in moves:
        task = state.fleet.tasks.get(move.task_id)
        if task is not None and task.status in WAITING and task.attempt == move.attempt:
            shifts[move.to_agent_id] = shifts.get(move.to_agent_id, 0) + 1
    return fleet_efficiency(state.fleet, state.breakers, shifts)
