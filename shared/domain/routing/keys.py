"""Concurrency keys, rate limits and affinity keys: the limits in force and what the log says each
key holds. Pure: ``apply_keys(state, fleet, recorded)``, after the fleet applied the event.

* A concurrency key's *holders* are the task attempts holding one of its slots: claimed
  (``system.key_slot_claimed``, appended before the assignment against the key's last sequence) or
  assigned. A holder counts while its attempt is current and not over (``holds_slot``): the attempt's
  end, its requeue or its agent's death (recovery fails or requeues the attempt) frees the slot, with
  no event of its own, so no slot can leak.
* A rate key's *bucket* is what the last ``system.rate_tokens_taken`` left, at its time; the next
  taker refills it from there (``tokens_at``). Every router reads the same takes from the log.
* An affinity key's agent is the one its last assignment went to.

Limits come from the environment (CONCURRENCY_LIMITS, RATE_LIMITS: ``parse_concurrency_limits``,
``parse_rate_limits``) and from the API (``system.*_limit_set``/``_removed``); an API limit replaces
the environment's for the same pattern. A key takes the limit of the pattern equal to it, else of
the longest glob pattern (``*``, ``?``, ``[...]``) matching it.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Literal

import msgspec

from shared.domain.fleet import FleetState, TaskView
from shared.events import (
    ConcurrencyLimitRemoved,
    ConcurrencyLimitSet,
    ConcurrencyStrategy,
    KeySlotClaimed,
    RateLimitRemoved,
    RateLimitSet,
    RateTokensTaken,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRequeued,
)
from shared.recorded import Recorded

LimitSource = Literal["api", "environment"]
STRATEGIES: tuple[str, ...] = ("queue", "cancel_newest", "cancel_oldest")
MAX_SERVED = 50_000
HOLDING: frozenset[str] = frozenset({"pending", "queued", "assigned", "running"})


class LimitError(ValueError):
    """A limit written in the environment that cannot be used; the message says which and why."""


class ConcurrencyLimit(msgspec.Struct, frozen=True, kw_only=True):
    pattern: str
    max_running: int
    strategy: ConcurrencyStrategy = "queue"
    source: LimitSource = "api"


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    pattern: str
    limit: int
    """Units per ``period_s``."""
    period_s: float = 60.0
    burst: int = 0
    """At most this many units at once (0: ``limit``)."""
    source: LimitSource = "api"

    @property
    def capacity(self) -> int:
        return self.burst or self.limit

    @property
    def per_s(self) -> float:
        return self.limit / self.period_s


class Bucket(msgspec.Struct, kw_only=True):
    tokens: float
    ts: float


class KeysState(msgspec.Struct, kw_only=True):
    concurrency_limits: dict[str, ConcurrencyLimit] = {}
    """Set by the API, by pattern."""
    rate_limits: dict[str, RateLimit] = {}
    holders: dict[str, dict[str, int]] = {}
    """Concurrency key -> task id -> attempt holding a slot (claimed or assigned), oldest first."""
    buckets: dict[str, Bucket] = {}
    taken: dict[str, int] = {}
    """Task id -> attempt that took its rate-limit tokens and is not assigned yet."""
    affinity: dict[str, str] = {}
    """Affinity key -> the agent its last assignment went to."""
    served: dict[str, int] = {}
    """Concurrency key -> sequence of its last assignment, least recent first (keys take turns);
    beyond ``MAX_SERVED`` keys the least recent are forgotten (as if never served)."""


# --- limits ---------------------------------------------------------------------------------------


def has_magic(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


class Limits:
    """The limits in force: the environment's, replaced pattern by pattern by the API's."""

    def __init__(
        self,
        concurrency: dict[str, ConcurrencyLimit],
        rate: dict[str, RateLimit],
    ) -> None:
        self.concurrency = concurrency
        self.rate = rate
        self._concurrency_globs = sorted((p for p in concurrency if has_magic(p)), key=lambda p: (-len(p), p))
        self._rate_globs = sorted((p for p in rate if has_magic(p)), key=lambda p: (-len(p), p))

    @classmethod
    def combine(
        cls,
        state: KeysState,
        environment_concurrency: tuple[ConcurrencyLimit, ...] = (),
        environment_rate: tuple[RateLimit, ...] = (),
    ) -> Limits:
        concurrency = {limit.pattern: limit for limit in environment_concurrency}
        concurrency.update(state.concurrency_limits)
        rate = {limit.pattern: limit for limit in environment_rate}
        rate.update(state.rate_limits)
        return cls(concurrency, rate)

    def concurrency_of(self, key: str) -> ConcurrencyLimit | None:
        found = self.concurrency.get(key)
        if found is not None:
            return found
        pattern = next((p for p in self._concurrency_globs if fnmatch.fnmatchcase(key, p)), None)
        return self.concurrency[pattern] if pattern is not None else None

    def rate_of(self, key: str) -> RateLimit | None:
        found = self.rate.get(key)
        if found is not None:
            return found
        pattern = next((p for p in self._rate_globs if fnmatch.fnmatchcase(key, p)), None)
        return self.rate[pattern] if pattern is not None else None


def parse_concurrency_limits(text: str) -> tuple[ConcurrencyLimit, ...]:
    """``pattern=max[:strategy],...`` (e.g. ``repo-*=2,customer-42=5:cancel_oldest``)."""
    limits: list[ConcurrencyLimit] = []
    for item in _items(text):
        pattern, _, rest = item.partition("=")
        count, _, strategy = rest.partition(":")
        strategy = strategy.strip() or "queue"
        if strategy not in STRATEGIES:
            raise LimitError(f"{item!r}: strategy must be one of {', '.join(STRATEGIES)}")
        limits.append(
            ConcurrencyLimit(
                pattern=_pattern(item, pattern),
                max_running=_positive_int(item, count, "max_running"),
                strategy=strategy,  # type: ignore[arg-type]
                source="environment",
            )
        )
    return tuple(limits)


def parse_rate_limits(text: str) -> tuple[RateLimit, ...]:
    """``pattern=limit/period_s[:burst],...`` (e.g. ``openai=60/60,anthropic-*=10/1:20``)."""
    limits: list[RateLimit] = []
    for item in _items(text):
        pattern, _, rest = item.partition("=")
        rate, _, burst = rest.partition(":")
        count, slash, period = rate.partition("/")
        if not slash:
            raise LimitError(f"{item!r}: write pattern=limit/period_seconds[:burst]")
        try:
            period_s = float(period)
        except ValueError:
            raise LimitError(f"{item!r}: period {period!r} is not a number of seconds") from None
        if not (math.isfinite(period_s) and period_s > 0):
            raise LimitError(f"{item!r}: the period must be a positive number of seconds")
        limits.append(
            RateLimit(
                pattern=_pattern(item, pattern),
                limit=_positive_int(item, count, "limit"),
                period_s=period_s,
                burst=_positive_int(item, burst, "burst") if burst.strip() else 0,
                source="environment",
            )
        )
    return tuple(limits)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _pattern(item: str, pattern: str) -> str:
    pattern = pattern.strip()
    if not pattern or any(char.isspace() for char in pattern) or len(pattern) > 128:
        raise LimitError(f"{item!r}: the key pattern must be 1-128 characters without spaces")
    return pattern


def _positive_int(item: str, text: str, name: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise LimitError(f"{item!r}: {name} {text.strip()!r} is not a whole number") from None
    if value < 1:
        raise LimitError(f"{item!r}: {name} must be at least 1")
    return value


# --- holders and buckets --------------------------------------------------------------------------


def holds_slot(fleet: FleetState, task_id: str, attempt: int) -> bool:
    """Whether that attempt still holds its key's slot: current, and neither over nor failed."""
    task = fleet.tasks.get(task_id)
    return task is not None and task.attempt == attempt and task.status in HOLDING


def live_holders(state: KeysState, fleet: FleetState, key: str) -> list[str]:
    """The task ids holding a slot of `key`, oldest claim first."""
    holders = state.holders.get(key, {})
    return [task_id for task_id, attempt in holders.items() if holds_slot(fleet, task_id, attempt)]


def running_count(state: KeysState, fleet: FleetState, key: str) -> int:
    holders = state.holders.get(key)
    if not holders:
        return 0
    return sum(1 for task_id, attempt in holders.items() if holds_slot(fleet, task_id, attempt))


def holds(state: KeysState, task: TaskView) -> bool:
    """Whether `task`'s current attempt holds a slot of its concurrency key."""
    key = task.spec.concurrency_key
    return key is not None and state.holders.get(key, {}).get(task.task_id) == task.attempt


def tokens_at(bucket: Bucket | None, limit: RateLimit, now: float) -> float:
    """Tokens in the bucket at `now`: what the last take left, refilled since (full when untouched)."""
    if bucket is None:
        return float(limit.capacity)
    return min(float(limit.capacity), bucket.tokens + max(0.0, now - bucket.ts) * limit.per_s)


def units_needed(units: int, limit: RateLimit) -> int:
    """A task asking more than the bucket holds waits for a full bucket (and leaves it in debt)."""
    return min(units, limit.capacity)


def ready_at(bucket: Bucket | None, limit: RateLimit, units: int, now: float) -> float:
    """When the bucket holds `units` (clipped to its capacity) again, if nobody else takes any."""
    missing = units_needed(units, limit) - tokens_at(bucket, limit, now)
    return now if missing <= 0 else now + missing / limit.per_s


# --- apply ----------------------------------------------------------------------------------------

_ENDS = (TaskCompleted, TaskFailed, TaskCancelled, TaskAttemptFailed, TaskRequeued)


def apply_keys(state: KeysState, fleet: FleetState, recorded: Recorded) -> KeysState:
    """Apply `recorded`, the fleet having applied it already."""
    event = recorded.event
    match event:
        case ConcurrencyLimitSet():
            state.concurrency_limits[event.pattern] = ConcurrencyLimit(
                pattern=event.pattern, max_running=event.max_running, strategy=event.strategy
            )
        case ConcurrencyLimitRemoved():
            state.concurrency_limits.pop(event.pattern, None)
        case RateLimitSet():
            state.rate_limits[event.pattern] = RateLimit(
                pattern=event.pattern, limit=event.limit, period_s=event.period_s, burst=event.burst or 0
            )
        case RateLimitRemoved():
            state.rate_limits.pop(event.pattern, None)
        case KeySlotClaimed():
            if holds_slot(fleet, event.task_id, event.attempt):
                state.holders.setdefault(event.key, {})[event.task_id] = event.attempt
        case RateTokensTaken():
            state.buckets[event.key] = Bucket(tokens=event.tokens_left, ts=event.ts)
            if holds_slot(fleet, event.task_id, event.attempt):
                state.taken[event.task_id] = event.attempt
        case TaskAssigned():
            task = fleet.tasks.get(event.task_id)
            if task is None or task.agent_id != event.agent_id or task.attempt != event.attempt:
                return state
            state.taken.pop(event.task_id, None)
            key = task.spec.concurrency_key
            if key is not None:
                state.holders.setdefault(key, {})[event.task_id] = event.attempt
                state.served.pop(key, None)
                state.served[key] = recorded.seq
                if len(state.served) > MAX_SERVED:
                    for old in list(state.served)[: MAX_SERVED // 2]:
                        del state.served[old]
            if task.spec.affinity_key is not None:
                state.affinity[task.spec.affinity_key] = event.agent_id
        case _ if isinstance(event, _ENDS):
            _release(state, fleet, event.task_id)
        case _:
            pass
    return state


def apply_affinity(state: KeysState, fleet: FleetState, recorded: Recorded) -> KeysState:
    """``apply_keys`` for a view that reads only ``affinity`` (the balancer's, for a hard key's
    binding: ``affinity.bound_agent``): the same affinity after every event, and nothing else kept
    (no limits, slots, tokens nor served keys; they weigh in no move). The fleet applied it already."""
    event = recorded.event
    if isinstance(event, TaskAssigned):
        task = fleet.tasks.get(event.task_id)
        if task is None or task.agent_id != event.agent_id or task.attempt != event.attempt:
            return state
        if task.spec.affinity_key is not None:
            state.affinity[task.spec.affinity_key] = event.agent_id
    return state


def _release(state: KeysState, fleet: FleetState, task_id: str) -> None:
    task = fleet.tasks.get(task_id)
    taken = state.taken.get(task_id)
    if taken is not None and not holds_slot(fleet, task_id, taken):
        del state.taken[task_id]
    key = task.spec.concurrency_key if task is not None else None
    if key is None:
        return
    holders = state.holders.get(key)
    if holders is None or task_id not in holders:
        return
    if not holds_slot(fleet, task_id, holders[task_id]):
        del holders[task_id]
        if not holders:
            del state.holders[key]
