"""Recovery against a real nats-server: silent agents, timeouts, several instances, zombie results."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter

import msgspec
import pytest
from nats.aio.msg import Msg

from services.recovery.service import RecoveryService
from services.router.service import RouterService
from shared.agent.sdk import Agent, AttemptSuperseded, TaskContext
from shared.bus import ConcurrencyConflict, EventBus, connection_key
from shared.domain.heartbeats import Heartbeat, HeartbeatTable
from shared.events import (
    AgentRecovered,
    AgentRegistered,
    AgentUnresponsive,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    RecoveryActionTaken,
    RetryPolicy,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelRequested,
    TaskCompleted,
    TaskFailed,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.heartbeats import HeartbeatListener
from shared.settings import Settings
from shared.subjects import dlq_subject, entity_subjects, heartbeat_subject
from tests.conftest import EventLog, running

FAST_BEATS = 0.2
"""Heartbeat interval of these tests: an agent is unresponsive after 3 x 0.2 s of silence."""


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, heartbeat_interval_s=FAST_BEATS)


def started_by(events: list[object], agent_id: str) -> set[str]:
    return {e.task_id for e in events if isinstance(e, TaskStarted) and e.agent_id == agent_id}


async def quick(context: TaskContext) -> str:
    return f"done by attempt {context.attempt}"


async def test_a_silent_agent_loses_its_work_to_another_and_its_late_result_is_refused(
    fast: Settings, bus: EventBus, event_log: EventLog
) -> None:
    release = asyncio.Event()
    held: list[TaskContext] = []

    async def hang(context: TaskContext) -> str:
        held.append(context)
        await release.wait()
        return "too late"

    zombie = Agent("zombie", hang, capabilities=["x"], capacity=2, heartbeat_interval_s=FAST_BEATS)
    spare = Agent("spare", quick, capabilities=["x"], capacity=2, heartbeat_interval_s=FAST_BEATS)
    async with running(RouterService, fast), running(RecoveryService, fast):
        await zombie.start(bus)
        for task_id in ("t1", "t2"):
            await bus.append(TaskSubmitted(task_id=task_id, task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: started_by(evs, "zombie") == {"t1", "t2"})
        await spare.start(bus)
        zombie.pause_heartbeats()  # hung: alive, holding its work, silent
        await event_log.wait_for(
            lambda evs: (
                {e.task_id for e in evs if isinstance(e, TaskCompleted)} == {"t1", "t2"}
                and any(isinstance(e, RecoveryActionTaken) for e in evs)
            )  # recovery's last append
        )
        # The zombie wakes up and reports on attempt 1: refused, nothing is stored.
        before = await bus.last_sequence()
        with pytest.raises(AttemptSuperseded, match="task already completed"):
            await zombie.report(held[0], TaskCompleted(task_id=held[0].task_id, agent_id="zombie", attempt=1))
        assert await bus.last_sequence() == before
        zombie.pause_heartbeats(False)
        await event_log.wait_for(lambda evs: any(isinstance(e, AgentRecovered) for e in evs))
        release.set()
        await zombie.stop()
        await spare.stop()
    [silent] = event_log.of_type(AgentUnresponsive)
    assert silent.agent_id == "zombie" and silent.in_flight == {"t1": 1, "t2": 1}
    assert "no heartbeat" in silent.reason
    requeued = event_log.of_type(TaskRequeued)
    assert sorted((r.task_id, r.attempt, r.reason) for r in requeued) == [
        ("t1", 2, "agent_unresponsive"),
        ("t2", 2, "agent_unresponsive"),
    ]
    completed = event_log.of_type(TaskCompleted)
    assert sorted((c.task_id, c.agent_id, c.attempt) for c in completed) == [
        ("t1", "spare", 2),
        ("t2", "spare", 2),
    ]
    [action] = event_log.of_type(RecoveryActionTaken)
    assert action.strategy == "reassign" and sorted(action.task_ids) == ["t1", "t2"]
    stops = event_log.of_type(TaskCancelRequested)
    assert sorted((s.agent_id, s.task_id, s.attempt) for s in stops) == [
        ("zombie", "t1", 1),
        ("zombie", "t2", 1),
    ]
    assert [e.reason for e in event_log.of_type(AgentRecovered)] == ["heartbeats resumed"]


async def test_two_recovery_instances_act_once_on_a_silent_agent(
    fast: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async def hang(context: TaskContext) -> None:
        await asyncio.Event().wait()

    lost = Agent("lost", hang, capabilities=["x"], capacity=3, heartbeat_interval_s=FAST_BEATS)
    async with (
        running(RouterService, fast),
        running(RecoveryService, fast, instance="recovery-a"),
        running(RecoveryService, fast, instance="recovery-b"),
    ):
        await lost.start(bus)
        for index in range(3):
            await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: len(started_by(evs, "lost")) == 3)
        await lost.stop()  # dead without a word; its connection (the test's) stays open
        await event_log.wait_for(lambda evs: sum(isinstance(e, TaskRequeued) for e in evs) == 3)
        await event_log.wait_for(lambda evs: any(isinstance(e, RecoveryActionTaken) for e in evs))
    assert len(event_log.of_type(AgentUnresponsive)) == 1
    assert Counter((r.task_id, r.attempt) for r in event_log.of_type(TaskRequeued)) == {
        ("t0", 2): 1,
        ("t1", 2): 1,
        ("t2", 2): 1,
    }
    assert len(event_log.of_type(RecoveryActionTaken)) == 1


async def test_an_attempt_past_its_timeout_is_retried_with_backoff_then_failed_for_good(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    finished = asyncio.Event()

    async def deaf(context: TaskContext) -> None:
        """A handler that ignores cancellation: only recovery's timeout can end its attempts."""
        while not finished.is_set():
            try:
                await finished.wait()
            except asyncio.CancelledError:
                continue

    agent = Agent("stuck", deaf, capabilities=["x"], capacity=1)
    policy = RetryPolicy(max_attempts=2, initial_backoff_s=0.3)
    async with running(RouterService, settings), running(RecoveryService, settings, task_timeout_grace_s=0.1):
        await agent.start(bus)
        await bus.append(
            TaskSubmitted(task_id="slow", task_type="x", timeout_s=0.3, retry=policy), expected=0
        )
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskFailed) for e in evs), timeout=15)
        finished.set()
        await agent.stop()
    failures = event_log.of_type(TaskAttemptFailed)
    assert [(f.attempt, f.failure_type, f.agent_id) for f in failures] == [
        (1, "task_timeout", "stuck"),
        (2, "task_timeout", "stuck"),
    ]
    [requeued] = event_log.of_type(TaskRequeued)
    assert requeued.attempt == 2 and requeued.reason == "task_timeout"
    assert requeued.not_before_ts - requeued.ts == pytest.approx(0.3, abs=0.05)
    [failed] = event_log.of_type(TaskFailed)
    assert failed.failure_type == "task_timeout" and "gave up after 2 attempt" in failed.error
    assert event_log.of_type(TaskCompleted) == []
    assert {(s.task_id, s.attempt) for s in event_log.of_type(TaskCancelRequested)} == {
        ("slow", 1),
        ("slow", 2),
    }


async def test_garbage_on_a_heartbeat_subject_goes_to_the_dead_letter_queue_and_recovery_goes_on(
    fast: Settings, bus: EventBus, event_log: EventLog
) -> None:
    letters: list[dict[str, object]] = []
    both = asyncio.Event()

    async def on_letter(msg: Msg) -> None:
        letters.append(json.loads(msg.data))
        if len(letters) == 2:
            both.set()

    await bus.nc.subscribe(dlq_subject("recovery"), cb=on_letter)
    agent = Agent("steady", quick, capabilities=["x"], capacity=1, heartbeat_interval_s=FAST_BEATS)
    async with running(RouterService, fast), running(RecoveryService, fast) as recovery:
        await agent.start(bus)
        await bus.nc.publish(heartbeat_subject("steady"), b"{not json")
        impostor = b'{"agent_id": "steady", "session": "s", "ts": 1, "in_flight": 0, "capacity": 1}'
        await bus.nc.publish(heartbeat_subject("other"), impostor)
        await asyncio.wait_for(both.wait(), 10)
        await bus.append(TaskSubmitted(task_id="after", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs))
        assert recovery.listener is not None and recovery.listener.bad == 2
        await agent.stop()
    assert sorted(str(letter["subject"]) for letter in letters) == ["hive.hb.other", "hive.hb.steady"]
    assert "not a heartbeat" in str(letters[0]["reason"]) + str(letters[1]["reason"])
    assert event_log.of_type(AgentUnresponsive) == []
    assert [a.agent_id for a in event_log.of_type(TaskAssigned)] == ["steady"]


async def test_an_agent_failing_half_its_tasks_trips_its_breaker_gets_no_work_then_recovers_half_open(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    calls: list[int] = []

    async def flaky(context: TaskContext) -> str:
        calls.append(context.attempt)
        if len(calls) <= 4 and len(calls) % 2 == 1:
            raise RuntimeError("flaky failure")  # calls 1 and 3 fail: 50% of the first four
        # Work that takes a moment: recovery reads outcomes in bursts (READ_LINGER_S), and the
        # tasks left after the trip must outlast its reading for one to be the half-open probe.
        await asyncio.sleep(0.05)
        return "ok"

    agent = Agent("flaky", flaky, capabilities=["x"], capacity=1)
    breaker = {
        "breaker_min_calls": 4,
        "breaker_window_size": 4,
        "breaker_failure_threshold": 0.5,
        "breaker_open_s": 0.5,
        "breaker_half_open_probes": 1,
    }
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.01)
    async with running(RouterService, settings), running(RecoveryService, settings, **breaker):
        await agent.start(bus)
        for index in range(8):
            await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x", retry=policy), expected=0)
        await event_log.wait_for(
            lambda evs: (
                sum(isinstance(e, TaskCompleted) for e in evs) == 8
                and any(isinstance(e, BreakerClosed) for e in evs)
            ),
            timeout=20,
        )
        await agent.stop()
    kinds = [type(e) for e in event_log.events]
    assert [k for k in kinds if k in (BreakerOpened, BreakerHalfOpened, BreakerClosed)] == [
        BreakerOpened,
        BreakerHalfOpened,
        BreakerClosed,
    ]
    opened, half_open, closed = (kinds.index(k) for k in (BreakerOpened, BreakerHalfOpened, BreakerClosed))
    assignments = [i for i, e in enumerate(event_log.events) if isinstance(e, TaskAssigned)]
    assert not [i for i in assignments if opened < i < half_open], "work was assigned to an open breaker"
    assert len([i for i in assignments if half_open < i < closed]) == 1, "one probe while half-open"
    [trip] = event_log.of_type(BreakerOpened)
    assert trip.failure_rate == 0.5 and trip.calls == 4
    assert event_log.of_type(BreakerClosed)[0].reason == "1 of 1 half-open probes succeeded"
    assert Counter(e.task_id for e in event_log.of_type(TaskCompleted)) == {f"t{i}": 1 for i in range(8)}


async def test_with_circuit_breakers_disabled_a_failing_agent_is_never_cut_off(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async def always_failing(context: TaskContext) -> str:
        raise RuntimeError("broken")

    agent = Agent("broken", always_failing, capabilities=["x"], capacity=1)
    async with (
        running(RouterService, settings),
        running(RecoveryService, settings, enable_circuit_breakers=False, breaker_min_calls=2),
    ):
        await agent.start(bus)
        policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01)
        for index in range(3):
            await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x", retry=policy), expected=0)
        await event_log.wait_for(lambda evs: sum(isinstance(e, TaskFailed) for e in evs) == 3, timeout=20)
        await agent.stop()
    assert len(event_log.of_type(TaskAttemptFailed)) == 9
    assert event_log.of_type(BreakerOpened) == []


async def test_an_assignment_decided_before_the_breaker_opened_is_refused_by_the_server(
    bus: EventBus,
) -> None:
    await bus.append(AgentRegistered(agent_id="a", capabilities={"x": 1.0}), expected=None)
    seen = await bus.last_sequence_of(entity_subjects("a"))
    await bus.append(BreakerOpened(agent_id="a", reason="tripped meanwhile"), expected=0)
    with pytest.raises(ConcurrencyConflict):
        await bus.append(
            TaskAssigned(agent_id="a", task_id="t", attempt=1),
            expected=seen,
            expected_filter=entity_subjects("a"),
        )
    fresh = await bus.last_sequence_of(entity_subjects("a"))
    await bus.append(
        TaskAssigned(agent_id="a", task_id="t", attempt=1),
        expected=fresh,
        expected_filter=entity_subjects("a"),
    )


async def test_a_closed_connection_is_heard_through_the_server_disconnect_advisory(
    settings: Settings,
) -> None:
    observer = await EventBus.connect(settings.nats_url, "observer")
    doomed = await EventBus.connect(settings.nats_url, "doomed")
    table = HeartbeatTable(started_at=0.0)
    closed = asyncio.Event()
    heard = asyncio.Event()
    listener = HeartbeatListener(
        observer.nc, table, on_disconnect=lambda agents: closed.set(), on_recorded=lambda agent: heard.set()
    )
    await listener.start()
    beat = Heartbeat(
        agent_id="d1", session="s", ts=0.0, in_flight=0, capacity=1, connection=connection_key(doomed.nc)
    )

    async def beat_until_heard() -> None:
        # Heartbeats are core NATS (at most once): like an agent, beat each period until heard.
        while True:
            await doomed.nc.publish(heartbeat_subject("d1"), msgspec.json.encode(beat))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), 0.5)
                return

    await asyncio.wait_for(beat_until_heard(), 5)
    assert table.agents["d1"].connection.endswith(f"/{doomed.nc.client_id}")
    await doomed.nc.close()
    await asyncio.wait_for(closed.wait(), 5)
    assert table.agents["d1"].disconnected_at is not None
    assert table.agents["d1"].disconnect_reason == "Client Closed"
    await listener.stop()
    await observer.close()
