"""Acceptance of issue 17: the specification's own request examples, pasted as they are, against
``hive up --agents 3`` (the default simulated fleet, as a user runs it): every one is answered 2xx
and every task and workflow they submit completes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.bus import EventBus
from shared.credentials import CredentialStore
from shared.embedded import free_port
from shared.events import AgentRegistered, AnyEvent, RecoveryActionTaken, TaskCompleted, WorkflowCompleted
from shared.permissions import ADMIN
from tests.conftest import EventLog
from tests.integration.test_cli_auth import read_until

API = "/api/v1/orchestration"

WORKFLOW_EXAMPLE: dict[str, Any] = {
    "workflow_id": "advanced-workflow-123",
    "name": "Advanced Development Workflow",
    "description": "Complex multi-step development workflow",
    "execution_mode": "adaptive",
    "optimization_goal": "balance_all",
    "tasks": [
        {
            "task_id": "task1",
            "task_type": "code_generation",
            "name": "Generate API",
            "dependencies": [],
            "required_capabilities": ["python", "fastapi"],
        }
    ],
}

SECOND_WORKFLOW: dict[str, Any] = {
    "workflow_id": "code-improvement-workflow",
    "template": "linear_pipeline",
    "execution_mode": "adaptive",
    "tasks": [
        {
            "task_id": "analysis",
            "task_type": "code_analysis",
            "required_capabilities": ["python", "analysis"],
            "estimated_duration_minutes": 30,
            "parallelizable": True,
        },
        {
            "task_id": "refactoring",
            "task_type": "code_refactoring",
            "dependencies": ["analysis"],
            "required_capabilities": ["python", "refactoring"],
            "estimated_duration_minutes": 60,
        },
    ],
}

TASK_EXAMPLE: dict[str, Any] = {
    "task_id": "task-123",
    "task_type": "code_review",
    "routing_strategy": "persona_cognitive_match",
    "creativity_requirements": 0.3,
    "analytical_depth": 0.8,
    "expected_quality_threshold": 0.9,
}

ROUTING_CONTEXT_EXAMPLE: dict[str, Any] = {
    "task_id": "task-124",
    "task_type": "code_review",
    "routing_strategy": "hybrid_intelligence",
    "priority": "medium",
    "preferred_cognitive_style": "analytical",
    "creativity_requirements": 0.3,
    "analytical_depth": 0.8,
    "collaboration_intensity": 0.5,
}


def failure_example() -> dict[str, Any]:
    """The document's FailureEvent as its Python example builds it, serialised."""
    return {
        "event_id": str(uuid.uuid4()),
        "failure_type": "AGENT_UNRESPONSIVE",
        "severity": "HIGH",
        "timestamp": datetime.now(UTC).isoformat(),
        "agent_id": "failed-agent-123",
    }


def count(events: list[AnyEvent], kind: type) -> int:
    return sum(1 for event in events if isinstance(event, kind))


@contextlib.asynccontextmanager
async def hive_up(home: Path, agents: int) -> AsyncIterator[tuple[str, EventLog]]:
    """``hive up --agents N`` in a subprocess on free ports; the gateway's URL and the admin's log."""
    nats_url = f"nats://127.0.0.1:{free_port()}"
    port = free_port()
    env = dict(os.environ, HIVE_HOME=str(home), NATS_URL=nats_url, GATEWAY_PORT=str(port))
    for var in ("NATS_USER", "NATS_PASSWORD", "HIVE_AGENT_CREDENTIALS", "HIVE_API_TOKEN"):
        env.pop(var, None)
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        "up",
        "--agents",
        str(agents),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert up.stdout is not None
    try:
        await read_until(up.stdout, "Press Ctrl-C to stop.", timeout=90)
        admin = CredentialStore(home).credentials(ADMIN)
        bus = await EventBus.connect(nats_url, "acceptance", user=admin.user, password=admin.password)
        log = await EventLog(bus).start()
        try:
            await log.wait_for(lambda evs: count(evs, AgentRegistered) >= agents, timeout=60)
            yield f"http://127.0.0.1:{port}", log
        finally:
            await log.stop()
            await bus.close()
        up.send_signal(signal.SIGINT)
        await asyncio.wait_for(up.wait(), 60)
    finally:
        if up.returncode is None:
            up.kill()
            await up.wait()


def completed_task(task_id: str):  # type: ignore[no-untyped-def]
    return lambda evs: any(isinstance(e, TaskCompleted) and e.task_id == task_id for e in evs)


def completed_workflow(workflow_id: str):  # type: ignore[no-untyped-def]
    return lambda evs: any(isinstance(e, WorkflowCompleted) and e.workflow_id == workflow_id for e in evs)


@pytest.mark.timeout(300)
async def test_every_request_example_of_the_specification_runs_on_hive_up_out_of_the_box(
    tmp_path: Path,
) -> None:
    async with (
        hive_up(tmp_path / "hive", agents=3) as (gateway, log),
        httpx.AsyncClient(base_url=gateway, timeout=15) as http,
    ):
        # The two workflows: their capabilities are the default fleet's.
        for workflow in (WORKFLOW_EXAMPLE, SECOND_WORKFLOW):
            reply = await http.post(f"{API}/workflow/execute", json=workflow)
            assert reply.status_code == 202, reply.text
        # task/assign as the document posts it (quality 0.9, no deadline) and with its routing context.
        for task in (TASK_EXAMPLE, ROUTING_CONTEXT_EXAMPLE):
            reply = await http.post(f"{API}/task/assign", json=task)
            assert reply.status_code in (200, 202), reply.text
            assert reply.json()["timestamp"].endswith("Z")
        # failure/handle: the document's failed agent exists in its story; here it registers first.
        registered = await http.post(
            "/api/v1/agents", json={"agent_id": "failed-agent-123", "capabilities": ["python"]}
        )
        assert registered.status_code in (200, 201), registered.text
        reply = await http.post(f"{API}/failure/handle", json=failure_example())
        assert reply.status_code in (200, 202), reply.text
        handled = reply.json()
        assert handled["failure_type"] == "agent_unresponsive" and handled["severity"] == "high"
        assert handled["strategy"] == "request_restart" and handled["occurred_at"]
        assert {"recovery_metrics", "system_impact", "improvement_recommendations"} <= set(handled)
        assert handled["system_impact"]["affected_agents"] == ["failed-agent-123"]

        await log.wait_for(completed_workflow("advanced-workflow-123"), timeout=60)
        await log.wait_for(completed_workflow("code-improvement-workflow"), timeout=60)
        await log.wait_for(completed_task("task-124"), timeout=60)
        # Held below 0.9 by a fresh fleet, then given to the best agent after QUALITY_WAIT_S (10 s).
        await log.wait_for(completed_task("task-123"), timeout=90)
        await log.wait_for(lambda evs: count(evs, RecoveryActionTaken) >= 1, timeout=30)

        task = (await http.get("/api/v1/tasks/task-123", params={"after_seq": max(log.seqs)})).json()
        assert task["status"] == "completed", task
        decision = task["assignments"][-1]
        assert (
            decision["breakdown"]["predicted_quality"] >= 0.9
            or "best available agent" in (decision["explanation"])
        ), decision
        medium = (await http.get("/api/v1/tasks/task-124")).json()
        assert medium["priority"] == "normal" and medium["routing_strategy"] == "hybrid_intelligence"

        # The GET endpoints (and the optimisation trigger) of the document's table.
        metrics = await http.get(f"{API}/metrics")
        assert metrics.status_code == 200, metrics.text
        body = metrics.json()
        assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
        system = body["system_metrics"]
        assert system["completed_tasks"] >= 5 and system["active_agents"] >= 3
        assert {"cpu_utilization_percent", "memory_utilization_percent", "active_workflows"} <= set(system)
        validate = await http.get(f"{API}/performance/validate")
        assert validate.status_code == 200, validate.text
        checked = validate.json()
        assert set(checked["target_results"]) == {t["metric"] for t in checked["targets"]}
        assert isinstance(checked["improvement_recommendations"], list)
        predicted = await http.get(f"{API}/recovery/predict", params={"time_horizon_minutes": 30})
        assert predicted.status_code == 200, predicted.text
        forecast = predicted.json()
        assert forecast["time_horizon_minutes"] == 30
        assert set(forecast["predictions"]) >= {"sim-0", "sim-1", "sim-2"}
        assert all(forecast["predictions"][agent] > 0.7 for agent in forecast["high_risk_agents"])
        breakers = await http.get(f"{API}/circuit-breakers")
        assert breakers.status_code == 200, breakers.text
        optimized = await http.post(f"{API}/load-balancing/optimize")
        assert optimized.status_code in (200, 202), optimized.text
        health = await http.get(f"{API}/health")
        assert health.status_code == 200, health.text
        reported = health.json()
        assert reported["running"] is True and reported["timestamp"].endswith("Z")
        assert set(reported["components"]) == {
            "orchestration_engine",
            "task_router",
            "recovery_manager",
            "workflow_engine",
            "persona_system",
        }
        assert set(reported["components"].values()) == {"healthy"} and reported["uptime_seconds"] > 0
