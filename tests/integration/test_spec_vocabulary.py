"""The specification's names over real HTTP and a real log: breaker strategies of a failure report,
the request fields that reach the agent or the router, unknown values refused naming the allowed
ones, and the prediction horizon."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from services.recovery.service import RecoveryService
from services.router.service import RouterService
from services.workflow.service import WorkflowService
from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.events import (
    BreakerHalfOpened,
    BreakerOpened,
    FailureReported,
    TaskCompleted,
    TaskQueued,
    TaskSubmitted,
    WorkflowCompleted,
)
from shared.settings import Settings
from tests.conftest import EventLog, running

API = "/api/v1/orchestration"


async def idle(context: TaskContext) -> TaskOutcome:
    await asyncio.Event().wait()
    return TaskOutcome()


def recorder(seen: dict[str, dict[str, Any]]):  # type: ignore[no-untyped-def]
    async def work(context: TaskContext) -> TaskOutcome:
        seen[context.task_id] = dict(context.payload)
        return TaskOutcome(result={"ok": True}, quality=0.95)

    return work


async def test_a_failure_report_asking_for_a_breaker_strategy_opens_or_half_opens_the_agents_breaker(
    settings: Settings, bus: EventBus, http: httpx.AsyncClient, event_log: EventLog
) -> None:
    slow = Agent("slow", idle, capabilities=["x"], capacity=1)
    shaky = Agent("shaky", idle, capabilities=["x"], capacity=1)
    async with running(RecoveryService, settings):
        await slow.start(bus)
        await shaky.start(bus)
        opened = await http.post(
            f"{API}/failure/handle",
            json={
                "failure_type": "PERFORMANCE_DEGRADATION",
                "severity": "HIGH",
                "agent_id": "slow",
                "error_message": "p99 tripled",
                "timestamp": 1_753_731_000,
                "context": {"p99_ms": 900},
            },
        )
        assert opened.status_code == 200, opened.text
        body = opened.json()
        assert body["strategy"] == "circuit_breaker" and body["recovery_success"] is True
        assert body["occurred_at"] == "2025-07-28T19:30:00.000Z" and body["handled_timestamp"].endswith("Z")
        degraded = await http.post(
            f"{API}/failure/handle",
            json={
                "failure_type": "agent_error",
                "agent_id": "shaky",
                "recovery_strategy": "degraded_service",
            },
        )
        assert degraded.status_code == 200, degraded.text
        assert degraded.json()["strategy"] == "degraded_service"
        await event_log.wait_for(lambda evs: any(isinstance(e, BreakerHalfOpened) for e in evs))
        breakers = (await http.get(f"{API}/circuit-breakers", params={"agent_id": "slow"})).json()
        await slow.stop()
        await shaky.stop()
    assert [e.agent_id for e in event_log.of_type(BreakerOpened)] == ["slow"]
    assert [e.agent_id for e in event_log.of_type(BreakerHalfOpened)] == ["shaky"]
    assert breakers["breakers"][0]["status"] == "open"
    report = event_log.of_type(FailureReported)[0]
    assert report.occurred_ts == 1_753_731_000 and report.context == {"p99_ms": 900}
    assert report.detail == "p99 tripled"


async def test_unknown_values_are_a_400_naming_the_allowed_ones(http: httpx.AsyncClient) -> None:
    strategy = await http.post(
        f"{API}/task/assign", json={"task_type": "x", "routing_strategy": "telepathic"}
    )
    assert strategy.status_code == 400
    error = strategy.json()["error"]
    assert error["field"] == "routing_strategy" and "hybrid_intelligence" in error["message"]
    template = await http.post(
        f"{API}/workflow/execute",
        json={"template": "spiral", "tasks": [{"task_id": "a", "task_type": "x"}]},
    )
    assert template.status_code == 400 and "hierarchical_decomposition" in template.json()["error"]["message"]
    severity = await http.post(
        f"{API}/failure/handle", json={"failure_type": "agent_error", "severity": "DIRE", "agent_id": "a"}
    )
    assert (
        severity.status_code == 400
        and "info, low, medium, high, critical" in severity.json()["error"]["message"]
    )
    horizon = await http.get(f"{API}/recovery/predict", params={"time_horizon_minutes": 2000})
    assert horizon.status_code == 400


async def test_request_fields_of_the_document_reach_the_agent_and_the_router(
    settings: Settings, bus: EventBus, http: httpx.AsyncClient, event_log: EventLog
) -> None:
    seen: dict[str, dict[str, Any]] = {}
    agent = Agent("dev", recorder(seen), capabilities=["x", "python"], capacity=2)
    async with running(RouterService, settings), running(WorkflowService, settings):
        await agent.start(bus)
        task = await http.post(
            f"{API}/task/assign",
            json={
                "task_id": "ctx",
                "task_type": "x",
                "priority": "medium",
                "contextual_factors": {"repo": "hive"},
                "max_acceptable_delay_minutes": 5,
            },
        )
        assert task.status_code == 200, task.text
        assert task.json()["success"] is True
        constrained = await http.post(
            f"{API}/task/assign",
            json={"task_id": "gpu", "task_type": "x", "resource_constraints": {"gpu": True}},
        )
        assert constrained.status_code == 202 and "metadata {'gpu': 'true'}" in constrained.json()["detail"]
        flow = await http.post(
            f"{API}/workflow/execute",
            json={
                "workflow_id": "wf",
                "template": "iterative_refinement",
                "execution_mode": "mixed",
                "optimization_goal": "maximize_throughput",
                "resource_allocation_strategy": "balanced",
                "max_concurrent_tasks": 3,
                "max_agents": 1,
                "quality_threshold": 0.5,
                "failure_tolerance": 0.1,
                "max_duration_minutes": 60,
                "context": {"ticket": "H-17"},
                "tasks": [
                    {"task_id": "draft", "task_type": "x", "required_capabilities": ["python"]},
                    {"task_id": "polish", "task_type": "x", "priority": "medium"},
                ],
            },
        )
        assert flow.status_code == 202, flow.text
        assert flow.json()["dependencies"]["polish"] == ["draft"]
        await event_log.wait_for(lambda evs: any(isinstance(e, WorkflowCompleted) for e in evs))
        await event_log.wait_for(
            lambda evs: any(isinstance(e, TaskCompleted) and e.task_id == "ctx" for e in evs)
        )
        status = (await http.get(f"{API}/workflow/wf", params={"after_seq": max(event_log.seqs)})).json()
        await agent.stop()
    assert seen["ctx"]["contextual_factors"] == {"repo": "hive"}
    submitted = {e.task_id: e for e in event_log.of_type(TaskSubmitted)}
    assert submitted["ctx"].priority == "normal" and submitted["ctx"].quality_wait_s == 300.0
    assert submitted["gpu"].resource_constraints == {"gpu": "true"}
    steps = [e for e in submitted.values() if e.workflow_id == "wf"]
    assert len(steps) == 2
    for step in steps:
        assert step.expected_quality_threshold == 0.5 and step.deadline_ts is not None
        assert step.routing_strategy == "load_balanced" and seen[step.task_id]["context"] == {
            "ticket": "H-17"
        }
    assert status["status"] == "completed" and status["max_concurrent_tasks"] == 1
    assert status["resource_allocation_strategy"] == "balanced" and status["max_duration_minutes"] == 60
    assert any(e.reason == "no_capable_agent" for e in event_log.of_type(TaskQueued) if e.task_id == "gpu")
