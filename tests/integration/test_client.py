"""The Python client against a real Hive: every endpoint through its typed method, the gateway's
errors as HiveApiError, bearer tokens, an unreachable gateway, and an import free of the server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from services.balancer.service import BalancerService
from services.gateway import (
    limit_schemas,
    performance_schemas,
    recovery_schemas,
    schedule_schemas,
    schemas,
    workflow_schemas,
)
from services.gateway.history import HistorySample as ServerHistorySample
from services.gateway.service import GatewayService
from services.recovery.service import RecoveryService
from services.router.service import RouterService
from services.workflow.service import WorkflowService
from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.client import (
    AgentRegistration,
    FailureEvent,
    HiveApiError,
    HiveClient,
    HiveConnectionError,
    HiveTimeoutError,
    Persona,
    ScheduleRequest,
    TaskRequest,
    WorkflowRequest,
    WorkflowTask,
)
from shared.client import models as client
from shared.domain.performance_targets import TargetCheck as ServerTargetCheck
from shared.domain.prediction import Factor, Prediction
from shared.embedded import free_port
from shared.settings import Settings
from tests.conftest import running

CAPABILITIES = [
    "python",
    "fastapi",
    "analysis",
    "refactoring",
    "code_review",
    "code_generation",
    "code_analysis",
    "code_refactoring",
]


async def good_work(task: TaskContext) -> TaskOutcome:
    return TaskOutcome(result={"done": task.task_id}, quality=0.95)


@asynccontextmanager
async def whole_hive(settings: Settings, bus: EventBus) -> AsyncIterator[HiveClient]:
    """The five services in this loop, two capable agents, and a client of the gateway."""
    agents = [
        Agent(f"dev-{i}", good_work, capabilities=CAPABILITIES, capacity=2, persona=Persona())
        for i in range(2)
    ]
    async with (
        running(RouterService, settings),
        running(RecoveryService, settings),
        running(BalancerService, settings),
        running(WorkflowService, settings),
        running(GatewayService, settings) as gateway,
        HiveClient(f"http://127.0.0.1:{gateway.port}") as hive,
    ):
        for agent in agents:
            await agent.start(bus)
        try:
            yield hive
        finally:
            for agent in agents:
                await agent.stop()


async def test_every_endpoint_answers_through_its_typed_method(settings: Settings, bus: EventBus) -> None:
    async with whole_hive(settings, bus) as hive:
        health = await hive.health()
        assert health.status == "ok" and not health.missing_services

        # router.route_task_advanced(...) in the document
        assigned = await hive.assign_task(
            TaskRequest(
                task_id="task-123",
                task_type="code_review",
                routing_strategy="persona_cognitive_match",
                creativity_requirements=0.3,
                analytical_depth=0.8,
                preferred_cognitive_style="analytical",
                collaboration_intensity=0.5,
                expected_quality_threshold=0.5,
            )
        )
        assert assigned.task_id == "task-123" and assigned.status in ("assigned", "queued", "pending")
        done = await hive.wait_for_task("task-123", timeout=30)
        assert done.status == "completed" and done.quality == 0.95 and done.assignments
        assert (await hive.get_task("task-123", after_seq=assigned.seq)).agent_id in ("dev-0", "dev-1")
        page = await hive.list_tasks(status="completed", limit=10)
        assert [t.task_id for t in page.items] == ["task-123"] and page.next_cursor is None
        assert [t.task_id async for t in hive.iter_tasks(task_type="code_review")] == ["task-123"]
        timeline = await hive.events(aggregate="task", aggregate_id="task-123")
        assert timeline.items[0].type == "task.submitted" and timeline.items[-1].type == "task.completed"

        # workflow_engine.execute_enhanced_workflow(workflow) in the document
        accepted = await hive.execute_workflow(
            WorkflowRequest(
                workflow_id="code-improvement-workflow",
                template="linear_pipeline",
                execution_mode="adaptive",
                tasks=[
                    WorkflowTask(
                        task_id="analysis",
                        task_type="code_analysis",
                        required_capabilities=["python", "analysis"],
                        estimated_duration_minutes=30,
                        parallelizable=True,
                    ),
                    WorkflowTask(
                        task_id="refactoring",
                        task_type="code_refactoring",
                        dependencies=["analysis"],
                        required_capabilities=["python", "refactoring"],
                        estimated_duration_minutes=60,
                    ),
                ],
            )
        )
        assert accepted.critical_path == ["analysis", "refactoring"]
        finished = await hive.wait_for_workflow("code-improvement-workflow", timeout=30)
        assert finished.status == "completed" and finished.progress.completed == 2
        listed = await hive.list_workflows(status="completed")
        assert [w.workflow_id for w in listed.items] == ["code-improvement-workflow"]

        # A workflow that cannot run (nobody offers its type): add, cancel a task, cancel it.
        await hive.execute_workflow(
            {"workflow_id": "stuck", "tasks": [{"task_id": "a", "task_type": "cobol"}]}
        )
        added = await hive.add_workflow_task("stuck", WorkflowTask(task_id="b", task_type="cobol"))
        assert added.task_id == "b"
        await hive.cancel_workflow_task("stuck", "b", reason="not needed")
        cancelled = await hive.cancel_workflow("stuck", reason="test over")
        status = await hive.workflow_status("stuck", after_seq=cancelled.seq)
        assert status.status == "cancelled" and status.ended

        # Agents over HTTP (a capability nobody asks for: it never heartbeats, so no work for it).
        registered = await hive.register_agent(
            AgentRegistration(agent_id="clerk", capabilities=["paperwork"], capacity=1)
        )
        assert registered.agent_id == "clerk"
        await hive.get_task("task-123", after_seq=registered.seq)
        assert {"dev-0", "dev-1", "clerk"} <= {a.agent_id for a in await hive.list_agents()}
        assert (await hive.get_agent("dev-0")).completed >= 1

        # recovery_manager.handle_failure(event) in the document
        handled = await hive.handle_failure(
            FailureEvent(failure_type="agent_error", severity="low", agent_id="dev-1", detail="flaky disk")
        )
        assert handled.status in ("handled", "reported") and handled.strategy == "retry_with_backoff"

        breakers = await hive.circuit_breakers()
        assert {b.agent_id for b in breakers.breakers} >= {"dev-0", "dev-1"}
        reset = await hive.reset_circuit_breaker("dev-0", requested_by="test")
        assert (reset.agent_id, reset.status) == ("dev-0", "closed")
        predictions = await hive.predict_failures()
        assert {p.agent_id for p in predictions.forecasts} >= {"dev-0", "dev-1"}
        assert all(0.0 <= p.probability <= 1.0 for p in predictions.forecasts)
        assert predictions.predictions == {p.agent_id: p.probability for p in predictions.forecasts}

        # engine.optimize_load_distribution() in the document
        optimized = await hive.optimize_load(dry_run=True)
        assert optimized.status == "done" and optimized.dry_run
        metrics = await hive.metrics()
        assert metrics.total_targets == 6 and metrics.orchestration_metrics.routing_accuracy_percent == 100.0
        history = await hive.metrics_history()
        assert history.samples and history.interval_s == settings.monitoring_interval_seconds
        validation = await hive.validate_performance(window_s=600)
        assert validation.window_s == 600 and len(validation.targets) == 6

        # Delayed tasks and schedules.
        later = await hive.assign_task(
            TaskRequest(task_id="later", task_type="code_review", delay_seconds=3600)
        )
        assert later.status == "scheduled" and later.not_before_ts is not None
        assert (await hive.get_task("later", after_seq=later.seq)).status == "scheduled"
        schedule = await hive.create_schedule(
            ScheduleRequest(schedule_id="hourly", cron="@hourly", task=TaskRequest(task_type="code_review"))
        )
        assert schedule.status == "active" and len(schedule.next_firings) == 5
        assert schedule.task is not None and schedule.task.task_type == "code_review"
        paused = await hive.pause_schedule("hourly", reason="quiet")
        assert (await hive.get_schedule("hourly", after_seq=paused.seq)).status == "paused"
        resumed = await hive.resume_schedule("hourly")
        assert (await hive.get_schedule("hourly", after_seq=resumed.seq)).status == "active"
        assert [s.schedule_id for s in await hive.list_schedules(status="active")] == ["hourly"]
        assert (await hive.delete_schedule("hourly", reason="done")).status == "deleted"

        # Key limits.
        limited = await hive.set_concurrency_limit("repo-*", 2, strategy="cancel_newest")
        assert limited.kind == "concurrency" and limited.status == "set"
        rated = await hive.set_rate_limit("openai", 60, period_seconds=60, burst=10)
        limits = await hive.limits(after_seq=rated.seq)
        assert [(c.pattern, c.max_running, c.strategy) for c in limits.concurrency] == [
            ("repo-*", 2, "cancel_newest")
        ]
        assert [(r.pattern, r.limit, r.burst) for r in limits.rate] == [("openai", 60, 10)]
        key = await hive.key("repo-1", after_seq=rated.seq)
        assert key.concurrency_limit is not None and key.concurrency_limit.max_running == 2
        assert (await hive.remove_concurrency_limit("repo-*")).status == "removed"
        removed = await hive.remove_rate_limit("openai")
        assert (await hive.limits(after_seq=removed.seq)).rate == []

        assert "orchestration_circuit_breaker_state" in await hive.prometheus_metrics()
        assert "/api/v1/orchestration/task/assign" in (await hive.openapi())["paths"]


def readme_example() -> str:
    """The README's client example, without its last line (``asyncio.run(main())``)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- client-example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert block.rstrip().endswith("asyncio.run(main())")
    return block.rstrip().removesuffix("asyncio.run(main())")


async def test_the_readme_example_runs_against_a_real_hive(
    settings: Settings, bus: EventBus, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    async with whole_hive(settings, bus) as hive:
        await namespace["main"](hive.base_url)
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith("completed"), printed
    assert printed[2].startswith("completed 100"), printed
    assert printed[3].startswith("404 not_found"), "failed-agent-123 is unknown to this Hive"
    assert printed[4].startswith("done"), printed


async def test_the_gateways_errors_arrive_as_hive_api_errors_with_their_shape(
    settings: Settings, bus: EventBus
) -> None:
    async with (
        running(GatewayService, settings) as gateway,
        HiveClient(f"http://127.0.0.1:{gateway.port}") as hive,
    ):
        with pytest.raises(HiveApiError) as missing:
            await hive.get_task("no-such-task")
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        with pytest.raises(HiveApiError) as bad:
            await hive.assign_task({"task_type": "x", "priority": "urgent"})
        assert (bad.value.status, bad.value.code, bad.value.field) == (400, "invalid_field", "priority")
        assert not bad.value.retryable
        queued = await hive.assign_task(TaskRequest(task_id="lonely", task_type="nobody-does-this"))
        assert queued.status in ("queued", "pending")
        with pytest.raises(HiveTimeoutError, match="task lonely still"):
            await hive.wait_for_task("lonely", timeout=0.3, poll_s=0.05)
        cancelled = await hive.cancel_task("lonely", reason="no agent")
        assert cancelled.status == "cancelled"
        with pytest.raises(HiveApiError) as again:
            await hive.cancel_task("lonely")
        assert (again.value.status, again.value.code) == (409, "conflict")


async def test_a_bearer_token_is_sent_and_a_missing_one_is_a_401(settings: Settings) -> None:
    async with running(GatewayService, settings, api_token="s3cret") as gateway:
        url = f"http://127.0.0.1:{gateway.port}"
        async with HiveClient(url) as anonymous:
            with pytest.raises(HiveApiError) as refused:
                await anonymous.list_agents()
            assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        async with HiveClient(url, token="s3cret") as trusted:
            assert await trusted.list_agents() == []


async def test_an_unreachable_gateway_is_a_connection_error() -> None:
    async with HiveClient(f"http://127.0.0.1:{free_port()}", timeout=2) as hive:
        with pytest.raises(HiveConnectionError, match=r"GET http://127\.0\.0\.1"):
            await hive.health()


def test_the_client_imports_nothing_of_the_server() -> None:
    probe = (
        "import sys; import shared.client; "
        "server = {'nats', 'litestar', 'prometheus_client', 'opentelemetry', 'uvicorn', 'aiosqlite', "
        "'services'}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & server))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


PAIRS: list[tuple[type[msgspec.Struct], type[msgspec.Struct]]] = [
    (client.TaskRequest, schemas.TaskAssignRequest),
    (client.TaskAssignment, schemas.TaskAssignResponse),
    (client.Assignment, schemas.AssignmentOut),
    (client.Task, schemas.TaskOut),
    (client.Cancelled, schemas.CancelResponse),
    (client.AgentRegistration, schemas.RegisterAgentRequest),
    (client.RegisteredAgent, schemas.RegisterAgentResponse),
    (client.Agent, schemas.AgentOut),
    (client.Health, schemas.HealthResponse),
    (client.ErrorBody, schemas.ErrorBody),
    (client.WorkflowTask, workflow_schemas.WorkflowTaskIn),
    (client.WorkflowRequest, workflow_schemas.WorkflowExecuteRequest),
    (client.WorkflowAccepted, workflow_schemas.WorkflowAccepted),
    (client.WorkflowStatus, workflow_schemas.WorkflowOut),
    (client.WorkflowTaskStatus, workflow_schemas.WorkflowTaskOut),
    (client.WorkflowProgress, workflow_schemas.WorkflowProgress),
    (client.WorkflowSummary, workflow_schemas.WorkflowSummary),
    (client.WorkflowPage, workflow_schemas.WorkflowPage),
    (client.TaskSummary, schemas.TaskSummary),
    (client.TaskPage, schemas.TaskPage),
    (client.EventRecord, schemas.EventOut),
    (client.EventPage, schemas.EventPage),
    (client.WorkflowChange, workflow_schemas.WorkflowChange),
    (client.FailureEvent, recovery_schemas.FailureHandleRequest),
    (client.FailureHandled, recovery_schemas.FailureHandleResponse),
    (client.CircuitBreaker, recovery_schemas.BreakerOut),
    (client.BreakerPolicy, recovery_schemas.BreakerPolicyOut),
    (client.CircuitBreakers, recovery_schemas.CircuitBreakersResponse),
    (client.BreakerResetDone, recovery_schemas.BreakerResetResponse),
    (client.Predictions, recovery_schemas.PredictResponse),
    (client.Prediction, Prediction),
    (client.PredictionFactor, Factor),
    (client.Metrics, performance_schemas.MetricsResponse),
    (client.OrchestrationMetrics, performance_schemas.OrchestrationMetricsOut),
    (client.SystemMetrics, performance_schemas.SystemMetricsOut),
    (client.ScaleAdvice, performance_schemas.ScaleAdviceOut),
    (client.MetricsHistory, performance_schemas.MetricsHistoryResponse),
    (client.HistorySample, ServerHistorySample),
    (client.TargetCheck, ServerTargetCheck),
    (client.Validation, performance_schemas.ValidateResponse),
    (client.OptimizeRequest, performance_schemas.OptimizeRequest),
    (client.Move, performance_schemas.MoveOut),
    (client.LoadOptimization, performance_schemas.OptimizeResponse),
    (client.ScheduleRequest, schedule_schemas.ScheduleRequest),
    (client.Schedule, schedule_schemas.ScheduleOut),
    (client.ScheduleSummary, schedule_schemas.ScheduleSummary),
    (client.ScheduleChange, schedule_schemas.ScheduleChange),
    (client.NextFiring, schedule_schemas.NextFiring),
    (client.Firing, schedule_schemas.FiringOut),
    (client.ConcurrencyLimit, limit_schemas.ConcurrencyLimitOut),
    (client.RateLimit, limit_schemas.RateLimitOut),
    (client.Limits, limit_schemas.LimitsOut),
    (client.LimitChange, limit_schemas.LimitChange),
    (client.KeyState, limit_schemas.KeyOut),
]


@pytest.mark.parametrize(("mine", "theirs"), PAIRS, ids=[mine.__name__ for mine, _ in PAIRS])
def test_the_client_models_name_the_same_fields_as_the_gateways_schemas(
    mine: type[msgspec.Struct], theirs: type[msgspec.Struct]
) -> None:
    assert set(mine.__struct_fields__) == set(theirs.__struct_fields__)
