"""Recovery endpoints over real HTTP: failure handling, circuit breakers, reset, prediction."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from services.gateway.service import GatewayService
from services.recovery.service import RecoveryService
from services.router.service import RouterService
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.events import (
    AgentQuarantined,
    AgentRegistered,
    AgentRestartRequested,
    BreakerOpened,
    BreakerReset,
    FailureReported,
    RecoveryActionTaken,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.settings import Settings
from tests.conftest import EventLog, running

HANDLE = "/api/v1/orchestration/failure/handle"
BREAKERS = "/api/v1/orchestration/circuit-breakers"
PREDICT = "/api/v1/orchestration/recovery/predict"


async def never_finishes(context: TaskContext) -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize(
    ("failure_type", "severity", "strategy", "agent_event"),
    [
        ("agent_error", "high", "quarantine_agent", AgentQuarantined),
        ("resource_exhaustion", "critical", "request_restart", AgentRestartRequested),
        ("network_partition", "critical", "escalate", AgentQuarantined),
    ],
)
async def test_a_reported_failure_gets_the_strategy_of_its_type_and_severity_and_its_work_moves(
    settings: Settings,
    bus: EventBus,
    http: httpx.AsyncClient,
    event_log: EventLog,
    failure_type: str,
    severity: str,
    strategy: str,
    agent_event: type,
) -> None:
    bad = Agent("bad", never_finishes, capabilities=["x"], capacity=2)
    good = Agent("good", never_finishes, capabilities=["x"], capacity=2)
    async with running(RouterService, settings), running(RecoveryService, settings):
        await bad.start(bus)
        for task_id in ("t1", "t2"):
            await bus.append(TaskSubmitted(task_id=task_id, task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: sum(isinstance(e, TaskStarted) for e in evs) == 2)
        await good.start(bus)
        reply = await http.post(
            HANDLE,
            json={
                "failure_type": failure_type,
                "severity": severity,
                "agent_id": "bad",
                "detail": "seen in prod",
            },
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["status"] == "handled" and body["strategy"] == strategy
        assert sorted(body["task_ids"]) == ["t1", "t2"]
        assert body["escalated"] == (strategy == "escalate")
        metrics = body["recovery_metrics"]
        assert metrics["tasks_moved"] == 2 and metrics["actions_taken"] == len(body["actions"])
        assert metrics["handled_in_ms"] is not None and metrics["handled_in_ms"] >= 0
        impact = body["system_impact"]
        assert impact["affected_agents"] == ["bad"] and sorted(impact["affected_tasks"]) == ["t1", "t2"]
        assert impact["level"] != "none" and body["improvement_recommendations"]
        # A restarting agent may be handed a new attempt under its old session, which its new
        # session then orphans (attempt 3): either way each task runs again under a later attempt.
        await event_log.wait_for(
            lambda evs: (
                {e.task_id for e in evs if isinstance(e, TaskStarted) and e.attempt >= 2} == {"t1", "t2"}
            )
        )
        await bad.stop()
        await good.stop()
    assert [type(e) for e in event_log.events if isinstance(e, agent_event)] == [agent_event]
    requeued = [r for r in event_log.of_type(TaskRequeued) if r.attempt == 2]
    assert sorted((r.task_id, r.reason) for r in requeued) == [("t1", failure_type), ("t2", failure_type)]
    [action] = event_log.of_type(RecoveryActionTaken)
    assert action.scope == body["incident_id"] and action.strategy == strategy
    assert action.failure_type == failure_type and action.severity == severity
    if strategy == "request_restart":
        assert bad.stats.restarts == 1
        sessions = {e.session for e in event_log.of_type(AgentRegistered) if e.agent_id == "bad"}
        assert len(sessions) == 2, "the agent re-registered under a new session"


async def test_retry_with_backoff_fails_the_attempt_and_the_retry_policy_takes_over(
    settings: Settings, bus: EventBus, http: httpx.AsyncClient, event_log: EventLog
) -> None:
    calls: list[int] = []

    async def second_time_lucky(context: TaskContext) -> str:
        calls.append(context.attempt)
        if context.attempt == 1:
            await asyncio.Event().wait()
        return "ok"

    agent = Agent("worker", second_time_lucky, capabilities=["x"], capacity=1)
    async with running(RouterService, settings), running(RecoveryService, settings):
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
        reply = await http.post(HANDLE, json={"failure_type": "agent_error", "task_id": "t"})
        assert reply.status_code == 200 and reply.json()["strategy"] == "retry_with_backoff"
        assert reply.json()["agent_id"] == "worker"
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs))
        await agent.stop()
    [failed] = event_log.of_type(TaskAttemptFailed)
    assert (failed.attempt, failed.failure_type, failed.agent_id) == (1, "agent_error", "worker")
    [requeued] = event_log.of_type(TaskRequeued)
    assert requeued.not_before_ts > requeued.ts, "charged to the budget: retried after a backoff"
    assert calls == [1, 2]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"severity": "high", "agent_id": "a"}', "failure_type"),
        ('{"failure_type": "meteor", "agent_id": "a"}', "failure_type"),
        ('{"failure_type": "agent_error", "severity": "apocalyptic", "agent_id": "a"}', "severity"),
        ('{"failure_type": "agent_error"}', "agent_id"),
        ('{"failure_type": "agent_error", "agent_id": "a b"}', "agent_id"),
        ('{"failure_type": "agent_error", "agent_id": "a", "blame": "me"}', "blame"),
        ('{"failure_type": "agent_error", "task_id": "t", "incident_id": "x.y"}', "incident_id"),
    ],
)
async def test_a_bad_failure_report_gets_a_400_naming_the_field_and_appends_nothing(
    http: httpx.AsyncClient, bus: EventBus, body: str, field: str
) -> None:
    before = await bus.last_sequence()
    reply = await http.post(HANDLE, content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["field"] == field and error["code"] == "invalid_field"
    assert await bus.last_sequence() == before


async def test_failures_of_unknown_agents_or_tasks_are_404_and_a_reused_incident_id_is_409(
    http: httpx.AsyncClient, bus: EventBus, gateway: GatewayService
) -> None:
    unknown_agent = await http.post(HANDLE, json={"failure_type": "agent_error", "agent_id": "ghost"})
    assert unknown_agent.status_code == 404 and unknown_agent.json()["error"]["field"] == "agent_id"
    unknown_task = await http.post(HANDLE, json={"failure_type": "task_timeout", "task_id": "nothing"})
    assert unknown_task.status_code == 404 and unknown_task.json()["error"]["field"] == "task_id"
    seq = (await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)).seq
    await gateway.view.wait_for(seq)
    report = {"failure_type": "task_timeout", "task_id": "t", "incident_id": "inc-1"}
    first = await http.post(HANDLE, json=report)
    assert first.status_code == 202, "no recovery service: reported, with the plan it will follow"
    assert first.json()["strategy"] == "retry_with_backoff" and first.json()["status"] == "reported"
    again = await http.post(HANDLE, json=report)
    assert again.status_code == 409 and again.json()["error"]["field"] == "incident_id"
    incidents, _ = await bus.read_aggregate("system", "inc-1")
    assert [type(r.event) for r in incidents] == [FailureReported]


async def hold(bus: EventBus, task_id: str, agent_id: str) -> None:
    """A task assigned to `agent_id` (outcomes count only from the agent holding the attempt); under a
    session of its own, so a running SDK agent of that id leaves it alone."""
    await bus.append(TaskSubmitted(task_id=task_id, task_type="x"), expected=0)
    assignment = TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1, session="held")
    await bus.append(assignment, expected=None)


async def test_breakers_are_listed_with_their_window_and_an_open_one_is_reset_by_hand(
    http: httpx.AsyncClient, bus: EventBus, gateway: GatewayService
) -> None:
    for agent_id in ("calm", "tripped"):
        await bus.append(AgentRegistered(agent_id=agent_id, capabilities={"x": 1.0}), expected=None)
    for task_id in ("c0", "c1", "c2", "c9"):
        await hold(bus, task_id, "calm")
    for index in range(3):
        await bus.append(TaskCompleted(task_id=f"c{index}", agent_id="calm", attempt=1), expected=None)
    await bus.append(TaskAttemptFailed(task_id="c9", agent_id="calm", attempt=1), expected=None)
    opened = await bus.append(
        BreakerOpened(
            agent_id="tripped", failure_rate=0.8, calls=10, reason="8 of 10 failed", retry_after_ts=1e12
        ),
        expected=0,
    )
    await gateway.view.wait_for(opened.seq)
    listing = (await http.get(BREAKERS)).json()
    by_agent = {b["agent_id"]: b for b in listing["breakers"]}
    assert by_agent["calm"]["status"] == "closed"
    assert (by_agent["calm"]["calls"], by_agent["calm"]["failures"], by_agent["calm"]["failure_rate"]) == (
        4,
        1,
        0.25,
    )
    assert by_agent["tripped"]["status"] == "open" and by_agent["tripped"]["times_opened"] == 1
    assert listing["counts"] == {"closed": 1, "open": 1, "half_open": 0}
    assert listing["policy"]["enabled"] is True and listing["policy"]["failure_threshold"] == 0.5
    only_open = (await http.get(BREAKERS, params={"status": "open"})).json()["breakers"]
    assert [b["agent_id"] for b in only_open] == ["tripped"]

    reset = await http.post(f"{BREAKERS}/tripped/reset", json={"requested_by": "oncall"})
    assert reset.status_code == 200, reset.text
    await gateway.view.wait_for(reset.json()["seq"])
    assert (await http.get(BREAKERS, params={"agent_id": "tripped"})).json()["breakers"][0][
        "status"
    ] == "closed"
    events, _ = await bus.read_aggregate("breaker", "tripped")
    assert isinstance(events[-1].event, BreakerReset) and events[-1].event.requested_by == "oncall"

    assert (await http.post(f"{BREAKERS}/ghost/reset")).status_code == 404
    bad_id = await http.post(f"{BREAKERS}/a.b/reset")
    assert bad_id.status_code == 400 and bad_id.json()["error"]["field"] == "agent_id"
    bad_status = await http.get(BREAKERS, params={"status": "ajar"})
    assert bad_status.status_code == 400 and bad_status.json()["error"]["field"] == "status"


async def test_predictions_rank_a_failing_agent_first_and_show_their_factors(
    http: httpx.AsyncClient, bus: EventBus, gateway: GatewayService
) -> None:
    solid = Agent("solid", never_finishes, capabilities=["x"])
    shaky = Agent("shaky", never_finishes, capabilities=["x"])
    await solid.start(bus)
    await shaky.start(bus)
    for index in range(10):
        await hold(bus, f"s{index}", "solid")
        await hold(bus, f"k{index}", "shaky")
        await bus.append(
            TaskCompleted(task_id=f"s{index}", agent_id="solid", attempt=1, duration_s=1.0), expected=None
        )
        outcome = TaskAttemptFailed(task_id=f"k{index}", agent_id="shaky", attempt=1, error="boom")
        last = await bus.append(outcome, expected=None)
    await gateway.view.wait_for(last.seq)
    body = (await http.get(PREDICT)).json()
    ranked = [(p["agent_id"], p["probability"]) for p in body["forecasts"]]
    assert [agent for agent, _ in ranked] == ["shaky", "solid"]
    assert ranked[0][1] > 0.5 > ranked[1][1]
    assert list(body["predictions"].items()) == ranked  # the specification's map, riskiest first
    factors = {f["name"]: f for f in body["forecasts"][0]["factors"]}
    assert set(factors) == {
        "error_rate",
        "latency_trend",
        "heartbeat_jitter",
        "heartbeat_gap",
        "breaker_history",
    }
    assert factors["error_rate"]["value"] == 1.0 and "10 of its last 10" in factors["error_rate"]["detail"]
    assert body["forecasts"][0]["risk"] == "high"
    one = (await http.get(PREDICT, params={"agent_id": "solid"})).json()["forecasts"]
    assert [p["agent_id"] for p in one] == ["solid"]
    assert (await http.get(PREDICT, params={"agent_id": "ghost"})).status_code == 404
    invalid = await http.get(PREDICT, params={"agent_id": "a b"})
    assert invalid.status_code == 400 and invalid.json()["error"]["field"] == "agent_id"
    await solid.stop()
    await shaky.stop()


async def test_recovery_endpoints_are_in_the_openapi_schema(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/api/v1/schema/openapi.json")).json()["paths"]
    assert {HANDLE, BREAKERS, PREDICT, f"{BREAKERS}/{{agent_id}}/reset"} <= set(paths)
