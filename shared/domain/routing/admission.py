"""Admission: whether a waiting task may start now as far as its keys go. Pure.

Asked by the router before it looks for an agent (``gate``):

* a concurrency key at its limit: the task waits (``queue``: keys take turns, ``fair_pick``), is
  cancelled (``cancel_newest``), or the key's oldest holder is cancelled to make room
  (``cancel_oldest``); with room, the task claims a slot first (``ClaimSlot``) unless it holds one;
* a rate-limit key whose bucket lacks the task's ``units``: the task waits until the bucket refills
  (``eligible_ts``); with enough tokens, it takes them first (``TakeTokens``) unless its attempt has.

Claims and takes are appended against the key's last sequence, so routers racing for the last slot
or token cannot both have it; the assignment follows once they are stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import msgspec

from shared.domain.fleet import FleetState, TaskView
from shared.domain.routing.keys import (
    KeysState,
    Limits,
    RateLimit,
    holds,
    live_holders,
    ready_at,
    running_count,
    tokens_at,
    units_needed,
)

CONCURRENCY_LIMITED: Final = "concurrency_limit"
RATE_LIMITED: Final = "rate_limited"
ADMISSION_REASONS: Final = frozenset({CONCURRENCY_LIMITED, RATE_LIMITED})
FAIR_WINDOW: Final = 32
"""How many admissible keyed tasks after the first one the router weighs to let keys take turns."""
FAIR_SCAN: Final = 256
"""How many waiting tasks after the first admissible one the router looks through to find them
(behind thousands of tasks of keys at their limit, looking further would cost every decision a
walk of the whole queue)."""


class ClaimSlot(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    max_running: int
    running: int


class TakeTokens(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    units: int
    tokens_left: float
    limit: RateLimit


class Go(msgspec.Struct, frozen=True, kw_only=True):
    """The task may start; what it must append first, if anything."""

    claim: ClaimSlot | None = None
    take: TakeTokens | None = None


class Wait(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    detail: str
    eligible_ts: float | None = None


class CancelTask(msgspec.Struct, frozen=True, kw_only=True):
    """Cancel `task_id` (the waiting task itself, or its key's oldest holder)."""

    task_id: str
    attempt: int
    reason: str


Gate = Go | Wait | CancelTask
GO: Final = Go()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def gate(keys: KeysState, fleet: FleetState, limits: Limits, task: TaskView, now: float) -> Gate:
    """What `task`'s keys allow now."""
    claim: ClaimSlot | None = None
    key = task.spec.concurrency_key
    limit = limits.concurrency_of(key) if key is not None else None
    if key is not None and limit is not None and not holds(keys, task):
        running = running_count(keys, fleet, key)
        if running >= limit.max_running:
            at_limit = (
                f"concurrency key {key!r} is at its limit ({running}/{limit.max_running}, "
                f"pattern {limit.pattern!r})"
            )
            if limit.strategy == "cancel_newest":
                return CancelTask(
                    task_id=task.task_id, attempt=task.attempt, reason=f"{at_limit}: cancel_newest"
                )
            if limit.strategy == "cancel_oldest":
                oldest = _oldest_other_holder(keys, fleet, key, task.task_id)
                if oldest is not None:
                    return CancelTask(
                        task_id=oldest.task_id,
                        attempt=oldest.attempt,
                        reason=f"{at_limit}: cancel_oldest makes room for {task.task_id}",
                    )
            return Wait(
                reason=CONCURRENCY_LIMITED,
                detail=f"{at_limit}; it starts when one of the key's tasks ends",
            )
        claim = ClaimSlot(key=key, max_running=limit.max_running, running=running)
    take: TakeTokens | None = None
    rate_key = task.spec.rate_limit_key
    rate = limits.rate_of(rate_key) if rate_key is not None else None
    if rate_key is not None and rate is not None and keys.taken.get(task.task_id) != task.attempt:
        bucket = keys.buckets.get(rate_key)
        tokens = tokens_at(bucket, rate, now)
        needed = units_needed(task.spec.units, rate)
        if tokens < needed:
            eligible = ready_at(bucket, rate, task.spec.units, now)
            return Wait(
                reason=RATE_LIMITED,
                detail=f"rate limit of key {rate_key!r} ({rate.limit} per {rate.period_s:g}s, burst "
                f"{rate.capacity}, pattern {rate.pattern!r}): {max(tokens, 0.0):.2f} of {needed} "
                f"unit(s) available; the bucket holds them at {_iso(eligible)} "
                "(tasks ahead may take them first)",
                eligible_ts=eligible,
            )
        take = TakeTokens(
            key=rate_key, units=task.spec.units, tokens_left=tokens - task.spec.units, limit=rate
        )
    if claim is None and take is None:
        return GO
    return Go(claim=claim, take=take)


def _oldest_other_holder(keys: KeysState, fleet: FleetState, key: str, task_id: str) -> TaskView | None:
    for holder in live_holders(keys, fleet, key):
        if holder != task_id:
            return fleet.tasks[holder]
    return None


def rate_wake(keys: KeysState, fleet: FleetState, limits: Limits, now: float) -> float | None:
    """The earliest time a task held by a rate limit may start (when to look at the queue again)."""
    earliest: float | None = None
    for _vt, _seq, task_id in fleet.queue:
        task = fleet.tasks.get(task_id)
        if task is None or task.queued_reason != RATE_LIMITED or task.spec.rate_limit_key is None:
            continue
        rate = limits.rate_of(task.spec.rate_limit_key)
        if rate is None:
            return now
        when = ready_at(keys.buckets.get(task.spec.rate_limit_key), rate, task.spec.units, now)
        earliest = when if earliest is None else min(earliest, when)
    return earliest


def fair_pick(candidates: list[tuple[TaskView, bool, int, int]]) -> TaskView:
    """Among admissible keyed tasks in queue order, each with whether it holds its slot already,
    its key's other running tasks and the sequence of its key's last assignment: a holder first
    (its slot is not left idle), then the key running the fewest, then the key served least
    recently, then the earliest in the queue (keys take turns)."""
    best = min(
        range(len(candidates)),
        key=lambda i: (not candidates[i][1], candidates[i][2], candidates[i][3], i),
    )
    return candidates[best][0]
