"""Stalled agents against a real nats-server: an agent whose assignment reader froze while its
heartbeats go on (the "zombie worker") is declared stalled within the bound, loses the work it never
received to another agent, shows as stalled in the gateway, is fenced when it reads that work late,
and takes work again once it has caught up; an agent busy with tasks longer than the bound, which
reads each assignment at once, is not declared stalled."""

from __future__ import annotations

import asyncio

import httpx
import msgspec
import pytest

from services.gateway.service import GatewayService
from services.recovery.service import RecoveryService
from services.router.service import RouterService
from shared.agent.sdk import Agent, AttemptSuperseded, TaskContext
from shared.bus import EventBus
from shared.events import (
    AgentRecovered,
    AgentStalled,
    AgentUnresponsive,
    RecoveryActionTaken,
    TaskAssigned,
    TaskCompleted,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.settings import Settings
from tests.conftest import EventLog, running

BEAT_S = 0.2
STALL_S = 1.0


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, heartbeat_interval_s=BEAT_S, stall_after_s=STALL_S)


async def quick(context: TaskContext) -> str:
    return f"done by attempt {context.attempt}"


def assigned_to(events: list[object], agent_id: str) -> set[str]:
    return {e.task_id for e in events if isinstance(e, TaskAssigned) and e.agent_id == agent_id}


def with_seqs(log: EventLog) -> list[tuple[object, int]]:
    """Each event the log holds with its stream sequence."""
    return list(zip(log.events, log.seqs, strict=True))


def completed(events: list[object]) -> set[str]:
    return {e.task_id for e in events if isinstance(e, TaskCompleted)}


async def test_a_zombie_whose_assignment_reader_froze_is_stalled_loses_its_work_and_recovers_on_reading(
    fast: Settings, bus: EventBus, event_log: EventLog, gateway: GatewayService, http: httpx.AsyncClient
) -> None:
    zombie = Agent("zombie", quick, capabilities=["x"], capacity=2, heartbeat_interval_s=BEAT_S)
    spare = Agent("spare", quick, capabilities=["x"], capacity=2, heartbeat_interval_s=BEAT_S)
    async with running(RouterService, fast), running(RecoveryService, fast) as recovery:
        await zombie.start(bus)
        await bus.append(TaskSubmitted(task_id="warm-up", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: completed(evs) == {"warm-up"})
        zombie.pause_assignments()  # its reader stops; its heartbeats go on
        for task_id in ("t1", "t2"):
            await bus.append(TaskSubmitted(task_id=task_id, task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: assigned_to(evs, "zombie") == {"warm-up", "t1", "t2"})
        await spare.start(bus)
        await event_log.wait_for(lambda evs: any(isinstance(e, AgentStalled) for e in evs), timeout=10)
        await event_log.wait_for(lambda evs: completed(evs) == {"warm-up", "t1", "t2"})
        assert recovery.view.state.fleet.agents["zombie"].status == "stalled"
        # The agent views say so, and why.
        stall_seq = next(seq for e, seq in with_seqs(event_log) if isinstance(e, AgentStalled))
        await gateway.core.wait_for_seq(stall_seq)
        shown = (await http.get("/api/v1/agents/zombie")).json()
        assert shown["status"] == "stalled" and shown["stall"]["seq"] == stall_seq
        assert "not received" in shown["stall"]["reason"]
        assert (await http.get("/api/v1/agents/spare")).json()["stall"] is None
        health = (await http.get("/api/v1/orchestration/health")).json()
        assert health["agents"]["stalled"] == 1

        # What the zombie would report had it done the work unseen: refused by the server.
        late = next(e for e in event_log.of_type(TaskAssigned) if e.task_id == "t1")
        context = TaskContext(late, zombie._report_progress, started_at=late.ts)
        with pytest.raises(AttemptSuperseded, match="task already completed"):
            await zombie.report(context, TaskCompleted(task_id="t1", agent_id="zombie", attempt=1))

        zombie.pause_assignments(False)  # it reads again: the old assignments first, then its stall
        await event_log.wait_for(lambda evs: any(isinstance(e, AgentRecovered) for e in evs), timeout=10)
        await spare.stop()  # the zombie, back, is the only agent left: it takes work again
        await bus.append(TaskSubmitted(task_id="t3", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: "t3" in completed(evs))
        await zombie.stop()
    [stall] = event_log.of_type(AgentStalled)
    assignments = {
        e.task_id: (e, seq)
        for e, seq in with_seqs(event_log)
        if isinstance(e, TaskAssigned) and e.agent_id == "zombie"
    }
    _, t1_seq = assignments["t1"]
    _, t2_seq = assignments["t2"]
    assert stall.agent_id == "zombie" and stall.unreceived == {"t1": 1, "t2": 1}
    # The watermark is the last assignment pending when recovery first saw a beat behind it: t2's,
    # or t1's if a beat came between the two appends (a busy machine); either was never received.
    assert stall.received_seq < t1_seq <= stall.pending_seq <= t2_seq
    # Within the bound plus a beat and a tick (and some slack for a loaded machine), not before it.
    [watermark] = [e for e, seq in assignments.values() if seq == stall.pending_seq]
    assert STALL_S <= stall.ts - watermark.ts <= STALL_S + BEAT_S + fast.recovery_tick_s + 1.5
    assert sorted((r.task_id, r.attempt, r.reason) for r in event_log.of_type(TaskRequeued)) == [
        ("t1", 2, "agent_stalled"),
        ("t2", 2, "agent_stalled"),
    ]
    finished = sorted((e.task_id, e.agent_id, e.attempt) for e in event_log.of_type(TaskCompleted))
    assert finished == [
        ("t1", "spare", 2),
        ("t2", "spare", 2),
        ("t3", "zombie", 1),
        ("warm-up", "zombie", 1),
    ], "once each"
    [action] = [a for a in event_log.of_type(RecoveryActionTaken) if a.failure_type == "agent_stalled"]
    assert (action.strategy, sorted(action.task_ids)) == ("reassign", ["t1", "t2"])
    # Reading its inbox again, the zombie tried to start what it had been given: fenced, twice (an
    # assignment received this late is reported started before it runs, so it never ran).
    assert zombie.stats.fenced == 2 and zombie.stats.started == 2
    # Its quick tasks (warm-up, t3) appended no start: their completions imply it.
    assert [e.task_id for e in event_log.of_type(TaskStarted) if e.agent_id == "zombie"] == []
    [back] = event_log.of_type(AgentRecovered)
    assert back.agent_id == "zombie" and back.reason.startswith("caught up")
    assert event_log.of_type(AgentUnresponsive) == [], "it never stopped beating"


async def test_a_busy_agent_that_takes_its_assignments_is_never_stalled_however_long_its_tasks(
    fast: Settings, bus: EventBus, event_log: EventLog
) -> None:
    """Tasks each longer than the bound, more of them than slots: the agent is full, then half
    full, for several bounds, and each assignment it gets is read at once (its beats say so)."""
    long_s = 1.5 * STALL_S

    async def slow(context: TaskContext) -> str:
        await asyncio.sleep(long_s)  # the work itself, not a synchronisation
        return "done"

    busy = Agent("busy", slow, capabilities=["x"], capacity=3, heartbeat_interval_s=BEAT_S)
    tasks = {f"t{n}" for n in range(5)}
    async with running(RouterService, fast), running(RecoveryService, fast) as recovery:
        await busy.start(bus)
        for task_id in sorted(tasks):
            await bus.append(TaskSubmitted(task_id=task_id, task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: completed(evs) == tasks, timeout=20)
        # A full recovery tick after the last beats, with nothing left unread, still judges nothing.
        await recovery.tick()
        await busy.stop()
    assert event_log.of_type(AgentStalled) == [] and event_log.of_type(AgentUnresponsive) == []
    assert event_log.of_type(TaskRequeued) == []
    finished = sorted((e.task_id, e.agent_id, e.attempt) for e in event_log.of_type(TaskCompleted))
    assert finished == [(t, "busy", 1) for t in sorted(tasks)]
    started = {e.task_id: e.ts for e in event_log.of_type(TaskStarted)}
    done = {e.task_id: e.ts for e in event_log.of_type(TaskCompleted)}
    assert min(done[t] - started[t] for t in tasks) >= long_s, "every task outlasted the bound"
    assert max(done.values()) - min(started.values()) >= 2 * long_s, "busy for two rounds at least"
