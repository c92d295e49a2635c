"""HTTP bodies of the schedule endpoints (msgspec; OpenAPI is generated from them)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.gateway.schemas import TaskAssignRequest
from services.gateway.workflow_schemas import WorkflowExecuteRequest
from shared.domain.cron import MAX_EXPRESSION_CHARS
from shared.domain.schedules import MAX_SCHEDULE_ID_CHARS
from shared.events import CatchUp, ScheduledTask, ScheduledWorkflow, ScheduleTarget
from shared.ids import ID_PATTERN

ScheduleId = Annotated[
    str,
    Meta(
        pattern=ID_PATTERN,
        max_length=MAX_SCHEDULE_ID_CHARS,
        description=f"letters, digits, '_' or '-', 1-{MAX_SCHEDULE_ID_CHARS} chars",
    ),
]
ScheduleStatusOut = Literal["active", "paused", "deleted", "invalid"]


class ScheduleRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A schedule: exactly one of ``cron`` and ``interval_seconds``, exactly one of ``task`` and
    ``workflow`` (the body of task/assign or workflow/execute, without its id)."""

    schedule_id: ScheduleId | None = None
    name: Annotated[str, Meta(max_length=200)] = ""
    description: Annotated[str, Meta(max_length=2000)] = ""
    cron: Annotated[str, Meta(max_length=MAX_EXPRESSION_CHARS)] | None = None
    """Five fields, UTC: minute hour day-of-month month day-of-week (e.g. ``*/15 9-17 * * mon-fri``),
    or a macro (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``)."""
    interval_seconds: Annotated[float, Meta(ge=1, le=31_622_400)] | None = None
    """A slot every this many seconds, counted from start_at (else from the Unix epoch: 3600 fires
    on the hour)."""
    start_at: Annotated[str, Meta(max_length=64)] | Annotated[float, Meta(ge=0)] | None = None
    """No slot before this time (ISO-8601 or Unix seconds); with an interval, the first slot."""
    catch_up: CatchUp = "last"
    """Slots that came due while no workflow service instance ran: ``none`` skips them, ``last``
    fires the most recent once, ``all`` fires each (at most max_catch_up, the most recent)."""
    max_catch_up: Annotated[int, Meta(ge=1, le=1000)] = 100
    misfire_grace_seconds: Annotated[float, Meta(ge=1, le=86_400)] = 60.0
    """With catch_up none: a slot still fires this long after its time; later, it is missed."""
    task: TaskAssignRequest | None = None
    workflow: WorkflowExecuteRequest | None = None


class NextFiring(msgspec.Struct, kw_only=True):
    ts: float
    at: str
    """ISO-8601 UTC."""


class FiringOut(msgspec.Struct, kw_only=True):
    slot_ts: float
    slot: str
    """The slot's time, ISO-8601 UTC."""
    target_id: str
    """The id of the task or workflow it submitted."""
    fired_ts: float
    late_s: float


class ScheduleOut(msgspec.Struct, kw_only=True):
    schedule_id: str
    name: str
    description: str
    status: ScheduleStatusOut
    """``invalid``: stored without the gateway's checks and never fires (``problem`` says why)."""
    reason: str
    """Of the last pause, resumption or deletion."""
    problem: str
    cron: str | None
    interval_seconds: float | None
    start_ts: float | None
    catch_up: str
    max_catch_up: int
    misfire_grace_seconds: float
    target: ScheduleTarget
    task: ScheduledTask | None
    """The task each slot submits, as stored (``task.submitted``'s field names)."""
    workflow: ScheduledWorkflow | None
    """The workflow each slot submits, as stored (``workflow.submitted``'s field names)."""
    created_ts: float
    next_firings: list[NextFiring]
    """The next slots (up to 5) while it is active."""
    due_since_ts: float | None
    """A slot whose time has come and that no workflow service instance has fired yet."""
    fired_total: int
    skipped_total: int
    """Slots the catch-up policy skipped (``system.schedule_skipped``)."""
    last_fired_slot_ts: float | None
    recent_firings: list[FiringOut]
    """The last 20 firings, oldest first."""
    seq: int


class ScheduleSummary(msgspec.Struct, kw_only=True):
    schedule_id: str
    name: str
    status: ScheduleStatusOut
    cron: str | None
    interval_seconds: float | None
    target: ScheduleTarget
    next_firing: NextFiring | None
    fired_total: int
    last_fired_slot_ts: float | None
    created_ts: float


class ScheduleChangeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=2000)] = ""


class ScheduleChange(msgspec.Struct, kw_only=True):
    schedule_id: str
    status: ScheduleStatusOut
    seq: int
