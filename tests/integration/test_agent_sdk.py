"""The agent SDK with real services: retries, fencing of superseded attempts, restarts, drain."""

from __future__ import annotations

import asyncio

import pytest

from services.recovery.service import RecoveryService
from services.router.service import RouterService
from shared.agent.sdk import Agent, AttemptSuperseded, NonRetryableError, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.events import (
    AgentDeregistered,
    AgentDraining,
    AgentRegistered,
    RetryPolicy,
    TaskAttemptFailed,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.nesting import MAX_NESTING
from shared.settings import Settings
from tests.conftest import EventLog, running, watching_logs


def nested_lists(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def test_a_failing_attempt_is_retried_and_then_completes(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    calls: list[int] = []

    async def flaky(context: TaskContext) -> TaskOutcome:
        calls.append(context.attempt)
        if context.attempt < 3:
            raise RuntimeError("transient")
        await context.progress(50, "half way")
        return TaskOutcome(result={"answer": 42}, quality=0.9)

    agent = Agent("flaky", flaky, capabilities=["x"], capacity=1)
    async with running(RouterService, settings), running(RecoveryService, settings):
        await agent.start(bus)
        policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01)
        await bus.append(TaskSubmitted(task_id="t", task_type="x", retry=policy), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs))
        await agent.stop()
    assert calls == [1, 2, 3]
    assert [e.attempt for e in event_log.of_type(TaskRequeued)] == [2, 3]
    assert event_log.of_type(TaskCompleted)[0].result == {"answer": 42}
    assert event_log.of_type(TaskProgress)[0].percent == 50


async def test_a_task_that_keeps_failing_ends_failed_exactly_once(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async def broken(context: TaskContext) -> None:
        raise NonRetryableError("input is not Python")

    agent = Agent("strict", broken, capabilities=["x"], capacity=1)
    async with (
        running(RouterService, settings),
        running(RecoveryService, settings),
        running(RecoveryService, settings, instance="second-recovery"),
    ):
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskFailed) for e in evs))
        await agent.stop()
    failed = event_log.of_type(TaskFailed)
    assert len(failed) == 1 and "not retryable" in failed[0].error
    assert event_log.of_type(TaskRequeued) == []


@pytest.mark.parametrize(
    ("result", "words"),
    [
        ("x" * 1_100_000, "bytes encoded, more than"),  # refused by the SDK before the bus tries
        (nested_lists(MAX_NESTING + 1), f"field `result` nests deeper than {MAX_NESTING} levels"),
    ],
)
async def test_a_result_no_reader_could_take_fails_the_attempt_for_good_instead_of_being_sent(
    settings: Settings, bus: EventBus, event_log: EventLog, result: object, words: str
) -> None:
    async def unsendable(context: TaskContext) -> object:
        return result

    agent = Agent("verbose", unsendable, capabilities=["x"], capacity=1)
    async with running(RouterService, settings), running(RecoveryService, settings):
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskFailed) for e in evs))
        await agent.stop()
    (attempt_failed,) = event_log.of_type(TaskAttemptFailed)
    assert not attempt_failed.retryable and words in attempt_failed.error
    assert event_log.of_type(TaskCompleted) == []
    assert agent.stats.completed == 0 and agent.stats.failed == 1


async def test_a_result_for_a_superseded_attempt_is_refused(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    release = asyncio.Event()
    held: list[TaskContext] = []

    async def slow(context: TaskContext) -> str:
        held.append(context)
        await release.wait()
        return "late"

    zombie = Agent("zombie", slow, capabilities=["x"], capacity=1)
    async with running(RouterService, settings):
        await zombie.start(bus)
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
        # The attempt is superseded behind the agent's back (what recovery does to a hung agent).
        await bus.append(
            TaskRequeued(task_id="t", attempt=2, reason="agent_unresponsive"),
            expected=await bus.aggregate_version("task", "t"),
        )
        release.set()
        await zombie.wait_idle(timeout=10)
        assert zombie.stats.fenced == 1
        await zombie.stop()
    assert event_log.of_type(TaskCompleted) == []
    with pytest.raises(AttemptSuperseded, match="superseded by attempt 2"):
        await zombie.report(held[0], TaskCompleted(task_id="t", agent_id="zombie", attempt=1))


async def test_a_restarted_agent_gets_its_orphaned_work_back_as_a_new_attempt(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async def hang(context: TaskContext) -> None:
        await asyncio.Event().wait()

    async def quick(context: TaskContext) -> str:
        return "ok"

    first = Agent("phoenix", hang, capabilities=["x"], capacity=1)
    async with running(RouterService, settings), running(RecoveryService, settings):
        await first.start(bus)
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
        await first.stop()  # the process dies without a word
        second = Agent("phoenix", quick, capabilities=["x"], capacity=1)
        await second.start(bus)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs))
        await second.stop()
    requeued = event_log.of_type(TaskRequeued)
    assert [(r.attempt, r.reason) for r in requeued] == [(2, "agent_restarted")]
    assert event_log.of_type(TaskCompleted)[0].attempt == 2


async def test_drain_finishes_the_work_in_hand_then_deregisters(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    started = asyncio.Event()

    async def steady(context: TaskContext) -> str:
        started.set()
        await asyncio.sleep(0.05)
        return "ok"

    agent = Agent("leaver", steady, capabilities=["x"], capacity=1)
    async with running(RouterService, settings):
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await asyncio.wait_for(started.wait(), 10)
        await agent.drain()
        await event_log.wait_for(lambda evs: any(isinstance(e, AgentDeregistered) for e in evs))
    kinds = [type(e) for e in event_log.events]
    assert kinds.index(AgentDraining) < kinds.index(TaskCompleted) < kinds.index(AgentDeregistered)
    assert event_log.of_type(TaskAttemptFailed) == []


async def test_an_agent_started_before_hive_waits_for_its_stream_then_registers(settings: Settings) -> None:
    early = await EventBus.connect(settings.nats_url, "early")  # the server is up, Hive is not
    try:
        with watching_logs("waiting_for_hive") as watch:
            agent = Agent("early", lambda context: asyncio.sleep(0), capabilities=["x"], capacity=1)
            starting = asyncio.create_task(agent.start(early))
            await asyncio.wait_for(watch.arrived.wait(), timeout=5)
            assert not starting.done(), "the agent waits instead of failing"
            await early.ensure_streams()  # Hive starts
            await asyncio.wait_for(starting, timeout=10)
        registered = [r.event async for r in early.read() if isinstance(r.event, AgentRegistered)]
        assert [e.agent_id for e in registered] == ["early"]
        await agent.stop()
    finally:
        await early.close()
