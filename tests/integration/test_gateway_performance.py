"""Metrics, performance validation and load-balancing optimize over real HTTP, computed from real events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from services.balancer.service import BalancerService
from services.gateway.service import GatewayService
from services.router.service import RouterService
from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.domain import starts
from shared.events import (
    AgentRegistered,
    LoadRebalanced,
    RebalanceRequested,
    TaskAssigned,
    TaskCompleted,
    TaskRequeued,
)
from shared.settings import Settings
from tests.conftest import EventLog, running

METRICS = "/api/v1/orchestration/metrics"
VALIDATE = "/api/v1/orchestration/performance/validate"
OPTIMIZE = "/api/v1/orchestration/load-balancing/optimize"
ASSIGN = "/api/v1/orchestration/task/assign"
TARGETS = {
    "task_assignment_latency_target_ms": 60_000.0,
    "routing_accuracy_target": 100.0,
    "throughput_target_tps": 1e9,
}


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[GatewayService]:
    async with running(GatewayService, settings, **TARGETS) as service:  # type: ignore[arg-type]
        yield service


@pytest.fixture
async def http(gateway: GatewayService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as client:
        yield client


async def good_work(context: TaskContext) -> TaskOutcome:
    return TaskOutcome(result="ok", quality=0.9)


async def test_metrics_are_computed_from_the_events_in_the_window(
    settings: Settings, bus: EventBus, event_log: EventLog, gateway: GatewayService, http: httpx.AsyncClient
) -> None:
    empty = (await http.get(METRICS)).json()
    assert set(empty["orchestration_metrics"]) == {
        "task_assignment_latency_ms",
        "load_balancing_efficiency",
        "routing_accuracy_percent",
        "failure_recovery_time_ms",
        "system_throughput_tasks_per_second",
        "workflow_completion_rate",
    }
    assert all(value is None for value in empty["orchestration_metrics"].values())
    assert empty["performance_score"] is None and empty["targets_met"] == 0 and empty["total_targets"] == 6
    async with running(RouterService, settings):
        agents = [Agent(f"a{i}", good_work, capabilities=["review"], capacity=2) for i in range(2)]
        for agent in agents:
            await agent.start(bus)
        for index in range(6):
            reply = await http.post(ASSIGN, json={"task_id": f"t{index}", "task_type": "review"})
            assert reply.status_code in (200, 202), reply.text
        await event_log.wait_for(lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) == 6)
        for agent in agents:
            await agent.stop()
    await gateway.view.wait_for(event_log.seqs[-1])
    body = (await http.get(METRICS)).json()
    figures = body["orchestration_metrics"]
    assert body["samples"]["task_assignment_latency_ms"] == 6
    assert 0 < figures["task_assignment_latency_ms"] < 60_000
    assert body["percentiles"]["task_assignment_latency_ms"]["p50"] <= figures["task_assignment_latency_ms"]
    assert 0.0 <= figures["load_balancing_efficiency"] <= 1.0
    assert figures["routing_accuracy_percent"] == 100.0 and body["samples"]["routing_accuracy_percent"] == 6
    assert figures["system_throughput_tasks_per_second"] > 0
    assert figures["failure_recovery_time_ms"] is None and figures["workflow_completion_rate"] is None
    assert body["seq"] >= event_log.seqs[-1]

    checks = {c["metric"]: c for c in (await http.get(VALIDATE)).json()["targets"]}
    assert checks["task_assignment_latency_ms"]["met"] is True  # target set to 60 s for this test
    assert checks["task_assignment_latency_ms"]["variable"] == "TASK_ASSIGNMENT_LATENCY_TARGET_MS"
    assert checks["routing_accuracy_percent"]["met"] is True
    assert checks["system_throughput_tasks_per_second"]["met"] is False  # 1e9 tasks/s
    assert checks["failure_recovery_time_ms"]["met"] is None
    validated = (await http.get(VALIDATE)).json()
    assert validated["status"] == "not_met"
    assert validated["targets_met"] == sum(1 for c in checks.values() if c["met"])
    assert validated["targets_measured"] == sum(1 for c in checks.values() if c["met"] is not None)

    await gateway.monitor.tick(time.time())  # the gauges follow every MONITORING_INTERVAL_SECONDS
    prometheus = (await http.get("/metrics")).text
    assert "orchestration_routing_accuracy_ratio 1.0" in prometheus


@pytest.mark.parametrize("query", ["window_s=0", "window_s=-5", "window_s=abc", "window_s=100000"])
async def test_a_bad_window_is_a_400_naming_it(http: httpx.AsyncClient, query: str) -> None:
    for path in (METRICS, VALIDATE):
        reply = await http.get(f"{path}?{query}")
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["field"] == "window_s"


async def test_optimize_moves_unstarted_work_and_a_dry_run_only_says_what_would_move(
    settings: Settings,
    bus: EventBus,
    event_log: EventLog,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Moves at once: no wait for the assignment to pass START_REPORTED_WITHIN_S (whose own tests
    # are in test_balancer_decide and test_lazy_start).
    monkeypatch.setattr(starts, "START_REPORTED_WITHIN_S", 0.0)
    await bus.append(
        AgentRegistered(agent_id="stalled", capabilities={"review": 0.9}, capacity=1, session="s"),
        expected=None,
    )
    async with running(RouterService, settings):
        reply = await http.post(ASSIGN, json={"task_id": "t", "task_type": "review"})
        assert reply.json()["agent_id"] == "stalled"
        await bus.append(
            AgentRegistered(agent_id="idle", capabilities={"review": 0.9}, capacity=1, session="s"),
            expected=None,
        )
        async with running(BalancerService, settings, enable_rebalancing=False, rebalance_interval_s=3600.0):
            dry = await http.post(
                OPTIMIZE, json={"dry_run": True, "unstarted_after_s": 0, "request_id": "dry"}
            )
            assert dry.status_code == 200, dry.text
            body = dry.json()
            assert body["status"] == "done" and body["dry_run"] is True
            assert [
                (m["task_id"], m["from_agent_id"], m["to_agent_id"], m["attempt"]) for m in body["moves"]
            ] == [("t", "stalled", "idle", 2)]
            assert body["efficiency_before"] == body["efficiency_after"] == 1.0  # one task: even either way
            await event_log.wait_for(
                lambda evs: any(isinstance(e, LoadRebalanced) and e.scope == "dry" for e in evs)
            )
            assert not event_log.of_type(TaskRequeued), "a dry run moves nothing"

            patient = await http.post(OPTIMIZE, json={"unstarted_after_s": 3600})
            assert patient.status_code == 200 and patient.json()["moves"] == []

            moved = await http.post(OPTIMIZE, json={"unstarted_after_s": 0, "requested_by": "test"})
            assert moved.status_code == 200, moved.text
            assert [m["to_agent_id"] for m in moved.json()["moves"]] == ["idle"]
            await event_log.wait_for(
                lambda evs: any(isinstance(e, TaskAssigned) and e.agent_id == "idle" for e in evs)
            )
            again = await http.post(OPTIMIZE, json={"request_id": "dry"})
            assert again.status_code == 409 and again.json()["error"]["field"] == "request_id"
    requeued = event_log.of_type(TaskRequeued)
    assert [(e.reason, e.preferred_agent_id) for e in requeued] == [("rebalanced", "idle")]


async def test_without_a_balancer_an_optimize_request_is_accepted_and_left_for_it(
    settings: Settings, bus: EventBus
) -> None:
    async with (
        running(GatewayService, settings, assign_wait_ms=50) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as client,
    ):
        reply = await client.post(OPTIMIZE)
        assert reply.status_code == 202
        body = reply.json()
        assert body["status"] == "requested" and body["request_id"] in body["detail"]
    stored, _ = await bus.read_aggregate("system", body["request_id"])
    assert [type(r.event) for r in stored] == [RebalanceRequested]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"max_moves": -1}', "max_moves"),
        ('{"max_moves": 20000}', "max_moves"),
        ('{"unstarted_after_s": -1}', "unstarted_after_s"),
        ('{"dry_run": "maybe"}', "dry_run"),
        ('{"request_id": "a b"}', "request_id"),
        ('{"surprise": 1}', "surprise"),
        ('{"dry_run": ', None),
    ],
)
async def test_a_bad_optimize_request_gets_a_400_and_appends_nothing(
    http: httpx.AsyncClient, bus: EventBus, body: str, field: str | None
) -> None:
    before = await bus.last_sequence()
    reply = await http.post(OPTIMIZE, content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["field"] == field
    assert await bus.last_sequence() == before
