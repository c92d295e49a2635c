"""Which slots of a schedule fire now, pure: from the schedules projection and `now`. No NATS, no clock.

``decide_schedule`` is level-triggered like the workflow decisions: it compares what the schedule
asks for with what the log holds and returns every action still missing, so a decision redone
after a crash, a conflict or by another instance finds nothing left, or exactly what was cut off:

* submit the target of every slot fired whose submission the log does not hold (a crash between
  ``system.schedule_fired`` and the submission), also once the schedule is paused or deleted;
* while the schedule is active and its next slot's time has come, fire the slots the catch-up
  policy keeps and skip the others (``system.schedule_skipped``, with the reason):

  - ``last`` (default): the most recent slot fires, the older ones are skipped;
  - ``all``: every slot fires, oldest first, but at most ``max_catch_up`` (the most recent ones);
  - ``none``: the most recent slot fires only if its time is at most ``misfire_grace_s`` ago;
    every other slot is skipped.

  When an instance runs all along, only one slot is ever due at a time and every policy fires it;
  the policies differ only after slots came due while no instance could fire them.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from shared.domain.schedules import (
    SchedulesState,
    ScheduleView,
    count_slots,
    iso_ms,
    ms,
    schedule_target_id,
    slot_at_or_before,
)


class SubmitTarget(msgspec.Struct, frozen=True, kw_only=True):
    """The slot's firing is recorded but its target is not in the log: submit it (expected 0)."""

    target_id: str
    slot_ms: int


class SkipSlots(msgspec.Struct, frozen=True, kw_only=True):
    """Record that the slots in [first_ms, last_ms] will not fire, and why."""

    first_ms: int
    last_ms: int
    count: int
    reason: str


class FireSlot(msgspec.Struct, frozen=True, kw_only=True):
    """Record that the slot fires (``system.schedule_fired``), then submit its target."""

    slot_ms: int
    target_id: str
    late_ms: int


ScheduleAction = SubmitTarget | SkipSlots | FireSlot


def decide_schedule(view: ScheduleView, now_ms: int, taken: Collection[str] = ()) -> list[ScheduleAction]:
    """Every action the schedule needs now, in the order to append them (empty: nothing to do).

    `taken`: target ids whose submission was refused because something else already holds the id;
    they are not submitted again.
    """
    actions: list[ScheduleAction] = [
        SubmitTarget(target_id=target_id, slot_ms=slot)
        for target_id, slot in sorted(view.unsubmitted.items(), key=lambda item: item[1])
        if target_id not in taken
    ]
    first = view.next_ms
    if not view.active or first is None or first > now_ms:
        return actions
    latest = slot_at_or_before(view.spec, now_ms)
    if latest is None or latest < first:
        latest = first
    fire = _kept(view, first, latest, now_ms)
    last_skipped = latest if not fire else slot_at_or_before(view.spec, fire[0] - 1)
    if last_skipped is not None and last_skipped >= first:
        count = count_slots(view.spec, first, last_skipped)
        actions.append(
            SkipSlots(
                first_ms=first,
                last_ms=last_skipped,
                count=count,
                reason=_why_skipped(view, count, fire, now_ms),
            )
        )
    actions.extend(
        FireSlot(slot_ms=slot, target_id=schedule_target_id(view.schedule_id, slot), late_ms=now_ms - slot)
        for slot in fire
    )
    return actions


def _kept(view: ScheduleView, first: int, latest: int, now_ms: int) -> list[int]:
    """The slots in [first, latest] the catch-up policy fires, oldest first."""
    spec = view.spec
    if spec.catch_up == "none":
        return [latest] if now_ms - latest <= ms(spec.misfire_grace_s) else []
    kept = [latest]
    if spec.catch_up == "all":
        while len(kept) < spec.max_catch_up:
            before = slot_at_or_before(spec, kept[0] - 1)
            if before is None or before < first:
                break
            kept.insert(0, before)
    return kept


def _why_skipped(view: ScheduleView, count: int, fire: list[int], now_ms: int) -> str:
    spec = view.spec
    slots = f"{count}{'+' if count >= 10_000 else ''} slot(s)"
    if spec.catch_up == "none":
        return (
            f"catch_up=none: {slots} passed more than misfire_grace_s={spec.misfire_grace_s:g}s before an "
            "instance could fire them"
        )
    if spec.catch_up == "all":
        return (
            f"catch_up=all: more slots came due than max_catch_up={spec.max_catch_up} while no instance "
            f"could fire them; the {len(fire)} most recent fire, {slots} before them do not"
        )
    return (
        f"catch_up=last: {slots} came due while no instance could fire them; only the most recent "
        f"({iso_ms(fire[-1])}) fires"
    )


def due(state: SchedulesState, now_ms: int, taken: Collection[str] = ()) -> list[str]:
    """The schedules that need a decision now: a slot's time has come, or a target is unsubmitted."""
    return [
        schedule_id
        for schedule_id, view in state.schedules.items()
        if (view.active and view.next_ms is not None and view.next_ms <= now_ms)
        or any(target_id not in taken for target_id in view.unsubmitted)
    ]


def next_wake_ms(state: SchedulesState) -> int | None:
    """When the earliest next slot of an active schedule comes due."""
    return min(
        (view.next_ms for view in state.schedules.values() if view.active and view.next_ms is not None),
        default=None,
    )
