"""Schedule firing, the shell: a timer that wakes when the earliest slot comes due, decides, appends.

Every workflow service instance runs it, and they race for each slot; the schedule's last sequence
referees. ``system.schedule_fired`` (and ``system.schedule_skipped``) are appended against it with
derived message ids (``fire:<schedule>:<slot ms>``), so one decision per slot is stored: the other
instances are refused, catch up and find nothing left to do. The target follows with expected 0
under an id derived from the schedule and the slot. A crash between the two appends leaves the
firing in the log without its target, and the next decision, of any instance, submits it (once:
the id is new only once). On start the timer decides at once for every schedule whose slots came
due while no instance ran; the catch-up policy (``firing.py``) says which of them fire.

The timer sleeps until the earliest next slot of all active schedules, or until a schedule event
changes that (created, paused, resumed, deleted, fired elsewhere); it never looks at tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any, Final

from services.workflow.firing import (
    FireSlot,
    ScheduleAction,
    SkipSlots,
    SubmitTarget,
    decide_schedule,
    due,
    next_wake_ms,
)
from services.workflow.view import WorkflowServiceState
from shared.bus import ConcurrencyConflict, EventBus, EventTooDeep, EventTooLarge
from shared.command import retry_on_conflict
from shared.domain.message_ids import schedule_fire_msg_id, schedule_skip_msg_id, schedule_submit_msg_id
from shared.domain.schedules import ScheduleView, fired_submission, ms
from shared.events import ScheduleEvent, ScheduleFired, ScheduleSkipped, TaskSubmitted, schedule_scope
from shared.projection import ProjectionRunner
from shared.recorded import Recorded

MAX_SLEEP_S: Final = 60.0
"""Longest sleep of the timer when nothing is due: a safety net, every change wakes it anyway."""
RETRY_AFTER_S: Final = 1.0
"""Pause before deciding again for a schedule whose decision could not be appended."""
MAX_ROUNDS: Final = 20
"""Decisions in a row for one schedule before the timer gives up on it for this wake-up."""


class Scheduler:
    """Fires the schedules of one workflow service instance's projection."""

    def __init__(
        self,
        bus: EventBus,
        view: ProjectionRunner[WorkflowServiceState],
        log: Any,
        clock: Callable[[], float] = time.time,
        instance: str = "",
    ) -> None:
        self.bus = bus
        self.view = view
        self.log = log
        self.clock = clock
        self.fired = 0
        self.skipped = 0
        self.conflicts = 0
        self._order = random.Random(instance)
        """Each instance takes the schedules due at once in an order of its own, so racing instances
        mostly fire different schedules instead of all contending for the same one in turn."""
        self._taken: set[str] = set()
        """Targets whose id something else already holds: not submitted again."""
        self._changed = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def on_applied(self, recorded: Recorded) -> None:
        """A schedule changed: its next slot may be earlier than the one the timer sleeps until."""
        if isinstance(recorded.event, ScheduleEvent):
            self._changed.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="workflow-schedules")

    async def stop(self) -> None:
        """Finish the decision in hand, then stop; what is left is redone on start."""
        self._stopping = True
        self._changed.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def details(self) -> dict[str, Any]:
        schedules = self.view.state.schedules.schedules.values()
        wake = next_wake_ms(self.view.state.schedules)
        return {
            "active": sum(1 for view in schedules if view.active),
            "slots_fired": self.fired,
            "slots_skipped": self.skipped,
            "conflicts": self.conflicts,
            "next_slot_ts": wake / 1000 if wake is not None else None,
        }

    async def _run(self) -> None:
        while not self._stopping:
            self._changed.clear()
            due_now = due(self.view.state.schedules, ms(self.clock()), self._taken)
            self._order.shuffle(due_now)
            for schedule_id in due_now:
                if self._stopping:
                    return
                try:
                    await self.reconcile(schedule_id)
                except Exception:
                    self.log.exception(
                        "schedule_decision_failed", schedule_id=schedule_id, retry_in_s=RETRY_AFTER_S
                    )
                    await asyncio.sleep(RETRY_AFTER_S)
            wake = next_wake_ms(self.view.state.schedules)
            sleep_s = MAX_SLEEP_S if wake is None else min(MAX_SLEEP_S, (wake - ms(self.clock())) / 1000)
            if sleep_s <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), sleep_s)

    # --- one schedule -----------------------------------------------------------------------------

    async def reconcile(self, schedule_id: str) -> None:
        """Append what ``decide_schedule`` asks for, then ask again, until it asks for nothing."""
        rounds = 0

        async def once() -> int | None:
            """One decision appended; the last sequence written, or None when settled (or stuck)."""
            nonlocal rounds
            view = self.view.state.schedules.schedules.get(schedule_id)
            if view is None:
                return None
            actions = decide_schedule(view, ms(self.clock()), self._taken)
            if not actions:
                return None
            rounds += 1
            if rounds > MAX_ROUNDS:
                self.log.error("schedule_not_settling", schedule_id=schedule_id, actions=repr(actions[:3]))
                return None
            return await self._perform(view, actions)

        while True:
            last = await retry_on_conflict(
                once, self.view.catch_up, what=f"schedule {schedule_id!r}", on_conflict=self._conflicted
            )
            if last is None:
                return
            await self.view.wait_for(last)

    def _conflicted(self) -> None:
        self.conflicts += 1

    async def _perform(self, view: ScheduleView, actions: list[ScheduleAction]) -> int:
        """Append the actions in order, each schedule event against the one before; returns the
        last sequence written (to wait for)."""
        schedule_id = view.schedule_id
        scope = schedule_scope(schedule_id)
        version = await self.view.expected_version("system", scope)
        last = 0
        for action in actions:
            if isinstance(action, SubmitTarget):
                last = max(last, await self._submit(view, action.target_id, action.slot_ms, cause=""))
                continue
            if isinstance(action, SkipSlots):
                skipped = ScheduleSkipped(
                    scope=scope,
                    first_slot_ts=action.first_ms / 1000,
                    last_slot_ts=action.last_ms / 1000,
                    slots=action.count,
                    reason=action.reason,
                    correlation_id=scope,
                )
                result = await self.bus.append(
                    skipped, expected=version, msg_id=schedule_skip_msg_id(schedule_id, action.last_ms)
                )
                version = last = max(version, result.seq)
                if not result.duplicate:
                    self.skipped += action.count
                    self.log.info(
                        "schedule_slots_skipped",
                        schedule_id=schedule_id,
                        slots=action.count,
                        reason=action.reason,
                    )
                continue
            assert isinstance(action, FireSlot)
            fired = ScheduleFired(
                scope=scope,
                slot_ts=action.slot_ms / 1000,
                target_id=action.target_id,
                target=view.spec.target,
                late_s=max(action.late_ms, 0) / 1000,
                correlation_id=scope,
            )
            result = await self.bus.append(
                fired, expected=version, msg_id=schedule_fire_msg_id(schedule_id, action.slot_ms)
            )
            version = last = max(version, result.seq)
            if not result.duplicate:
                self.fired += 1
                self.log.info(
                    "schedule_fired", schedule_id=schedule_id, target_id=action.target_id, late_s=fired.late_s
                )
            last = max(last, await self._submit(view, action.target_id, action.slot_ms, cause=fired.id))
        return last

    async def _submit(self, view: ScheduleView, target_id: str, slot_ms: int, cause: str) -> int:
        """Submit a fired slot's target; if its id is already in the log, return where, to wait for."""
        event = fired_submission(view, target_id, slot_ms, self.clock(), cause)
        aggregate = "task" if isinstance(event, TaskSubmitted) else "workflow"
        try:
            result = await self.bus.append(event, expected=0, msg_id=schedule_submit_msg_id(target_id))
        except ConcurrencyConflict:  # not retried: the id exists, by this target (it is then seen) or another
            seq = await self.bus.aggregate_version(aggregate, target_id)
            await self.view.wait_for(seq)
            if target_id in self.view.state.schedules.targets:
                self._taken.add(target_id)
                self.log.error(
                    "schedule_target_taken",
                    schedule_id=view.schedule_id,
                    target_id=target_id,
                    detail=f"a {aggregate} with this id existed before the slot fired: it submits nothing",
                )
            return seq
        except (EventTooLarge, EventTooDeep) as exc:
            self._taken.add(target_id)
            self.log.error(
                "schedule_target_refused", schedule_id=view.schedule_id, target_id=target_id, error=str(exc)
            )
            return 0
        return result.seq
