"""kill -9 agents holding keyed work and a router instance while every key is saturated: no key
ever runs more than its limit, every task completes once, and no slot leaks (each key's running
count, replayed from the log and as the router's projection folds it, ends at zero)."""

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
from shared.domain.routing.keys import running_count
from shared.domain.routing.view import RouterState, apply_router
from shared.events import AgentRegistered, TaskCompleted, TaskStarted, TaskSubmitted
from shared.recorded import Recorded
from tests.conftest import EventLog
from tests.integration.key_log import key_peaks

pytestmark = pytest.mark.chaos

KEYS = 4
LIMIT = 2


async def test_killing_agents_and_a_router_with_keys_saturated_keeps_every_limit_and_leaks_no_slot(
    tmp_path: Path,
) -> None:
    stack = local_stack(
        tmp_path / "hive",
        services=("router", "recovery"),
        scale={"router": 2},
        concurrency_limits=f"k-*={LIMIT}",
    )
    stack.start()
    bus = await EventBus.connect(stack.nats_url, "chaos")
    await bus.ensure_streams()
    log = await EventLog(bus).start()
    survivors = make_simulated_agents(
        3, prefix="survivor", capabilities=["doomed"], capacity=4, profile=SimulationProfile(work_s=0.05)
    )
    await wait_for_services(bus, {"router": 2, "recovery": 1})
    doomed = spawn_agents(stack.nats_url, "doomed", 2, 4, stack.settings, tmp_path / "doomed.log")
    doomed_ids = {"doomed-0", "doomed-1"}
    total = KEYS * 12
    try:
        await log.wait_for(
            lambda evs: {e.agent_id for e in evs if isinstance(e, AgentRegistered)} >= doomed_ids, timeout=30
        )
        for index in range(KEYS * LIMIT):  # only the doomed agents exist: every key's slots go to them
            await bus.append(
                TaskSubmitted(
                    task_id=f"held-{index}", task_type="doomed", concurrency_key=f"k-{index % KEYS}"
                ),
                expected=0,
            )
        await log.wait_for(
            lambda evs: len({e.task_id for e in evs if isinstance(e, TaskStarted)}) == KEYS * LIMIT,
            timeout=30,
        )
        for index in range(total - KEYS * LIMIT):  # saturated: these wait for their keys
            await bus.append(
                TaskSubmitted(
                    task_id=f"more-{index}", task_type="doomed", concurrency_key=f"k-{index % KEYS}"
                ),
                expected=0,
            )
        for agent in survivors:
            await agent.start(bus)
        stack.kill("router-0")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        await log.wait_for(
            lambda evs: len({e.task_id for e in evs if isinstance(e, TaskCompleted)}) >= total // 2,
            timeout=60,
        )
        stack.restart("router-0")
        await log.wait_for(
            lambda evs: len({e.task_id for e in evs if isinstance(e, TaskCompleted)}) == total, timeout=90
        )
        completed = Counter(e.task_id for e in log.of_type(TaskCompleted))
        peaks, at_end = key_peaks(log.events)
        folded = RouterState()
        for seq, event in enumerate(log.events, start=1):
            apply_router(folded, Recorded(seq, event.subject, event))
        counted = {f"k-{i}": running_count(folded.keys, folded.fleet, f"k-{i}") for i in range(KEYS)}
        print(f"\ncompleted={len(completed)} peaks={peaks} at_end={at_end} projection={counted}")
        assert all(count == 1 for count in completed.values()), "a task completed twice"
        assert peaks == {f"k-{i}": LIMIT for i in range(KEYS)}
        assert set(at_end.values()) == {0}
        assert counted == {f"k-{i}": 0 for i in range(KEYS)}
    finally:
        if doomed.poll() is None:
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
        for agent in survivors:
            await agent.stop()
        await log.stop()
        await bus.close()
        stack.stop()
