"""Schedules: their slots, the projection of their events, and what a slot submits. Pure.

A schedule's *slots* are the times its cron expression (minutes, UTC) or its interval (every
``interval_s`` from ``start_ts``, else from the Unix epoch) names. Times are kept here as whole
milliseconds, so slots compare and key exactly. Each schedule remembers the last slot it has dealt
with (``handled_ms``: the creation, a resumption, the last slot fired or skipped) and the next slot
after it (``next_ms``): the slot the workflow service fires next, once its time has come.

A slot fires as two appends: ``system.schedule_fired`` (on the schedule, guarded by its last
sequence), then the target's submission (a task or a workflow whose id is derived from the
schedule and the slot, appended with expected 0). ``unsubmitted`` holds the slots fired whose
submission the log does not hold yet, so a crash between the two appends is completed by the next
decision.

``task_submission`` and ``workflow_submission`` build the ``task.submitted`` / ``workflow.submitted``
a template makes: the gateway's ``task/assign`` and ``workflow/execute`` go through them as well, so
a scheduled task is exactly the task the same body would submit by hand.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

from shared.domain.cron import CronError, parse_cron
from shared.events import (
    SCHEDULE_SCOPE_PREFIX,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduledTask,
    ScheduledWorkflow,
    ScheduleEvent,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    ScheduleSkipped,
    TaskSubmitted,
    WorkflowSubmitted,
)
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded

ScheduleStatus = Literal["active", "paused", "deleted"]
MAX_COUNTED_SLOTS: Final = 10_000
"""Skipped slots are counted up to this many (a long outage of a per-minute schedule is not walked)."""
RECENT_FIRINGS: Final = 20
"""Firings each schedule keeps in memory for its status (the log keeps all of them)."""
MAX_SCHEDULE_ID_CHARS: Final = 64 - len(SCHEDULE_SCOPE_PREFIX)
"""A schedule's events live on ``hive.evt.system.sched-<id>.*``: its id leaves room for the prefix."""


def ms(ts: float) -> int:
    """Unix seconds as whole milliseconds."""
    return round(ts * 1000)


def iso_ms(at_ms: int) -> str:
    """A slot as ISO-8601 UTC, e.g. ``2025-07-28T19:30:00.000Z``."""
    moment = datetime.fromtimestamp(at_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def schedule_target_id(schedule_id: str, slot_ms: int) -> str:
    """The id of the task or workflow a slot submits: readable, unique, at most 52 characters.

    Derived, never random, so every instance (and a decision redone after a crash) submits the very
    same target, which the log accepts once.
    """
    digest = hashlib.sha256(f"{schedule_id}\x00{slot_ms}".encode()).hexdigest()[:12]
    return f"{schedule_id[:24]}-{slot_ms}-{digest}"


# --- slots ----------------------------------------------------------------------------------------


def spec_problem(spec: ScheduleCreated) -> str:
    """Why a schedule as stored can never fire ('' when it can): it bypassed the gateway's checks."""
    if bool(spec.cron) == (spec.interval_s is not None):
        return "a schedule needs exactly one of a cron expression and an interval"
    if spec.interval_s is not None and ms(spec.interval_s) < 1:
        return f"interval {spec.interval_s}s is shorter than a millisecond"
    if spec.cron:
        try:
            parse_cron(spec.cron)
        except CronError as exc:
            return f"invalid cron expression: {exc}"
    wanted = spec.task if spec.target == "task" else spec.workflow
    if wanted is None:
        return f"its target is a {spec.target} but it holds no {spec.target} template"
    return ""


def slot_after(spec: ScheduleCreated, after_ms: int) -> int | None:
    """The first slot strictly after `after_ms` (None: the schedule has no slots)."""
    if spec.interval_s is not None:
        interval = ms(spec.interval_s)
        if interval < 1:
            return None
        origin = ms(spec.start_ts) if spec.start_ts is not None else 0
        steps = (after_ms - origin) // interval + 1
        return origin + max(steps, 0) * interval
    try:
        cron = parse_cron(spec.cron)
        return cron.next_after(after_ms / 1000) * 1000
    except (CronError, ValueError, OverflowError):
        return None


def slot_at_or_before(spec: ScheduleCreated, at_ms: int) -> int | None:
    """The last slot at or before `at_ms` (None: there is none)."""
    if spec.interval_s is not None:
        interval = ms(spec.interval_s)
        if interval < 1:
            return None
        origin = ms(spec.start_ts) if spec.start_ts is not None else 0
        if at_ms < origin:
            return None
        return origin + ((at_ms - origin) // interval) * interval
    try:
        found = parse_cron(spec.cron).latest_at_or_before(at_ms / 1000)
    except (CronError, ValueError, OverflowError):
        return None
    return None if found is None else found * 1000


def count_slots(spec: ScheduleCreated, first_ms: int, last_ms: int, cap: int = MAX_COUNTED_SLOTS) -> int:
    """How many slots lie in [first_ms, last_ms] (both slots), counted up to `cap`."""
    if last_ms < first_ms:
        return 0
    if spec.interval_s is not None:
        return min(cap, (last_ms - first_ms) // max(ms(spec.interval_s), 1) + 1)
    count, slot = 0, first_ms
    while count < cap:
        count += 1
        following = slot_after(spec, slot)
        if following is None or following > last_ms:
            break
        slot = following
    return count


def first_floor_ms(spec: ScheduleCreated) -> int:
    """Before any firing, slots at or before this are not the schedule's: its creation, or just
    before its ``start_ts`` when that is later (a slot exactly at the start fires)."""
    created = ms(spec.ts)
    if spec.start_ts is None:
        return created
    return max(created, ms(spec.start_ts) - 1)


# --- the projection -------------------------------------------------------------------------------


class Firing(msgspec.Struct, kw_only=True):
    slot_ms: int
    target_id: str
    fired_ts: float
    late_s: float = 0.0


class ScheduleView(msgspec.Struct, kw_only=True):
    spec: ScheduleCreated
    status: ScheduleStatus = "active"
    problem: str = ""
    """Why it can never fire (a schedule published without the gateway's checks)."""
    reason: str = ""
    """Of the last pause, resumption or deletion."""
    created_seq: int = 0
    changed_ts: float = 0.0
    handled_ms: int = 0
    """Every slot at or before this is dealt with: before the creation, fired, skipped or paused over."""
    next_ms: int | None = None
    """The first slot after ``handled_ms``: the next to fire (or to skip), once its time has come."""
    fired_total: int = 0
    skipped_total: int = 0
    last_fired_ms: int | None = None
    recent: list[Firing] = []
    """The last ``RECENT_FIRINGS`` firings, oldest first."""
    unsubmitted: dict[str, int] = {}
    """Targets fired whose submission is not in the log yet: target id -> slot (ms)."""

    @property
    def schedule_id(self) -> str:
        return self.spec.schedule_id

    @property
    def active(self) -> bool:
        return self.status == "active" and not self.problem


class SchedulesState(msgspec.Struct, kw_only=True):
    schedules: dict[str, ScheduleView] = {}
    targets: dict[str, str] = {}
    """Every unsubmitted target, across schedules: target id -> schedule id."""
    deleted: list[str] = []
    """Deleted schedules, oldest first; beyond ``max_deleted`` the oldest are forgotten."""
    max_deleted: int = 1_000


def _handled(view: ScheduleView, handled_ms: int) -> None:
    """Everything up to `handled_ms` is dealt with; the next slot is the first after it."""
    view.handled_ms = max(view.handled_ms, handled_ms)
    view.next_ms = slot_after(view.spec, view.handled_ms) if not view.problem else None


def apply_schedules(state: SchedulesState, recorded: Recorded) -> SchedulesState:
    event = recorded.event
    if isinstance(event, TaskSubmitted | WorkflowSubmitted):
        target_id = event.task_id if isinstance(event, TaskSubmitted) else event.workflow_id
        owner = state.targets.pop(target_id, None)
        if owner is not None and (view := state.schedules.get(owner)) is not None:
            view.unsubmitted.pop(target_id, None)
        return state
    if not isinstance(event, ScheduleEvent):
        return state
    schedule_id = event.schedule_id
    if isinstance(event, ScheduleCreated):
        if schedule_id in state.schedules:
            return state
        view = ScheduleView(spec=event, created_seq=recorded.seq, changed_ts=event.ts)
        view.problem = spec_problem(event)
        _handled(view, first_floor_ms(event))
        state.schedules[schedule_id] = view
        return state
    found = state.schedules.get(schedule_id)
    if found is None:
        return state
    view = found
    match event:
        case ScheduleFired():
            slot = ms(event.slot_ts)
            if slot <= view.handled_ms:
                return state
            view.fired_total += 1
            view.last_fired_ms = slot
            view.recent.append(
                Firing(slot_ms=slot, target_id=event.target_id, fired_ts=event.ts, late_s=event.late_s)
            )
            del view.recent[:-RECENT_FIRINGS]
            view.unsubmitted[event.target_id] = slot
            state.targets[event.target_id] = schedule_id
            _handled(view, slot)
        case ScheduleSkipped():
            last = ms(event.last_slot_ts)
            if last > view.handled_ms:
                view.skipped_total += event.slots
                _handled(view, last)
        case SchedulePaused():
            if view.status == "active":
                view.status = "paused"
                view.reason = event.reason
                view.changed_ts = event.ts
        case ScheduleResumed():
            if view.status == "paused":
                view.status = "active"
                view.reason = event.reason
                view.changed_ts = event.ts
                _handled(view, ms(event.ts))  # the slots of the pause are not caught up
        case ScheduleDeleted():
            if view.status != "deleted":
                view.status = "deleted"
                view.reason = event.reason
                view.changed_ts = event.ts
                view.next_ms = None
                _forget_old(state, schedule_id)
    return state


def _forget_old(state: SchedulesState, schedule_id: str) -> None:
    state.deleted.append(schedule_id)
    if len(state.deleted) <= state.max_deleted:
        return
    for old in state.deleted[: -state.max_deleted]:
        view = state.schedules.get(old)
        if view is not None and not view.unsubmitted:
            del state.schedules[old]
    del state.deleted[: -state.max_deleted]


SCHEDULES_SPEC: ProjectionSpec[SchedulesState] = ProjectionSpec(
    name="schedules", state_type=SchedulesState, initial=SchedulesState, apply=apply_schedules
)
"""The schedules alone, for folding one schedule's events (one no longer kept in memory)."""


def upcoming(view: ScheduleView, now_ms: int, count: int) -> list[int]:
    """The next `count` slots after now (and after everything dealt with) while it is active."""
    if not view.active:
        return []
    found: list[int] = []
    slot = slot_after(view.spec, max(view.handled_ms, now_ms))
    while slot is not None and len(found) < count:
        found.append(slot)
        slot = slot_after(view.spec, slot)
    return found


# --- what a slot submits --------------------------------------------------------------------------


def with_key(mapping: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """`mapping` with `value` under `key` for the agent, unless empty or the mapping has the key."""
    if not value or key in mapping:
        return mapping
    return {**mapping, key: value}


def task_submission(
    template: ScheduledTask,
    *,
    task_id: str,
    ts: float,
    submitted_by: str,
    correlation_id: str,
    causation_id: str = "",
    not_before_ts: float | None = None,
    schedule_id: str | None = None,
) -> TaskSubmitted:
    """The ``task.submitted`` a template makes at `ts`: its deadline counts from its start (the
    later of `ts` and `not_before_ts`)."""
    start = max(ts, not_before_ts or 0.0)
    return TaskSubmitted(
        task_id=task_id,
        task_type=template.task_type,
        name=template.name,
        description=template.description,
        priority=template.priority,
        required_capabilities=template.required_capabilities,
        profile=template.profile,
        routing_strategy=template.routing_strategy,
        expected_quality_threshold=template.expected_quality_threshold,
        payload=template.payload,
        timeout_s=template.timeout_s,
        retry=template.retry,
        deadline_ts=start + template.deadline_s if template.deadline_s is not None else None,
        estimated_duration_s=template.estimated_duration_s,
        quality_wait_s=template.quality_wait_s,
        resource_constraints=template.resource_constraints,
        concurrency_key=template.concurrency_key,
        rate_limit_key=template.rate_limit_key,
        units=template.units,
        affinity_key=template.affinity_key,
        affinity=template.affinity,
        labels=template.labels,
        label_rules=template.label_rules,
        not_before_ts=not_before_ts,
        schedule_id=schedule_id,
        submitted_by=submitted_by,
        correlation_id=correlation_id,
        causation_id=causation_id,
        ts=ts,
    )


def workflow_submission(
    template: ScheduledWorkflow,
    *,
    workflow_id: str,
    correlation_id: str,
    causation_id: str = "",
    schedule_id: str | None = None,
) -> WorkflowSubmitted:
    """The ``workflow.submitted`` a template makes."""
    return WorkflowSubmitted(
        workflow_id=workflow_id,
        name=template.name,
        description=template.description,
        execution_mode=template.execution_mode,
        optimization_goal=template.optimization_goal,
        template=template.template,
        steps=template.steps,
        resource_allocation=template.resource_allocation,
        max_concurrent_tasks=template.max_concurrent_tasks,
        quality_threshold=template.quality_threshold,
        failure_tolerance=template.failure_tolerance,
        max_duration_s=template.max_duration_s,
        context=template.context,
        schedule_id=schedule_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )


def slot_note(schedule_id: str, slot_ms: int) -> dict[str, Any]:
    """What the agent learns of the slot it works for: ``payload.schedule`` (or ``context.schedule``)."""
    return {"schedule_id": schedule_id, "slot_ts": slot_ms / 1000, "slot": iso_ms(slot_ms)}


def fired_submission(
    view: ScheduleView, target_id: str, slot_ms: int, ts: float, causation_id: str = ""
) -> TaskSubmitted | WorkflowSubmitted:
    """What a fired slot submits: the schedule's template, under the target id, told its slot."""
    spec = view.spec
    note = slot_note(view.schedule_id, slot_ms)
    if spec.target == "workflow" and spec.workflow is not None:
        template = msgspec.structs.replace(
            spec.workflow, context=with_key(spec.workflow.context, "schedule", note)
        )
        return workflow_submission(
            template,
            workflow_id=target_id,
            correlation_id=target_id,
            causation_id=causation_id,
            schedule_id=view.schedule_id,
        )
    assert spec.task is not None  # spec_problem refuses a schedule without its template
    task = msgspec.structs.replace(spec.task, payload=with_key(spec.task.payload, "schedule", note))
    return task_submission(
        task,
        task_id=target_id,
        ts=ts,
        submitted_by="schedule",
        correlation_id=target_id,
        causation_id=causation_id,
        schedule_id=view.schedule_id,
    )
