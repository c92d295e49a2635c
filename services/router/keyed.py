"""The router's hook for keys (concurrency keys, rate limits): pure, called by ``next_decision``.

Before a waiting task is routed, ``admission`` asks the key gate (``shared/domain/routing/admission``):
the task may go, must wait (a ``Hold`` recorded once per reason and attempt), or a task must be
cancelled (``CancelForKey``: a ``cancel_*`` strategy). When the gate wants a slot claimed or tokens
taken, the assignment found for the task becomes a ``ClaimKeys`` decision (``before_assign``): the
shell appends the claim against the key's last sequence, then the assignment. While a claim is in
flight it is laid over the view (``overlay.py``) and its keys are *busy*: other keys' tasks go on
being decided, the same key's wait until the view applied it (``waits_for_own_claim``).
``fair_turn`` lets concurrency keys take turns: among the next admissible keyed tasks of about the
same priority, the one whose key runs the fewest goes first.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

import msgspec

from shared.domain.fleet import TaskView
from shared.domain.priority import PRIORITY_AGING_S
from shared.domain.routing.admission import (
    ADMISSION_REASONS,
    CONCURRENCY_LIMITED,
    FAIR_SCAN,
    FAIR_WINDOW,
    CancelTask,
    ClaimSlot,
    Go,
    TakeTokens,
    Wait,
    fair_pick,
    gate,
)
from shared.domain.routing.keys import Limits, holds, running_count
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.view import RouterState
from shared.events import (
    ConcurrencyLimitRemoved,
    ConcurrencyLimitSet,
    Event,
    KeySlotClaimed,
    RateLimitRemoved,
    RateLimitSet,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRequeued,
)

if TYPE_CHECKING:
    from services.router.decide import Assign

V = TypeVar("V")


class ClaimKeys(msgspec.Struct, frozen=True, kw_only=True):
    """Claim a concurrency slot and/or take rate tokens for a task attempt, then append ``assign``
    (decided on the same view: the claim touches no agent, so the assignment's guard still holds;
    if it is refused, the task keeps its claim and is decided again)."""

    task_id: str
    attempt: int
    assign: Assign
    claim: ClaimSlot | None = None
    take: TakeTokens | None = None


class CancelForKey(msgspec.Struct, frozen=True, kw_only=True):
    """Cancel a task because of its concurrency key's strategy (the waiting one, or the key's oldest)."""

    task_id: str
    attempt: int
    reason: str


class KeyHold(msgspec.Struct, frozen=True, kw_only=True):
    """Record that a task waits for its keys (``reason``, ``detail``, ``eligible_ts``)."""

    task_id: str
    attempt: int
    reason: str
    detail: str
    eligible_ts: float | None = None


def limits_of(state: RouterState, config: RoutingConfig | None) -> Limits:
    """The limits in force: the environment's (the config), replaced pattern by pattern by the log's."""
    if config is None:
        return Limits.combine(state.keys)
    return Limits.combine(state.keys, config.concurrency_limits, config.rate_limits)


def keyed(task: TaskView) -> bool:
    return task.spec.concurrency_key is not None or task.spec.rate_limit_key is not None


class Blocked:
    """Keys found closed during one pass over the queue: their other tasks are passed over cheaply.

    ``parked``: the tasks passed over for a concurrency key at its limit. Such a key stays closed
    until one of its holders ends, is requeued or fails, or the limits change (a rate key opens
    again with time): a router may leave them out of its next looks at the queue until then."""

    def __init__(self, weighed: Weighed | None = None) -> None:
        self.keys: set[tuple[str, str]] = set()
        self.waits: dict[str, Wait] = {}
        """Concurrency key found at its limit -> the gate's answer, the same for each of its tasks
        not holding a slot (a burst of one key's new tasks is not weighed task by task)."""
        self.parked: dict[str, set[str]] = {}
        """Concurrency key -> tasks passed over for it."""
        self.weighed = weighed if weighed is not None else Weighed()
        """How tasks stand for a fair turn. Within a plan a key changes only by a claim of the
        plan, which makes it busy: what was weighed stays true (between plans: ``Weighed``)."""

    def close(self, task: TaskView, wait: Wait) -> None:
        """The key `task` waits for is closed (for the rest of the plan)."""
        if wait.reason == CONCURRENCY_LIMITED:
            self.keys.add(("c", task.spec.concurrency_key or ""))
            self.waits[task.spec.concurrency_key or ""] = wait
        else:
            self.keys.add(("r", task.spec.rate_limit_key or ""))

    def passes_over(self, task: TaskView) -> bool:
        """A task of a closed key already recorded as waiting for it."""
        spec = task.spec
        if task.status != "queued" or task.queued_reason not in ADMISSION_REASONS:
            return False
        key = spec.concurrency_key
        if key is not None and ("c", key) in self.keys:
            self.parked.setdefault(key, set()).add(task.task_id)
            return True
        return spec.rate_limit_key is not None and ("r", spec.rate_limit_key) in self.keys


Standing = tuple[bool, int, int]
"""How a task stands for a fair turn: whether it holds its slot, its key's other running tasks,
when its key was served last (``fair_pick``)."""


class ByKey(Generic[V]):
    """Something known of waiting tasks, by task, valid until their concurrency key changes: a
    key's entries are forgotten together."""

    def __init__(self) -> None:
        self.values: dict[str, V] = {}
        self._tasks: dict[str, set[str]] = {}

    def put(self, key: str, task_id: str, value: V) -> None:
        self.values[task_id] = value
        self._tasks.setdefault(key, set()).add(task_id)

    def forget(self, keys: Collection[str] | None) -> None:
        """`keys` changed (None: any key may have; ``touched_keys`` says which)."""
        if keys is None:
            self.values.clear()
            self._tasks.clear()
            return
        for key in keys:
            for task_id in self._tasks.pop(key, ()):
                self.values.pop(task_id, None)


class Weighed(ByKey[Standing | None]):
    """How waiting tasks of concurrency keys stand for a fair turn (None: their key is closed to
    them), by task. A standing changes only with its key (a claim or an assignment under it, one of
    its tasks ending or requeued, a limit): a router that forgets a key's standings when its view
    applies such an event keeps them between plans (each decision weighs up to ``FAIR_WINDOW``
    tasks: weighing them afresh for each was a sixth of the router's work at 1,000 keys). Tasks
    with a rate key are not kept (their bucket refills with time)."""

    def keep(self, key: str, task: TaskView, standing: Standing | None) -> None:
        if task.spec.rate_limit_key is None:
            self.put(key, task.spec.task_id, standing)


def touched_keys(state: RouterState, event: Event) -> Collection[str] | None:
    """The concurrency keys whose tasks' standings the applied `event` may change (None: any key):
    a limit, a claim or an assignment under the key, or one of its tasks ending or requeued."""
    if isinstance(event, LIMIT_EVENTS):
        return None
    if isinstance(event, KeySlotClaimed):
        return (event.key,)
    if isinstance(event, KEY_TASK_EVENTS):
        task = state.fleet.tasks.get(event.task_id)
        if task is None:
            return None
        key = task.spec.concurrency_key
        return (key,) if key is not None else ()
    return ()


class Parked:
    """Tasks a router leaves out of its decisions until a slot of their key may have freed: what
    its plans parked (``Blocked.parked``), kept between plans."""

    def __init__(self) -> None:
        self.by_key: dict[str, set[str]] = {}
        self.tasks: set[str] = set()
        self._owed: ByKey[KeyHold] = ByKey()

    def add(self, parked: dict[str, set[str]]) -> None:
        for key, tasks in parked.items():
            self.by_key.setdefault(key, set()).update(tasks)
            self.tasks.update(tasks)

    @property
    def owed(self) -> dict[str, KeyHold]:
        """New tasks found waiting for a concurrency key at its limit whose hold a plan has not
        recorded yet (tasks that could start went first): recorded by a later plan without weighing
        them again, unless their key changed meanwhile."""
        return self._owed.values

    def owe(self, holds: Mapping[str, KeyHold], tasks: Mapping[str, TaskView]) -> None:
        """The holds a plan found and left unrecorded (replacing those owed before it): those of
        concurrency keys are kept (a rate key's wait changes with time: weighed again)."""
        self._owed.forget(None)
        for task_id, hold in holds.items():
            task = tasks.get(task_id)
            key = task.spec.concurrency_key if task is not None else None
            if hold.reason == CONCURRENCY_LIMITED and key is not None:
                self._owed.put(key, task_id, hold)

    def release(self, key: str | None) -> None:
        """A slot of `key` may have freed (None: of any key, or limits changed): look again."""
        self._owed.forget(None if key is None else (key,))
        if key is None:
            self.by_key.clear()
            self.tasks.clear()
            return
        tasks = self.by_key.pop(key, None)
        if tasks:
            self.tasks.difference_update(tasks)


LIMIT_EVENTS = (ConcurrencyLimitSet, ConcurrencyLimitRemoved, RateLimitSet, RateLimitRemoved)
KEY_TASK_EVENTS = (TaskAssigned, TaskCompleted, TaskAttemptFailed, TaskFailed, TaskCancelled, TaskRequeued)
"""Events of a task that change its concurrency key's slots or turn."""

Busy = Collection[tuple[str, str]]
"""Keys with a claim of this router in flight: ("c", concurrency key), ("r", rate key)."""


def waits_for_own_claim(state: RouterState, task: TaskView, busy: Busy) -> bool:
    """The task needs a claim of a key this router is claiming already: it waits until that claim
    is applied (the next claim is appended against the key's sequence the one in flight moves)."""
    if not busy:
        return False
    spec = task.spec
    key = spec.concurrency_key
    if key is not None and ("c", key) in busy and not holds(state.keys, task):
        return True
    return (
        spec.rate_limit_key is not None
        and ("r", spec.rate_limit_key) in busy
        and state.keys.taken.get(task.task_id) != task.attempt
    )


def admission(
    state: RouterState,
    task: TaskView,
    now: float,
    limits: Limits,
    blocked: Blocked,
) -> Go | KeyHold | CancelForKey | None:
    """What the task's keys say: go, record a hold, cancel a task, or None (wait; nothing to record).
    The caller has passed over a task of a key found closed or claimed in flight already
    (``passed_over``, ``waits_for_own_claim``: cheaper than anything else it weighs)."""
    if not keyed(task):
        return Go()
    key = task.spec.concurrency_key
    closed = blocked.waits.get(key) if key is not None else None
    if closed is not None and not holds(state.keys, task):
        verdict: Go | Wait | CancelTask = closed  # what the gate answered for the key's other tasks
    else:
        verdict = gate(state.keys, state.fleet, limits, task, now)
    if isinstance(verdict, Go):
        return verdict
    if isinstance(verdict, CancelTask):
        return CancelForKey(task_id=verdict.task_id, attempt=verdict.attempt, reason=verdict.reason)
    assert isinstance(verdict, Wait)
    blocked.close(task, verdict)
    if task.status == "queued" and task.queued_reason == verdict.reason:
        if verdict.reason == CONCURRENCY_LIMITED and not _admitted_before(state, task):
            blocked.parked.setdefault(key or "", set()).add(task.task_id)  # like the key's others
        return None
    return KeyHold(
        task_id=task.task_id,
        attempt=task.attempt,
        reason=verdict.reason,
        detail=verdict.detail,
        eligible_ts=verdict.eligible_ts,
    )


def passed_over(state: RouterState, task: TaskView, blocked: Blocked) -> bool:
    """A task already recorded as waiting for a key found closed, and not admitted by it before."""
    return blocked.passes_over(task) and not _admitted_before(state, task)


def _admitted_before(state: RouterState, task: TaskView) -> bool:
    """The attempt holds its slot or took its tokens already: a closed key does not stop it."""
    return holds(state.keys, task) or state.keys.taken.get(task.task_id) == task.attempt


def before_assign(assign: Assign, task: TaskView, go: Go) -> Assign | ClaimKeys:
    """The assignment, preceded by the claim its task's keys need (if any)."""
    if go.claim is None and go.take is None:
        return assign
    return ClaimKeys(task_id=task.task_id, attempt=task.attempt, assign=assign, claim=go.claim, take=go.take)


def fair_turn(
    state: RouterState,
    index: int,
    task: TaskView,
    now: float,
    limits: Limits,
    skip: Collection[str],
    busy: Busy = (),
    blocked: Blocked | None = None,
) -> TaskView:
    """`task` (at `index` in the queue, admissible) or a later admissible task, among the next
    ``FAIR_WINDOW`` admissible keyed tasks within one aging step of it (and the next ``FAIR_SCAN``
    waiting tasks): one holding its slot
    already (a claimed slot is not left idle), else the one whose key runs the fewest, then whose
    key was served least recently (``fair_pick``)."""
    key = task.spec.concurrency_key
    if key is None or limits.concurrency_of(key) is None:
        return task
    fleet = state.fleet
    horizon = fleet.queue[index][0] + PRIORITY_AGING_S
    weighed = blocked.weighed if blocked is not None else Weighed()
    standings = weighed.values
    candidates = [(task, *_standing(state, task, key))]
    seen = {key}
    for virtual, _seq, task_id in itertools.islice(fleet.queue, index + 1, index + 1 + FAIR_SCAN):
        if virtual > horizon or len(candidates) > FAIR_WINDOW:
            break
        other = fleet.tasks.get(task_id)
        if other is None or task_id in skip or other.not_before_ts > now:
            continue
        other_key = other.spec.concurrency_key
        if other_key is None or other_key in seen or limits.concurrency_of(other_key) is None:
            continue
        if waits_for_own_claim(state, other, busy) or (blocked and passed_over(state, other, blocked)):
            continue
        seen.add(other_key)
        if task_id in standings:
            standing = standings[task_id]
        else:
            verdict = gate(state.keys, fleet, limits, other, now)
            standing = _standing(state, other, other_key, verdict) if isinstance(verdict, Go) else None
            weighed.keep(other_key, other, standing)
            if blocked is not None and isinstance(verdict, Wait):
                blocked.close(other, verdict)
        if standing is not None:
            candidates.append((other, *standing))
    return fair_pick(candidates)


def _standing(state: RouterState, task: TaskView, key: str, go: Go | None = None) -> Standing:
    if go is not None and go.claim is not None:  # the gate counted the key's running tasks
        return (False, go.claim.running, state.keys.served.get(key, 0))
    held = holds(state.keys, task)
    running = running_count(state.keys, state.fleet, key) - (1 if held else 0)
    return (held, running, state.keys.served.get(key, 0))
