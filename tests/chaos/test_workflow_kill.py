"""kill -9 the workflow service mid-run: every workflow completes, no step starts twice or early."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from services.cli.bench.common import wait_for_services
from services.cli.stack import local_stack
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import EventBus
from shared.domain.workflow_spec import apply_template
from shared.events import (
    TaskCompleted,
    TaskSubmitted,
    WorkflowCompleted,
    WorkflowStep,
    WorkflowStepDispatched,
    WorkflowSubmitted,
)
from tests.conftest import EventLog
from tests.integration.workflow_helpers import finished, outcome, started_before_dependencies_completed

pytestmark = pytest.mark.chaos


async def test_killing_the_workflow_service_mid_run_loses_and_repeats_no_step(tmp_path: Path) -> None:
    stack = local_stack(
        tmp_path / "hive",
        services=("router", "recovery", "workflow"),
        scale={"workflow": 2},
        work_ack_wait_s=2.0,
    )
    stack.start()
    bus = await EventBus.connect(stack.nats_url, "chaos")
    await bus.ensure_streams()
    log = await EventLog(bus).start()
    agents = make_simulated_agents(4, capabilities=["x"], capacity=3, profile=SimulationProfile(work_s=0.01))
    graphs: dict[str, dict[str, list[str]]] = {}
    try:
        await wait_for_services(bus, {"router": 1, "recovery": 1, "workflow": 2})
        for agent in agents:
            await agent.start(bus)
        for template in ("linear_pipeline", "map_reduce", "fan_in", "parallel_fanout"):
            steps = apply_template(
                template, [WorkflowStep(step_id=f"s{i}", task_type="x") for i in range(15)]
            )
            graphs[template] = {s.step_id: s.dependencies for s in steps}
            await bus.append(WorkflowSubmitted(workflow_id=template, steps=steps), expected=0)
        await log.wait_for(lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) >= 10)
        stack.kill("workflow-0")
        await log.wait_for(lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) >= 25)
        stack.kill("workflow-1")
        stack.restart("workflow-0")
        stack.restart("workflow-1")
        await log.wait_for(finished(*graphs), timeout=60)
        completed = [w for w in graphs if isinstance(outcome(log, w), WorkflowCompleted)]
        submitted = Counter(e.task_id for e in log.of_type(TaskSubmitted))
        dispatched = Counter((e.workflow_id, e.step_id) for e in log.of_type(WorkflowStepDispatched))
        print(f"\nworkflows completed={len(completed)}/{len(graphs)} steps submitted={len(submitted)}")
        assert completed == list(graphs)
        assert len(submitted) == 60 and set(submitted.values()) == {1}
        assert len(dispatched) == 60 and set(dispatched.values()) == {1}
        assert started_before_dependencies_completed(log, graphs) == []
    finally:
        for agent in agents:
            await agent.stop()
        await log.stop()
        await bus.close()
        stack.stop()
