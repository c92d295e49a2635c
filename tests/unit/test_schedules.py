"""The schedules domain: slots of intervals and cron expressions, the projection of schedule events,
the ids slots submit under, and what a slot submits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from shared.domain.schedules import (
    SCHEDULES_SPEC,
    SchedulesState,
    count_slots,
    fired_submission,
    first_floor_ms,
    iso_ms,
    ms,
    schedule_target_id,
    slot_after,
    slot_at_or_before,
    task_submission,
    upcoming,
)
from shared.events import (
    AnyEvent,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduledTask,
    ScheduledWorkflow,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    ScheduleSkipped,
    TaskSubmitted,
    WorkflowStep,
    WorkflowSubmitted,
    schedule_scope,
)
from shared.ids import ID_PATTERN
from shared.projection_spec import fold
from shared.recorded import Recorded

T0 = datetime(2025, 7, 28, 10, 0, 20, tzinfo=UTC).timestamp()


def created(schedule_id: str = "s", ts: float = T0, **fields: object) -> ScheduleCreated:
    defaults: dict[str, object] = {"interval_s": 60.0, "task": ScheduledTask(task_type="x")}
    return ScheduleCreated(scope=schedule_scope(schedule_id), ts=ts, **{**defaults, **fields})  # type: ignore[arg-type]


def project(events: Iterable[AnyEvent]) -> SchedulesState:
    return fold(SCHEDULES_SPEC, [Recorded(seq, e.subject, e) for seq, e in enumerate(events, start=1)])


# --- slots --------------------------------------------------------------------------------------------


def test_interval_slots_are_aligned_to_the_epoch_unless_a_start_is_given() -> None:
    hourly = created(interval_s=3600.0)
    assert iso_ms(slot_after(hourly, ms(T0)) or 0) == "2025-07-28T11:00:00.000Z"
    assert iso_ms(slot_at_or_before(hourly, ms(T0)) or 0) == "2025-07-28T10:00:00.000Z"
    started = created(interval_s=3600.0, start_ts=T0 - 20 + 15 * 60)  # 10:15
    assert iso_ms(slot_after(started, ms(T0)) or 0) == "2025-07-28T10:15:00.000Z"
    assert slot_at_or_before(started, ms(T0)) is None  # before its start there is none
    assert iso_ms(slot_after(started, ms(T0) + 3600_000) or 0) == "2025-07-28T11:15:00.000Z"


def test_slots_strictly_after_and_at_or_before_meet_at_a_slot() -> None:
    every_ten = created(interval_s=10.0)
    slot = slot_after(every_ten, ms(T0))
    assert slot is not None and slot == ms(T0) - 20_000 + 30_000
    assert slot_at_or_before(every_ten, slot) == slot
    assert slot_after(every_ten, slot) == slot + 10_000
    cron = created(interval_s=None, cron="*/15 * * * *")
    assert iso_ms(slot_after(cron, ms(T0)) or 0) == "2025-07-28T10:15:00.000Z"
    assert iso_ms(slot_at_or_before(cron, ms(T0)) or 0) == "2025-07-28T10:00:00.000Z"


def test_slots_are_counted_exactly_up_to_a_cap() -> None:
    every_minute = created(interval_s=60.0)
    first = slot_after(every_minute, ms(T0)) or 0
    assert count_slots(every_minute, first, first) == 1
    assert count_slots(every_minute, first, first + 59 * 60_000) == 60
    assert count_slots(every_minute, first, first - 1) == 0
    cron = created(interval_s=None, cron="* * * * *")
    assert count_slots(cron, first, first + 59 * 60_000) == 60
    assert count_slots(cron, first, first + 10**9, cap=500) == 500


def test_the_first_slot_is_after_the_creation_or_at_the_start() -> None:
    assert first_floor_ms(created()) == ms(T0)
    later = created(start_ts=T0 + 100)
    assert first_floor_ms(later) == ms(T0 + 100) - 1  # a slot exactly at the start is the schedule's
    assert first_floor_ms(created(start_ts=T0 - 100)) == ms(T0)


# --- target ids -----------------------------------------------------------------------------------------


def test_a_slots_target_id_is_derived_readable_and_a_valid_id() -> None:
    slot = 1_753_696_800_000
    first = schedule_target_id("nightly-report", slot)
    assert first == schedule_target_id("nightly-report", slot)  # the same on every instance
    assert first.startswith(f"nightly-report-{slot}-")
    assert re.match(ID_PATTERN, first)
    longest = schedule_target_id("s" * 58, slot)
    assert re.match(ID_PATTERN, longest) and len(longest) <= 52
    assert schedule_target_id("s" * 58, slot) != schedule_target_id(
        "s" * 57 + "t", slot
    )  # same 24-char prefix
    assert schedule_target_id("a", slot) != schedule_target_id("a", slot + 1)


def test_a_slots_target_id_keeps_its_exact_form() -> None:
    # Instances of different versions must derive the same id for the same slot.
    assert schedule_target_id("nightly", 1_753_696_800_000) == "nightly-1753696800000-581d12d07b14"


# --- the projection -------------------------------------------------------------------------------------


def test_a_created_schedule_waits_for_its_first_slot_after_creation() -> None:
    view = project([created()]).schedules["s"]
    assert view.status == "active" and view.problem == "" and view.active
    assert view.handled_ms == ms(T0)
    assert view.next_ms == ms(T0) - 20_000 + 60_000


def test_a_fired_slot_moves_the_schedule_on_and_waits_for_its_target() -> None:
    spec = created()
    slot = ms(T0) + 40_000
    target = schedule_target_id("s", slot)
    fired = ScheduleFired(scope=spec.scope, slot_ts=slot / 1000, target_id=target)
    state = project([spec, fired])
    view = state.schedules["s"]
    assert view.handled_ms == slot and view.next_ms == slot + 60_000
    assert view.unsubmitted == {target: slot} and state.targets == {target: "s"}
    assert view.fired_total == 1 and view.last_fired_ms == slot
    state = project([spec, fired, TaskSubmitted(task_id=target, task_type="x", schedule_id="s")])
    assert state.schedules["s"].unsubmitted == {} and state.targets == {}


def test_a_firing_of_a_slot_already_dealt_with_changes_nothing() -> None:
    spec = created()
    slot = ms(T0) + 40_000
    fired = ScheduleFired(scope=spec.scope, slot_ts=slot / 1000, target_id=schedule_target_id("s", slot))
    again = ScheduleFired(scope=spec.scope, slot_ts=slot / 1000, target_id=schedule_target_id("s", slot))
    view = project([spec, fired, again]).schedules["s"]
    assert view.fired_total == 1 and len(view.recent) == 1


def test_skipped_slots_are_dealt_with_and_counted() -> None:
    spec = created()
    skipped = ScheduleSkipped(scope=spec.scope, first_slot_ts=T0 + 40, last_slot_ts=T0 + 40 + 240, slots=5)
    view = project([spec, skipped]).schedules["s"]
    assert view.skipped_total == 5 and view.handled_ms == ms(T0 + 280) and view.next_ms == ms(T0 + 340)


def test_the_slots_of_a_pause_are_passed_over_on_resumption() -> None:
    spec = created()
    paused = SchedulePaused(scope=spec.scope, ts=T0 + 10, reason="maintenance")
    state = project([spec, paused])
    assert state.schedules["s"].status == "paused" and not state.schedules["s"].active
    resumed = ScheduleResumed(scope=spec.scope, ts=T0 + 500)
    view = project([spec, paused, resumed]).schedules["s"]
    assert view.status == "active" and view.handled_ms == ms(T0 + 500)
    assert view.next_ms == ms(T0 - 20 + 540)  # the first slot after the resumption


def test_a_deleted_schedule_never_fires_and_the_oldest_deleted_are_forgotten() -> None:
    events: list[AnyEvent] = []
    for index in range(5):
        spec = created(f"s{index}")
        events += [spec, ScheduleDeleted(scope=spec.scope, reason="gone")]
    state = SchedulesState(max_deleted=3)
    for seq, event in enumerate(events, start=1):
        SCHEDULES_SPEC.apply(state, Recorded(seq, event.subject, event))
    assert sorted(state.schedules) == ["s2", "s3", "s4"]
    assert all(view.status == "deleted" and view.next_ms is None for view in state.schedules.values())


def test_a_schedule_stored_without_the_gateways_checks_is_kept_as_a_problem_that_never_fires() -> None:
    for bad, says in [
        (created(cron="* * * * *"), "exactly one of a cron expression and an interval"),
        (created(interval_s=None, cron="61 * * * *"), "invalid cron expression: minute: 61"),
        (created(interval_s=None), "exactly one of a cron expression and an interval"),
        (created(task=None), "holds no task template"),
        (created(target="workflow"), "holds no workflow template"),
    ]:
        view = project([bad]).schedules["s"]
        assert says in view.problem and view.next_ms is None and not view.active


def test_upcoming_slots_start_after_now_and_stop_while_paused() -> None:
    spec = created(interval_s=None, cron="0 */6 * * *")
    view = project([spec]).schedules["s"]
    assert [iso_ms(slot)[11:16] for slot in upcoming(view, ms(T0), 3)] == ["12:00", "18:00", "00:00"]
    paused = project([spec, SchedulePaused(scope=spec.scope)]).schedules["s"]
    assert upcoming(paused, ms(T0), 3) == []


# --- what a slot submits --------------------------------------------------------------------------------


def test_a_fired_task_is_the_template_under_the_target_id_told_its_slot() -> None:
    template = ScheduledTask(task_type="report", payload={"kind": "daily"}, deadline_s=600.0, priority="high")
    spec = created(task=template)
    view = project([spec]).schedules["s"]
    slot = ms(T0) + 40_000
    event = fired_submission(view, "s-t1", slot, ts=T0 + 41, causation_id="cause")
    assert isinstance(event, TaskSubmitted)
    assert (event.task_id, event.task_type, event.priority, event.schedule_id) == (
        "s-t1",
        "report",
        "high",
        "s",
    )
    assert event.payload == {
        "kind": "daily",
        "schedule": {"schedule_id": "s", "slot_ts": slot / 1000, "slot": iso_ms(slot)},
    }
    assert event.deadline_ts == T0 + 41 + 600 and event.not_before_ts is None
    assert (
        event.submitted_by == "schedule" and event.correlation_id == "s-t1" and event.causation_id == "cause"
    )


def test_a_fired_workflow_is_the_template_under_the_target_id_with_the_slot_in_its_context() -> None:
    template = ScheduledWorkflow(
        name="nightly", steps=[WorkflowStep(step_id="a", task_type="x")], context={"k": 1}
    )
    spec = created(target="workflow", task=None, workflow=template)
    view = project([spec]).schedules["s"]
    event = fired_submission(view, "s-w1", ms(T0), ts=T0)
    assert isinstance(event, WorkflowSubmitted)
    assert event.workflow_id == "s-w1" and event.schedule_id == "s" and event.name == "nightly"
    assert event.context["k"] == 1 and event.context["schedule"]["schedule_id"] == "s"
    kept = ScheduledWorkflow(steps=template.steps, context={"schedule": "mine"})
    spec = created(target="workflow", task=None, workflow=kept)
    own = fired_submission(project([spec]).schedules["s"], "s-w2", ms(T0), ts=T0)
    assert isinstance(own, WorkflowSubmitted) and own.context == {"schedule": "mine"}


def test_a_delayed_tasks_deadline_counts_from_its_start() -> None:
    template = ScheduledTask(task_type="x", deadline_s=60.0)
    now = T0
    delayed = task_submission(
        template, task_id="t", ts=now, submitted_by="gateway", correlation_id="t", not_before_ts=now + 3600
    )
    assert delayed.not_before_ts == now + 3600 and delayed.deadline_ts == now + 3660
    at_once = task_submission(template, task_id="t", ts=now, submitted_by="gateway", correlation_id="t")
    assert at_once.deadline_ts == now + 60
