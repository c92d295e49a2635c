"""Scale advice, pure: how many more agents each task type needs, from its demand over a window.

For a task type, over the last ``window_s`` seconds of event time:

    arrival rate   r = tasks of the type submitted / window_s
    duration       d = mean duration of its tasks completed in the window, else the mean estimate
                       its tasks gave (estimated_duration_s), else DEFAULT_DURATION_S
    queue          q = its tasks waiting for an agent now: pending, or queued because every capable
                       agent is busy or none exists (tasks held below their quality threshold wait
                       for a better agent, not more of the same, and are left out)
    needed slots   n = r x d / target_utilisation + q x d / window_s
                       (keep up with arrivals at the target utilisation, and drain the queue
                       within one window)
    current slots  s = capacity of the active agents offering the type, breaker not open

and ``additional agents = ceil((n - s) / c)`` when ``n > s``, else 0, where ``c`` is the median
capacity of those agents (else of all active agents, else 1); at least 1 when no agent offers the
type while tasks of it arrive or wait. The advice changes (and ``system.scale_recommended`` is
appended) upward at once, downward only once a whole window has passed since the last change, so a
noisy rate does not make it flap.
"""

from __future__ import annotations

import hashlib
import math
import re
import statistics
from typing import Final

import msgspec

from services.balancer.view import BalancerState, TypeDemand
from shared.domain.fleet import WAITING, AgentView
from shared.domain.load_balance import takes_work
from shared.domain.routing.eligibility import held_below_threshold
from shared.ids import ID_PATTERN

DEFAULT_DURATION_S: Final = 1.0
_ID = re.compile(ID_PATTERN)


class ScalePolicy(msgspec.Struct, frozen=True, kw_only=True):
    window_s: float = 60.0
    target_utilisation: float = 0.8


class Advice(msgspec.Struct, frozen=True, kw_only=True):
    capability: str
    scope: str
    current_agents: int
    current_slots: int
    needed_slots: float
    additional_agents: int
    arrival_rate_per_s: float
    queue_depth: int
    mean_duration_s: float
    reason: str


def capability_scope(capability: str) -> str:
    """The system aggregate id of a capability's advice: ``scale-<capability>``, made a valid id."""
    plain = f"scale-{capability}"
    if _ID.match(plain):
        return plain
    digest = hashlib.sha256(capability.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", capability)[:40]
    return f"scale-{cleaned}-{digest}"


def _queue_depths(state: BalancerState, now: float) -> dict[str, int]:
    """Per task type, its tasks waiting for an agent now. Found by their status (the balancer's
    view keeps no sorted queue, ``view.py``): the very tasks the fleet's queue holds, which is
    its waiting tasks and nothing else (``tests/unit/test_learn_cost.py``)."""
    depths: dict[str, int] = {}
    for task in state.router.fleet.tasks.values():
        if task.status not in WAITING or task.not_before_ts > now:
            continue
        if held_below_threshold(task):
            continue
        depths[task.spec.task_type] = depths.get(task.spec.task_type, 0) + 1
    return depths


def _duration(demand: TypeDemand | None, since: float, now: float) -> float:
    if demand is None:
        return DEFAULT_DURATION_S
    done = demand.durations.sums(since, now)
    if done.b > 0 and done.a > 0:
        return done.a / done.b
    estimated = demand.estimates.sums(since, now)
    if estimated.b > 0 and estimated.a > 0:
        return estimated.a / estimated.b
    return DEFAULT_DURATION_S


def advise(
    state: BalancerState,
    capability: str,
    now: float,
    policy: ScalePolicy,
    queue_depth: int = 0,
    active: list[AgentView] | None = None,
) -> Advice:
    """The advice for one task type now."""
    if active is None:
        active = _taking_work(state)
    since = now - policy.window_s
    demand = state.demand.get(capability)
    arrivals = demand.arrivals.sums(since, now).a if demand is not None else 0.0
    rate = arrivals / policy.window_s
    duration = _duration(demand, since, now)
    offering = [a for a in active if capability in a.capabilities]
    slots = sum(a.capacity for a in offering)
    needed = rate * duration / policy.target_utilisation + queue_depth * duration / policy.window_s
    typical = statistics.median([a.capacity for a in offering or active]) if (offering or active) else 1
    if not offering and (arrivals > 0 or queue_depth > 0):
        additional = max(1, math.ceil(needed / typical - 1e-9))
    else:
        additional = max(0, math.ceil((needed - slots) / typical - 1e-9))
    reason = (
        f"{rate:.2f} arrivals/s x {duration:.2f} s / {policy.target_utilisation:.0%} utilisation "
        f"+ {queue_depth} queued drained within {policy.window_s:g} s = {needed:.1f} slots needed; "
        f"{slots} slot(s) on {len(offering)} agent(s)"
    )
    return Advice(
        capability=capability,
        scope=capability_scope(capability),
        current_agents=len(offering),
        current_slots=slots,
        needed_slots=round(needed, 3),
        additional_agents=additional,
        arrival_rate_per_s=round(rate, 4),
        queue_depth=queue_depth,
        mean_duration_s=round(duration, 4),
        reason=reason,
    )


def all_advice(state: BalancerState, now: float, policy: ScalePolicy) -> list[Advice]:
    """Advice for every type with arrivals in the window, waiting tasks, or a standing advice."""
    since = now - policy.window_s
    depths = _queue_depths(state, now)
    kinds = set(depths) | {cap for cap, standing in state.scale.items() if standing.additional_agents > 0}
    kinds |= {kind for kind, demand in state.demand.items() if demand.arrivals.sums(since, now).a > 0}
    active = _taking_work(state)
    return [advise(state, kind, now, policy, depths.get(kind, 0), active) for kind in sorted(kinds)]


def _taking_work(state: BalancerState) -> list[AgentView]:
    """The agents that can be given work now (active, breaker not open)."""
    breakers = state.router.breakers
    return [agent for agent in state.router.fleet.agents.values() if takes_work(agent, breakers)]


def changed_advice(
    state: BalancerState, advice: list[Advice], now: float, policy: ScalePolicy
) -> list[Advice]:
    """The advice to append: a new number, upward at once, downward after a window without change."""
    changed = []
    for item in advice:
        standing = state.scale.get(item.capability)
        current = standing.additional_agents if standing is not None else 0
        if item.additional_agents == current:
            continue
        if item.additional_agents < current and standing is not None and now - standing.ts < policy.window_s:
            continue
        changed.append(item)
    return changed
