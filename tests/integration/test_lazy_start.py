"""The lazy ``task.started`` on a real nats-server: work that ends within the bound appends no
start (its completion implies it, and every view folds it so), longer work and work that reports
progress append it once, first, with the time the work began; the balancer never takes running work
whose start report is deferred as unstarted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from services.balancer.service import BalancerService
from services.router.service import RouterService
from shared.agent import sdk
from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.domain.starts import START_REPORT_AFTER_S
from shared.events import (
    AnyEvent,
    TaskAssigned,
    TaskCompleted,
    TaskProgress,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.settings import Settings
from tests.conftest import EventLog, running


def story(log: EventLog, task_id: str) -> list[str]:
    """The task's events in stream order, by type."""
    return [e.type_name() for e in log.events if getattr(e, "task_id", None) == task_id]


def completed(task_ids: set[str]) -> Callable[[list[AnyEvent]], bool]:
    return lambda evs: {e.task_id for e in evs if isinstance(e, TaskCompleted)} >= task_ids


async def test_work_that_ends_within_the_bound_appends_no_task_started_and_still_reads_as_run(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async def quick(context: TaskContext) -> TaskOutcome:
        return TaskOutcome(result="ok", quality=0.9)

    agent = Agent("quick", quick, capabilities=["x"], capacity=4)
    async with running(RouterService, settings) as router:
        await agent.start(bus)
        for index in range(4):
            await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)
        await event_log.wait_for(completed({f"t{index}" for index in range(4)}))
        await router.view.wait_for(await bus.last_sequence())
        fleet = router.view.state.fleet
        await agent.stop()
    assert event_log.of_type(TaskStarted) == []
    for index in range(4):
        assert story(event_log, f"t{index}") == ["task.submitted", "agent.task_assigned", "task.completed"]
        task = fleet.tasks[f"t{index}"]
        assert task.status == "completed" and task.attempt == 1
        assert task.assigned_ts is not None and task.started_ts is not None and task.finished_ts is not None
        assert task.assigned_ts <= task.started_ts <= task.finished_ts
    assert agent.stats.started == 4 and agent.stats.completed == 4


async def test_work_still_running_after_the_bound_reports_its_start_first_with_the_time_it_began(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    release = asyncio.Event()
    began: list[float] = []

    async def slow(context: TaskContext) -> str:
        began.append(time.time())
        await release.wait()
        return "done"

    agent = Agent("slow", slow, capabilities=["x"], capacity=1)
    async with running(RouterService, settings):
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
        release.set()
        await event_log.wait_for(completed({"t"}))
        await agent.stop()
    assert story(event_log, "t") == [
        "task.submitted",
        "agent.task_assigned",
        "task.started",
        "task.completed",
    ]
    (started,) = event_log.of_type(TaskStarted)
    (assigned,) = event_log.of_type(TaskAssigned)
    assert started.ts <= began[0] + 0.05  # the time the work began, not the (later) report
    assert started.ts >= assigned.ts - 0.05 and started.session == agent.session


async def test_progress_before_the_bound_reports_the_start_first(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async def chatty(context: TaskContext) -> str:
        await context.progress(10, "begun")
        await context.progress(90, "nearly")
        return "done"

    agent = Agent("chatty", chatty, capabilities=["x"], capacity=1)
    async with running(RouterService, settings):
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await event_log.wait_for(completed({"t"}))
        await agent.stop()
    assert story(event_log, "t") == [
        "task.submitted",
        "agent.task_assigned",
        "task.started",
        "task.progress",
        "task.progress",
        "task.completed",
    ]
    (assigned,) = event_log.of_type(TaskAssigned)
    (first, _second) = event_log.of_type(TaskProgress)
    (started,) = event_log.of_type(TaskStarted)
    assert started.ts < assigned.ts + START_REPORT_AFTER_S and first.percent == 10


async def test_the_balancer_never_moves_running_work_whose_start_report_is_deferred(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    """A balancer told to move work unstarted after 0 s, ticking every 20 ms: the window before the
    deferred start lands holds a dozen ticks, and none of them moves the running attempt."""
    release = asyncio.Event()
    runs: list[str] = []

    async def busy(context: TaskContext) -> str:
        runs.append(context.agent_id)
        await release.wait()
        return "done"

    holder = Agent("holder", busy, capabilities={"x": 0.9}, capacity=1)
    async with running(RouterService, settings):
        await holder.start(bus)
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskAssigned) for e in evs))
        idle = Agent("idle", busy, capabilities={"x": 0.9}, capacity=1)
        await idle.start(bus)
        async with running(BalancerService, settings, rebalance_after_s=0.0, rebalance_interval_s=0.02):
            await event_log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
            release.set()
            await event_log.wait_for(completed({"t"}))
        await holder.stop()
        await idle.stop()
    moved: list[AnyEvent] = event_log.of_type(TaskRequeued)
    assert moved == [] and runs == ["holder"]
    assert [(e.agent_id, e.attempt) for e in event_log.of_type(TaskCompleted)] == [("holder", 1)]


async def test_a_deferred_start_refused_because_the_attempt_was_superseded_stops_the_handler(
    settings: Settings, bus: EventBus, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deferred start is also the fence: once refused, the work stops and reports nothing.
    (The bound is stretched to 2 s so the supersession surely lands first.)"""
    monkeypatch.setattr(sdk, "start_report_delay", lambda assigned_ts, now: 2.0)
    began = asyncio.Event()
    stopped = asyncio.Event()
    held: list[TaskContext] = []

    async def endless(context: TaskContext) -> str:
        held.append(context)
        began.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return "never"

    agent = Agent("zombie", endless, capabilities=["x"], capacity=1)
    async with running(RouterService, settings):
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await asyncio.wait_for(began.wait(), 10)
        await bus.append(
            TaskRequeued(task_id="t", attempt=2, reason="rebalanced"),
            expected=await bus.aggregate_version("task", "t"),
        )
        await asyncio.wait_for(stopped.wait(), 10)
        await agent.wait_idle(timeout=10)
        await agent.stop()
    assert held[0].is_cancelled and agent.stats.fenced == 1
    assert [e for e in event_log.of_type(TaskStarted) if e.attempt == 1] == []
    assert event_log.of_type(TaskCompleted) == []
