"""nats-server killed under load on a Hive run as ``hive up`` runs it, brought back by the stack's
supervisor, while one agent forges reports on the others' tasks: every task completes exactly once,
by the agent holding it; nothing is lost, nothing doubled, no forged report counts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from services.cli.stack import Restart, Stack, local_stack
from shared.agent.sdk import Agent, TaskContext
from shared.bus import ConcurrencyConflict, EventBus
from shared.denials import PermissionDenied
from shared.domain.routing.view import ROUTER_VIEW
from shared.events import TaskAssigned, TaskAttemptFailed, TaskCompleted, TaskFailed, TaskSubmitted
from shared.permissions import ADMIN, agent_user
from shared.projection import rebuild
from tests.conftest import EventLog

pytestmark = pytest.mark.chaos

AGENTS = ("c0", "c1", "c2", "c3")
FORGER = "forger"
TOTAL = 200
SUPERVISE_EVERY_S = 0.2
"""How often the test's supervisor looks, as ``hive up`` does every 0.5 s."""


async def quick(context: TaskContext) -> str:
    await asyncio.sleep(0.01)
    return "done"


async def connect(stack: Stack, user: str) -> EventBus:
    credentials = stack.credentials_of(user)
    return await EventBus.connect(stack.nats_url, user, user=credentials.user, password=credentials.password)


async def supervise(stack: Stack, restarted: list[Restart], nats_back: asyncio.Event) -> None:
    """What ``hive up`` runs: ``Stack.supervise`` over and over."""
    while True:
        for restart in await asyncio.to_thread(stack.supervise):
            print(f"\n{restart.describe()}")
            restarted.append(restart)
            if restart.what == "nats-server" and not restart.failed:
                nats_back.set()
        await asyncio.sleep(SUPERVISE_EVERY_S)


async def submit(bus: EventBus, task_id: str) -> None:
    """Submit like a careful client: retry through the outage; the same task never lands twice."""
    event = TaskSubmitted(task_id=task_id, task_type="x")
    while True:
        try:
            await bus.append(event, expected=0)
            return
        except ConcurrencyConflict:
            return  # an earlier try landed and only its answer was lost
        except Exception:  # NATS down: wait and retry
            await asyncio.sleep(0.2)


class Forger:
    """Agent ``forger`` reporting on the others' tasks: as their holder (refused by NATS) and as
    itself (stored, ignored), a failure that would end the task and a completion with a fake result."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.refused = 0
        self.stored = 0

    async def attack(self, task_id: str) -> None:
        as_holder = TaskAttemptFailed(task_id=task_id, agent_id=AGENTS[0], attempt=1, retryable=False)
        as_itself = [
            TaskAttemptFailed(task_id=task_id, agent_id=FORGER, attempt=1, retryable=False, error="forged"),
            TaskCompleted(task_id=task_id, agent_id=FORGER, attempt=1, result="forged"),
        ]
        with contextlib.suppress(Exception):  # the outage: its reports are simply lost
            try:
                await self.bus.append(as_holder, expected=None)
            except PermissionDenied:
                self.refused += 1
            for event in as_itself:
                await self.bus.append(event, expected=None)
                self.stored += 1


async def test_nats_server_killed_under_load_is_restarted_by_the_supervisor_and_nothing_is_lost_or_doubled(
    tmp_path: Path,
) -> None:
    stack = local_stack(tmp_path / "hive", auth=True, agent_ids=(*AGENTS, FORGER), work_ack_wait_s=3.0)
    stack.start()
    restarted: list[Restart] = []
    nats_back = asyncio.Event()
    supervisor = asyncio.create_task(supervise(stack, restarted, nats_back))
    admin = await connect(stack, ADMIN)
    forger = Forger(await connect(stack, agent_user(FORGER)))
    log = await EventLog(admin).start()
    agents = [Agent(agent_id, quick, capabilities=["x"], capacity=3) for agent_id in AGENTS]
    try:
        for agent in agents:
            credentials = stack.credentials_of(agent_user(agent.agent_id))
            await agent.start(nats_url=stack.nats_url, user=credentials.user, password=credentials.password)

        async def feed() -> None:
            for index in range(TOTAL):
                await submit(admin, f"n{index}")
                if index % 4 == 0:
                    await forger.attack(f"n{index}")

        feeder = asyncio.create_task(feed())
        await log.wait_for(lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) >= 40, timeout=60)
        assert stack.nats is not None and stack.nats.process is not None
        os.kill(stack.nats.process.pid, signal.SIGKILL)  # kill -9 from outside, as in the issue
        await asyncio.wait_for(nats_back.wait(), 30)
        await asyncio.wait_for(feeder, 120)

        def done(task_ids: set[str]) -> bool:
            return len(task_ids) >= TOTAL

        await log.wait_for(
            lambda evs: done(
                {e.task_id for e in evs if isinstance(e, TaskCompleted) and e.agent_id != FORGER}
            ),
            timeout=120,
        )
        view, _seq = await rebuild(admin, ROUTER_VIEW)
    finally:
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        for agent in agents:
            await agent.stop()
        await log.stop()
        await forger.bus.close()
        await admin.close()
        stack.stop()
    events = log.events
    honest = Counter(e.task_id for e in events if isinstance(e, TaskCompleted) and e.agent_id != FORGER)
    assigned = Counter((e.task_id, e.attempt) for e in events if isinstance(e, TaskAssigned))
    twice = [key for key, count in assigned.items() if count > 1]
    tasks = [view.fleet.tasks[f"n{index}"] for index in range(TOTAL)]
    print(
        f"\nkill nats-server under supervision: submitted={TOTAL} completed={len(honest)} "
        f"lost={TOTAL - len(honest)} completed_twice={sum(c > 1 for c in honest.values())} "
        f"assigned_twice={len(twice)} forged_stored={forger.stored} forged_refused={forger.refused} "
        f"restarted={[r.what for r in restarted]}"
    )
    assert [r.what for r in restarted] == ["nats-server"], "nats-server restarted once, nothing else died"
    assert len(honest) == TOTAL and set(honest.values()) == {1}
    assert twice == []
    assert not [e for e in events if isinstance(e, TaskFailed)], "no forged failure ended a task"
    assert {task.status for task in tasks} == {"completed"}
    assert {task.result for task in tasks} == {"done"}, "no forged completion counted"
    assert all(task.agent_id in AGENTS for task in tasks)
    assert view.fleet.agents.keys() == set(AGENTS) and all(
        agent.failed == 0 for agent in view.fleet.agents.values()
    )
    assert forger.refused > 0 and forger.stored > 0
