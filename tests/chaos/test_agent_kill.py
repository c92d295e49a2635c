"""kill -9 an agent process mid-task: its work completes elsewhere, each task exactly once."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from services.cli.bench.common import wait_for_services
from services.cli.bench.recovery import spawn_agents
from services.cli.stack import local_stack
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import EventBus
from shared.events import (
    AgentRegistered,
    AgentUnresponsive,
    TaskAssigned,
    TaskCompleted,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from tests.conftest import EventLog
from tests.integration.test_router import max_in_flight_per_agent

pytestmark = pytest.mark.chaos


async def test_killing_an_agent_process_mid_task_moves_all_its_tasks_elsewhere_and_runs_none_twice(
    tmp_path: Path,
) -> None:
    stack = local_stack(tmp_path / "hive", services=("router", "recovery"))
    stack.start()
    bus = await EventBus.connect(stack.nats_url, "chaos")
    await bus.ensure_streams()
    log = await EventLog(bus).start()
    survivors = make_simulated_agents(
        2, prefix="survivor", capabilities=["doomed"], capacity=4, profile=SimulationProfile(work_s=0.02)
    )
    await wait_for_services(bus, {"router": 1, "recovery": 1})  # listening before the agents beat
    doomed = spawn_agents(stack.nats_url, "doomed", 2, 2, stack.settings, tmp_path / "doomed.log")
    doomed_ids = {"doomed-0", "doomed-1"}
    try:
        await log.wait_for(
            lambda evs: {e.agent_id for e in evs if isinstance(e, AgentRegistered)} >= doomed_ids, timeout=30
        )
        for index in range(4):  # only the doomed agents exist: they take these four
            await bus.append(TaskSubmitted(task_id=f"held-{index}", task_type="doomed"), expected=0)
        await log.wait_for(
            lambda evs: (
                len({e.task_id for e in evs if isinstance(e, TaskStarted) and e.agent_id in doomed_ids}) == 4
            )
        )
        for agent in survivors:
            await agent.start(bus)
        for index in range(30):
            await bus.append(TaskSubmitted(task_id=f"more-{index}", task_type="doomed"), expected=0)
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        await log.wait_for(
            lambda evs: len({e.task_id for e in evs if isinstance(e, TaskCompleted)}) == 34, timeout=60
        )
        completed = Counter(e.task_id for e in log.of_type(TaskCompleted))
        assignments = Counter((e.task_id, e.attempt) for e in log.of_type(TaskAssigned))
        moved = {e.task_id: e for e in log.of_type(TaskCompleted) if e.task_id.startswith("held-")}
        silent = {e.agent_id: e for e in log.of_type(AgentUnresponsive)}
        print(
            f"\ncompleted={len(completed)} twice={sum(c > 1 for c in completed.values())} "
            f"unresponsive={sorted(silent)} reasons={[e.reason for e in silent.values()]}"
        )
        assert all(count == 1 for count in completed.values()), "a task completed twice"
        assert all(count == 1 for count in assignments.values()), "a task attempt was assigned twice"
        assert set(silent) == doomed_ids
        assert all("connection closed" in event.reason for event in silent.values()), "the fast path"
        assert {e.agent_id for e in log.of_type(TaskCompleted)} <= {"survivor-0", "survivor-1"}
        assert all(event.attempt == 2 for event in moved.values())
        assert {(r.task_id, r.reason) for r in log.of_type(TaskRequeued)} == {
            (f"held-{index}", "agent_unresponsive") for index in range(4)
        }
        assert all(peak <= 4 for peak in max_in_flight_per_agent(log.events).values())
    finally:
        if doomed.poll() is None:
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
        for agent in survivors:
            await agent.stop()
        await log.stop()
        await bus.close()
        stack.stop()
