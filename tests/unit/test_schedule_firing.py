"""Which slots fire (pure): on time, after an outage under each catch-up policy, around pauses and
deletions, a firing cut off before its submission; and deciding again after appending what was
decided finds nothing left to do."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.workflow.firing import FireSlot, SkipSlots, SubmitTarget, decide_schedule, due, next_wake_ms
from shared.domain.schedules import SCHEDULES_SPEC, SchedulesState, ScheduleView, ms, schedule_target_id
from shared.events import (
    AnyEvent,
    CatchUp,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduledTask,
    ScheduleFired,
    SchedulePaused,
    ScheduleSkipped,
    TaskSubmitted,
    schedule_scope,
)
from shared.projection_spec import fold
from shared.recorded import Recorded

T0 = datetime(2025, 7, 28, 10, 0, 0, tzinfo=UTC).timestamp()
MINUTE = 60_000


def created(catch_up: CatchUp = "last", **fields: object) -> ScheduleCreated:
    defaults: dict[str, object] = {"interval_s": 60.0, "task": ScheduledTask(task_type="x"), "ts": T0}
    return ScheduleCreated(scope=schedule_scope("s"), catch_up=catch_up, **{**defaults, **fields})  # type: ignore[arg-type]


def project(events: Iterable[AnyEvent]) -> SchedulesState:
    return fold(SCHEDULES_SPEC, [Recorded(seq, e.subject, e) for seq, e in enumerate(events, start=1)])


def view_of(*events: AnyEvent) -> ScheduleView:
    return project(events).schedules["s"]


def fired(slot: int) -> FireSlot:
    return FireSlot(slot_ms=slot, target_id=schedule_target_id("s", slot), late_ms=0)


def as_events(spec: ScheduleCreated, actions: list[object]) -> list[AnyEvent]:
    """What the shell appends for the actions (the submissions included)."""
    events: list[AnyEvent] = []
    for action in actions:
        if isinstance(action, SkipSlots):
            events.append(
                ScheduleSkipped(
                    scope=spec.scope,
                    first_slot_ts=action.first_ms / 1000,
                    last_slot_ts=action.last_ms / 1000,
                    slots=action.count,
                )
            )
        elif isinstance(action, FireSlot):
            events.append(
                ScheduleFired(scope=spec.scope, slot_ts=action.slot_ms / 1000, target_id=action.target_id)
            )
            events.append(TaskSubmitted(task_id=action.target_id, task_type="x", schedule_id="s"))
        elif isinstance(action, SubmitTarget):
            events.append(TaskSubmitted(task_id=action.target_id, task_type="x", schedule_id="s"))
    return events


# --- on time -------------------------------------------------------------------------------------------


def test_nothing_fires_before_the_first_slot_and_the_slot_fires_at_its_time() -> None:
    for policy in ("none", "last", "all"):
        view = view_of(created(policy))  # type: ignore[arg-type]
        first = ms(T0) + MINUTE
        assert view.next_ms == first
        assert decide_schedule(view, first - 1) == []
        assert decide_schedule(view, first) == [fired(first)]
        late = decide_schedule(view, first + 250)
        assert late == [FireSlot(slot_ms=first, target_id=fired(first).target_id, late_ms=250)]


# --- after an outage ------------------------------------------------------------------------------------


def test_last_fires_the_most_recent_missed_slot_and_skips_the_others() -> None:
    view = view_of(created("last"))
    first = ms(T0) + MINUTE
    now = first + 4 * MINUTE + 30_000  # five slots passed, the last 30 s ago
    actions = decide_schedule(view, now)
    assert actions[0] == SkipSlots(
        first_ms=first, last_ms=first + 3 * MINUTE, count=4, reason=actions[0].reason
    )  # type: ignore[union-attr]
    assert "catch_up=last: 4 slot(s)" in actions[0].reason  # type: ignore[union-attr]
    assert actions[1:] == [
        FireSlot(slot_ms=first + 4 * MINUTE, target_id=fired(first + 4 * MINUTE).target_id, late_ms=30_000)
    ]


def test_all_fires_every_missed_slot_oldest_first() -> None:
    view = view_of(created("all"))
    first = ms(T0) + MINUTE
    actions = decide_schedule(view, first + 4 * MINUTE)
    assert [a.slot_ms for a in actions if isinstance(a, FireSlot)] == [first + k * MINUTE for k in range(5)]
    assert not [a for a in actions if isinstance(a, SkipSlots)]


def test_all_fires_at_most_max_catch_up_slots_the_most_recent_ones() -> None:
    view = view_of(created("all", max_catch_up=3))
    first = ms(T0) + MINUTE
    actions = decide_schedule(view, first + 9 * MINUTE)
    skips = [a for a in actions if isinstance(a, SkipSlots)]
    assert [(s.first_ms, s.last_ms, s.count) for s in skips] == [(first, first + 6 * MINUTE, 7)]
    assert "max_catch_up=3" in skips[0].reason
    assert [a.slot_ms for a in actions if isinstance(a, FireSlot)] == [first + k * MINUTE for k in (7, 8, 9)]


def test_none_skips_every_missed_slot_but_fires_one_within_its_grace() -> None:
    view = view_of(created("none", misfire_grace_s=20.0))
    first = ms(T0) + MINUTE
    within = decide_schedule(view, first + 2 * MINUTE + 15_000)  # the latest slot 15 s ago
    assert [type(a) for a in within] == [SkipSlots, FireSlot]
    assert within[0].count == 2 and within[1].slot_ms == first + 2 * MINUTE  # type: ignore[union-attr]
    beyond = decide_schedule(view, first + 2 * MINUTE + 25_000)  # 25 s ago: missed too
    assert len(beyond) == 1 and isinstance(beyond[0], SkipSlots)
    assert (beyond[0].first_ms, beyond[0].last_ms, beyond[0].count) == (first, first + 2 * MINUTE, 3)
    assert "catch_up=none: 3 slot(s) passed more than misfire_grace_s=20s" in beyond[0].reason


def test_a_long_outage_of_a_per_minute_cron_is_decided_without_walking_every_slot() -> None:
    view = view_of(created("last", interval_s=None, cron="* * * * *"))
    now = ms(T0) + 365 * 24 * 60 * MINUTE  # a year: 525,600 slots
    actions = decide_schedule(view, now)
    skip = actions[0]
    assert isinstance(skip, SkipSlots) and skip.count == 10_000 and "10000+ slot(s)" in skip.reason
    assert isinstance(actions[1], FireSlot) and actions[1].slot_ms == now


# --- pauses, deletions, cut-off firings -------------------------------------------------------------------


def test_a_paused_or_deleted_schedule_fires_nothing() -> None:
    spec = created()
    first = ms(T0) + MINUTE
    assert decide_schedule(view_of(spec, SchedulePaused(scope=spec.scope)), first + MINUTE) == []
    assert decide_schedule(view_of(spec, ScheduleDeleted(scope=spec.scope)), first + MINUTE) == []


def test_a_firing_cut_off_before_its_submission_is_submitted_first_even_once_paused() -> None:
    spec = created()
    slot = ms(T0) + MINUTE
    target = schedule_target_id("s", slot)
    cut_off = ScheduleFired(scope=spec.scope, slot_ts=slot / 1000, target_id=target)
    assert decide_schedule(view_of(spec, cut_off), slot + 1) == [SubmitTarget(target_id=target, slot_ms=slot)]
    later = decide_schedule(view_of(spec, cut_off), slot + MINUTE)
    assert later == [SubmitTarget(target_id=target, slot_ms=slot), fired(slot + MINUTE)]
    paused = view_of(spec, cut_off, SchedulePaused(scope=spec.scope))
    assert decide_schedule(paused, slot + MINUTE) == [SubmitTarget(target_id=target, slot_ms=slot)]
    deleted = view_of(spec, cut_off, ScheduleDeleted(scope=spec.scope))
    assert decide_schedule(deleted, slot + MINUTE) == [SubmitTarget(target_id=target, slot_ms=slot)]
    assert decide_schedule(view_of(spec, cut_off), slot + 1, taken={target}) == []


def test_a_schedule_that_can_never_fire_is_never_decided() -> None:
    bad = created(cron="* * * * *")  # both a cron expression and an interval
    assert decide_schedule(view_of(bad), ms(T0) + 10 * MINUTE) == []


def test_due_and_the_next_wake_up_cover_active_schedules_and_unsubmitted_targets() -> None:
    spec = created()
    first = ms(T0) + MINUTE
    state = project([spec])
    assert due(state, first - 1) == [] and due(state, first) == ["s"]
    assert next_wake_ms(state) == first
    target = schedule_target_id("s", first)
    cut_off = ScheduleFired(scope=spec.scope, slot_ts=first / 1000, target_id=target)
    paused = project([spec, cut_off, SchedulePaused(scope=spec.scope)])
    assert due(paused, first) == ["s"] and next_wake_ms(paused) is None
    assert due(paused, first, taken={target}) == []


# --- deciding again finds nothing -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    policy=st.sampled_from(["none", "last", "all"]),
    interval_s=st.sampled_from([1.0, 7.5, 60.0, 3600.0]),
    max_catch_up=st.integers(1, 20),
    grace_s=st.sampled_from([1.0, 30.0, 600.0]),
    outage=st.tuples(st.integers(0, 300), st.floats(0, 1)),
    then=st.tuples(st.integers(0, 300), st.floats(0, 1)),
)
def test_every_slot_is_fired_or_skipped_once_and_deciding_again_finds_nothing(
    policy: CatchUp,
    interval_s: float,
    max_catch_up: int,
    grace_s: float,
    outage: tuple[int, float],
    then: tuple[int, float],
) -> None:
    outage_ms = round((outage[0] + outage[1]) * interval_s * 1000)
    then_ms = round((then[0] + then[1]) * interval_s * 1000)
    spec = created(policy, interval_s=interval_s, max_catch_up=max_catch_up, misfire_grace_s=grace_s)
    events: list[AnyEvent] = [spec]
    handled: list[int] = []
    skipped = 0
    for now in (ms(T0) + outage_ms, ms(T0) + outage_ms + then_ms):
        actions = decide_schedule(project(events).schedules["s"], now)
        fires = [a.slot_ms for a in actions if isinstance(a, FireSlot)]
        skips = [a for a in actions if isinstance(a, SkipSlots)]
        assert fires == sorted(fires) and all(slot <= now for slot in fires)
        if policy == "all":
            assert len(fires) <= max_catch_up
        if policy == "none":
            assert all(now - slot <= grace_s * 1000 for slot in fires)
        for skip in skips:
            assert not handled or skip.first_ms > handled[-1]
            assert not fires or skip.last_ms < fires[0]
            skipped += skip.count
        handled += fires
        events += as_events(spec, actions)
        assert decide_schedule(project(events).schedules["s"], now) == []  # nothing left, nothing twice
    assert len(handled) == len(set(handled))
    interval = ms(interval_s)
    first = ms(T0) - ms(T0) % interval + interval
    expected = max(0, (ms(T0) + outage_ms + then_ms - first) // interval + 1)
    assert len(handled) + skipped == expected  # every slot up to now: fired or skipped, none forgotten
