"""Schedules on real services: slots fire and their tasks complete, several workflow instances fire
each slot once, a restart after missed slots follows each catch-up policy, a firing cut off before
its submission is completed, pause/resume/delete, and bad schedules refused naming the field."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from services.gateway.service import GatewayService
from services.workflow.service import WorkflowService
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.domain.schedules import ms, schedule_target_id
from shared.events import (
    AnyEvent,
    ScheduleCreated,
    ScheduledTask,
    ScheduleFired,
    ScheduleSkipped,
    TaskCompleted,
    TaskSubmitted,
    WorkflowCompleted,
    WorkflowSubmitted,
    schedule_scope,
)
from shared.settings import Settings
from tests.conftest import EventLog, running
from tests.integration.workflow_helpers import hive

SCHEDULES = "/api/v1/schedules"


@asynccontextmanager
async def gateway_only(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway alone, and an HTTP client of it."""
    async with (
        running(GatewayService, settings) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http,
    ):
        yield http


def fired_of(schedule_id: str) -> Any:
    def fired(events: list[AnyEvent]) -> list[ScheduleFired]:
        return [e for e in events if isinstance(e, ScheduleFired) and e.schedule_id == schedule_id]

    return fired


def skipped_of(events: list[AnyEvent], schedule_id: str) -> list[ScheduleSkipped]:
    return [e for e in events if isinstance(e, ScheduleSkipped) and e.schedule_id == schedule_id]


class Recorder:
    """A handler that keeps the payload of every task it completes."""

    def __init__(self) -> None:
        self.payloads: dict[str, dict[str, Any]] = {}

    async def __call__(self, context: TaskContext) -> str:
        self.payloads[context.task_id] = dict(context.payload)
        return "done"


async def test_a_schedule_with_a_short_interval_fires_and_its_tasks_complete(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    recorder = Recorder()
    agent = Agent("worker", recorder, capabilities=["report"], capacity=4)
    body = {
        "schedule_id": "every-second",
        "name": "a report every second",
        "interval_seconds": 1,
        "catch_up": "all",  # a slot decided late on a busy machine still fires: the slots stay contiguous
        "task": {"task_type": "report", "payload": {"kind": "short"}, "priority": "high"},
    }
    fired = fired_of("every-second")
    async with hive(settings) as h:
        await agent.start(bus)
        created = await h.http.post(SCHEDULES, json=body)
        assert created.status_code == 201, created.text
        answer = created.json()
        assert answer["status"] == "active" and answer["interval_seconds"] == 1
        assert len(answer["next_firings"]) == 5 and answer["next_firings"][0]["ts"] > time.time() - 1

        def three_completed(events: list[AnyEvent]) -> bool:
            targets = {e.target_id for e in fired(events)}
            done = {e.task_id for e in events if isinstance(e, TaskCompleted)}
            return len(targets) >= 3 and len(targets & done) >= 3

        await event_log.wait_for(three_completed, timeout=15)
        status = (
            await h.http.get(f"{SCHEDULES}/every-second", params={"after_seq": max(event_log.seqs)})
        ).json()
        listed = (await h.http.get(SCHEDULES)).json()
        await agent.stop()
    firings = fired(event_log.events)
    slots = [ms(e.slot_ts) for e in firings]
    assert slots == sorted(slots) and all(b - a == 1000 for a, b in itertools.pairwise(slots))
    for firing in firings[:3]:
        assert firing.target_id == schedule_target_id("every-second", ms(firing.slot_ts))
        payload = recorder.payloads[firing.target_id]
        assert payload["kind"] == "short" and payload["schedule"]["schedule_id"] == "every-second"
        assert payload["schedule"]["slot_ts"] == firing.slot_ts
    submitted = [e for e in event_log.of_type(TaskSubmitted) if e.schedule_id == "every-second"]
    assert all(e.priority == "high" and e.submitted_by == "schedule" for e in submitted)
    assert Counter(e.task_id for e in submitted) == Counter(e.target_id for e in firings)
    assert status["fired_total"] >= 3 and status["recent_firings"][0]["target_id"] == firings[0].target_id
    assert [s["schedule_id"] for s in listed] == ["every-second"] and listed[0]["next_firing"] is not None


async def test_two_workflow_instances_fire_each_slot_once(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    agent = Agent("worker", Recorder(), capabilities=["x"], capacity=16)
    names = ("twice-a", "twice-b", "twice-c")
    async with hive(settings, workflow_instances=2) as h:
        await agent.start(bus)
        for name in names:
            # catch_up all: a slot decided late on a busy machine still fires, so none is skipped
            body = {"schedule_id": name, "interval_seconds": 1, "catch_up": "all", "task": {"task_type": "x"}}
            assert (await h.http.post(SCHEDULES, json=body)).status_code == 201
        await event_log.wait_for(lambda events: all(len(fired_of(n)(events)) >= 5 for n in names), timeout=15)
        await agent.stop()
    for name in names:
        slots = Counter(ms(e.slot_ts) for e in fired_of(name)(event_log.events))
        assert all(count == 1 for count in slots.values()), name  # each slot fired once
        ordered = sorted(slots)
        assert all(b - a == 1000 for a, b in itertools.pairwise(ordered)), name  # and none skipped
        submitted = Counter(e.task_id for e in event_log.of_type(TaskSubmitted) if e.schedule_id == name)
        assert all(count == 1 for count in submitted.values()), name
        assert set(submitted) >= {e.target_id for e in fired_of(name)(event_log.events)[:4]}
    assert not [e for e in event_log.events if isinstance(e, ScheduleSkipped)]


class Later(WorkflowService):
    """A workflow service instance started long after the others stopped: its clock says so."""

    shift_s = 0.0
    clock = staticmethod(lambda: time.time() + Later.shift_s)


async def test_a_restart_after_missed_slots_follows_each_catch_up_policy(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    start = (int(time.time()) // 60 + 60) * 60  # an hour ahead, on the minute: nothing is due yet
    policies = {
        "skip-all": {"catch_up": "none", "misfire_grace_seconds": 10},
        "most-recent": {"catch_up": "last"},
        "five": {"catch_up": "all", "max_catch_up": 5},
        "every": {"catch_up": "all"},
    }
    async with running(GatewayService, settings) as gateway:
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10)
        async with http, running(WorkflowService, settings):
            for schedule_id, policy in policies.items():
                body = {
                    "schedule_id": schedule_id,
                    "interval_seconds": 60,
                    "start_at": start,
                    "task": {"task_type": "nobody-takes-it"},
                    **policy,
                }
                assert (await http.post(SCHEDULES, json=body)).status_code == 201
        # The workflow service was stopped; ten slots pass (start ... start + 9 min), the last 30 s ago.
        Later.shift_s = start + 9 * 60 + 30 - time.time()
        async with running(Later, settings):

            def decided(events: list[AnyEvent]) -> bool:
                return (
                    len(skipped_of(events, "skip-all")) == 1
                    and len(fired_of("most-recent")(events)) == 1
                    and len(fired_of("five")(events)) == 5
                    and len(fired_of("every")(events)) == 10
                    and len([e for e in events if isinstance(e, TaskSubmitted)]) == 16
                )

            await event_log.wait_for(decided, timeout=15)
    events = event_log.events
    slot = [(start + 60 * k) * 1000 for k in range(10)]
    assert fired_of("skip-all")(events) == []
    (skip,) = skipped_of(events, "skip-all")
    assert (ms(skip.first_slot_ts), ms(skip.last_slot_ts), skip.slots) == (slot[0], slot[9], 10)
    assert "catch_up=none" in skip.reason
    (skip,) = skipped_of(events, "most-recent")
    assert (ms(skip.first_slot_ts), ms(skip.last_slot_ts), skip.slots) == (slot[0], slot[8], 9)
    assert [ms(e.slot_ts) for e in fired_of("most-recent")(events)] == [slot[9]]
    (skip,) = skipped_of(events, "five")
    assert (ms(skip.first_slot_ts), ms(skip.last_slot_ts), skip.slots) == (slot[0], slot[4], 5)
    assert [ms(e.slot_ts) for e in fired_of("five")(events)] == slot[5:]
    assert skipped_of(events, "every") == []
    assert [ms(e.slot_ts) for e in fired_of("every")(events)] == slot
    late = [e.late_s for e in fired_of("every")(events)]
    assert late == sorted(late, reverse=True) and 29 <= late[-1] < 60


async def test_a_crash_between_the_firing_and_the_submission_loses_and_duplicates_nothing(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    now = time.time()
    spec = ScheduleCreated(
        scope=schedule_scope("torn"),
        interval_s=3600.0,
        start_ts=now - 1,
        ts=now - 2,
        task=ScheduledTask(task_type="x"),
    )
    seq = (await bus.append(spec, expected=0)).seq
    slot = ms(now - 1)
    target = schedule_target_id("torn", slot)
    # What a crashed instance left: the slot fired, its task never submitted.
    await bus.append(ScheduleFired(scope=spec.scope, slot_ts=slot / 1000, target_id=target), expected=seq)
    async with running(WorkflowService, settings), running(WorkflowService, settings, instance="workflow-2"):
        await event_log.wait_for(
            lambda events: any(isinstance(e, TaskSubmitted) and e.task_id == target for e in events)
        )
        status_seq = max(event_log.seqs)
    submitted = [e for e in event_log.of_type(TaskSubmitted) if e.task_id == target]
    assert len(submitted) == 1 and submitted[0].schedule_id == "torn" and status_seq > seq
    assert len(event_log.of_type(ScheduleFired)) == 1  # the next slot is an hour away


async def test_a_scheduled_workflow_runs_with_its_slot_in_its_context(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    recorder = Recorder()
    agent = Agent("worker", recorder, capabilities=["x"], capacity=4)
    body = {
        "schedule_id": "nightly",
        "interval_seconds": 1,
        "workflow": {
            "template": "linear_pipeline",
            "tasks": [{"task_id": "a", "task_type": "x"}, {"task_id": "b", "task_type": "x"}],
        },
    }
    async with hive(settings) as h:
        await agent.start(bus)
        assert (await h.http.post(SCHEDULES, json=body)).status_code == 201
        await event_log.wait_for(
            lambda events: any(isinstance(e, WorkflowCompleted) for e in events), timeout=15
        )
        assert (await h.http.delete(f"{SCHEDULES}/nightly")).status_code == 200
        await agent.stop()
    workflow = next(e for e in event_log.of_type(WorkflowCompleted))
    (submitted,) = [e for e in event_log.of_type(WorkflowSubmitted) if e.workflow_id == workflow.workflow_id]
    assert submitted.schedule_id == "nightly"
    assert any(p["context"]["schedule"]["schedule_id"] == "nightly" for p in recorder.payloads.values())


async def test_pause_resume_and_delete_stop_and_restart_the_firings(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    clock_fired = fired_of("clock")
    async with hive(settings) as h:
        for schedule_id, catch_up in (("clock", "last"), ("paused", "all")):
            body = {
                "schedule_id": schedule_id,
                "interval_seconds": 1,
                "catch_up": catch_up,
                "task": {"task_type": "x"},
            }
            assert (await h.http.post(SCHEDULES, json=body)).status_code == 201
        await event_log.wait_for(lambda events: len(fired_of("paused")(events)) >= 1, timeout=10)
        paused = await h.http.post(f"{SCHEDULES}/paused/pause", json={"reason": "maintenance"})
        assert paused.status_code == 200 and paused.json()["status"] == "paused"
        assert (await h.http.post(f"{SCHEDULES}/paused/pause")).status_code == 409
        ticks = len(clock_fired(event_log.events))
        await event_log.wait_for(lambda events: len(clock_fired(events)) >= ticks + 3, timeout=10)
        during = len(fired_of("paused")(event_log.events))
        status = (await h.http.get(f"{SCHEDULES}/paused", params={"after_seq": paused.json()["seq"]})).json()
        assert (
            status["status"] == "paused"
            and status["reason"] == "maintenance"
            and status["next_firings"] == []
        )
        assert (await h.http.post(f"{SCHEDULES}/paused/resume")).status_code == 200
        assert (await h.http.post(f"{SCHEDULES}/paused/resume")).status_code == 409
        await event_log.wait_for(lambda events: len(fired_of("paused")(events)) > during, timeout=10)
        deleted = await h.http.delete(f"{SCHEDULES}/paused", params={"reason": "done"})
        assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
        assert (await h.http.delete(f"{SCHEDULES}/paused")).status_code == 409
        assert (await h.http.post(f"{SCHEDULES}/paused/resume")).status_code == 409
        ticks = len(clock_fired(event_log.events))
        await event_log.wait_for(lambda events: len(clock_fired(events)) >= ticks + 3, timeout=10)
        final = (await h.http.get(f"{SCHEDULES}/paused", params={"after_seq": deleted.json()["seq"]})).json()
        again = await h.http.post(
            SCHEDULES, json={"schedule_id": "paused", "interval_seconds": 1, "task": {"task_type": "x"}}
        )
    # In the log's order: nothing fired between the pause and the resumption, nothing after the
    # deletion, and the first slot fired after the resumption is after it (catch_up all or not).
    order = [e for e in event_log.events if getattr(e, "scope", "") == "sched-paused"]
    kinds = [type(e).__name__ for e in order]
    paused_at, resumed_at, deleted_at = (
        kinds.index("SchedulePaused"),
        kinds.index("ScheduleResumed"),
        kinds.index("ScheduleDeleted"),
    )
    assert "ScheduleFired" not in kinds[paused_at:resumed_at]
    assert "ScheduleFired" not in kinds[deleted_at:]
    after_resume = [e for e in order[resumed_at:deleted_at] if isinstance(e, ScheduleFired)]
    assert after_resume and after_resume[0].slot_ts > order[resumed_at].ts
    assert final["status"] == "deleted" and final["next_firings"] == []
    assert again.status_code == 409 and again.json()["error"]["field"] == "schedule_id"


async def test_an_unknown_schedule_is_404(settings: Settings) -> None:
    async with gateway_only(settings) as http:
        for method, path in (
            ("GET", f"{SCHEDULES}/nope"),
            ("POST", f"{SCHEDULES}/nope/pause"),
            ("POST", f"{SCHEDULES}/nope/resume"),
            ("DELETE", f"{SCHEDULES}/nope"),
        ):
            answer = await http.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "not_found"
        bad_id = await http.get(f"{SCHEDULES}/a.b")
        assert bad_id.status_code == 400


TASK = {"task_type": "x"}
WORKFLOW = {"tasks": [{"task_id": "a", "task_type": "x"}]}


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"cron": "61 * * * *", "task": TASK}, "cron", "minute: 61 is out of range 0-59"),
        ({"cron": "* * * *", "task": TASK}, "cron", "expected 5 fields"),
        ({"cron": "0 0 30 2 *", "task": TASK}, "cron", "never matches"),
        ({"cron": "* * * * *", "interval_seconds": 60, "task": TASK}, "cron", "exactly one"),
        ({"task": TASK}, "cron", "exactly one"),
        ({"interval_seconds": 0.5, "task": TASK}, "interval_seconds", ""),
        ({"interval_seconds": 60}, "task", "exactly one"),
        ({"interval_seconds": 60, "task": TASK, "workflow": WORKFLOW}, "task", "exactly one"),
        (
            {"interval_seconds": 60, "task": {"task_type": "x", "task_id": "t"}},
            "task.task_id",
            "leave task_id out",
        ),
        ({"interval_seconds": 60, "task": {"task_type": "x", "delay_seconds": 5}}, "task.delay_seconds", ""),
        ({"interval_seconds": 60, "task": {"task_type": "x", "priority": "asap"}}, "task.priority", "low"),
        ({"interval_seconds": 60, "task": {"task_type": "X Y"}}, "task.task_type", ""),
        ({"interval_seconds": 60, "task": {"task_type": "x", "colour": "red"}}, "task.colour", ""),
        (
            {
                "interval_seconds": 60,
                "workflow": {"tasks": [{"task_id": "a", "task_type": "x", "dependencies": ["a"]}]},
            },
            "workflow.tasks[0].dependencies",
            "depends on itself",
        ),
        ({"interval_seconds": 60, "workflow": {**WORKFLOW, "workflow_id": "w"}}, "workflow.workflow_id", ""),
        ({"interval_seconds": 60, "task": TASK, "catch_up": "sometimes"}, "catch_up", "none"),
        ({"interval_seconds": 60, "task": TASK, "start_at": "yesterday"}, "start_at", "not an ISO-8601 time"),
        ({"interval_seconds": 60, "task": TASK, "max_catch_up": 0}, "max_catch_up", ""),
        ({"interval_seconds": 60, "task": TASK, "schedule_id": "a.b"}, "schedule_id", ""),
        ({"interval_seconds": 60, "task": TASK, "schedule_id": "s" * 59}, "schedule_id", ""),
        ({"interval_seconds": 60, "task": TASK, "every": "day"}, "every", ""),
    ],
)
async def test_a_bad_schedule_is_refused_with_400_naming_the_field_and_nothing_is_stored(
    settings: Settings, bus: EventBus, body: dict[str, Any], field: str, says: str
) -> None:
    async with gateway_only(settings) as http:
        answer = await http.post(SCHEDULES, json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["field"] == field, error
    assert says in error["message"], error
    assert await bus.last_sequence() == 0
