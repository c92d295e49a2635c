"""The HTTP gateway over a real socket: routing answers, status, and one error shape for bad input."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from services.gateway.service import GatewayService
from services.router.service import RouterService
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.embedded import EmbeddedNats
from shared.events import TaskCancelled, TaskCancelRequested, TaskSubmitted
from shared.settings import Settings
from tests.conftest import EventLog, running

ASSIGN = "/api/v1/orchestration/task/assign"


async def never_finishes(context: TaskContext) -> None:
    await asyncio.Event().wait()


async def test_a_routed_task_is_answered_with_its_agent_and_explained_in_its_status(
    settings: Settings, bus: EventBus, http: httpx.AsyncClient
) -> None:
    async with running(RouterService, settings):
        agent = Agent("reviewer", never_finishes, capabilities=["code_review"], capacity=1)
        await agent.start(bus)
        reply = await http.post(
            ASSIGN, json={"task_id": "t1", "task_type": "code_review", "priority": "high"}
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["status"] == "assigned" and body["agent_id"] == "reviewer"
        assert body["breakdown"] and body["explanation"]
        status = (await http.get("/api/v1/tasks/t1")).json()
        assert status["status"] in ("assigned", "running")
        assert status["assignments"][0]["agent_id"] == "reviewer"
        assert status["priority"] == "high"
        queued = await http.post(ASSIGN, json={"task_id": "t2", "task_type": "code_review"})
        assert queued.status_code == 202
        assert queued.json()["status"] == "queued"
        assert queued.json()["reason"] == "all_capable_agents_busy"
        await agent.stop()


async def test_without_a_router_the_task_is_accepted_as_pending(
    http: httpx.AsyncClient, bus: EventBus
) -> None:
    reply = await http.post(ASSIGN, json={"task_type": "summarise"})
    assert reply.status_code == 202
    body = reply.json()
    assert body["status"] == "pending"
    events, _ = await bus.read_aggregate("task", body["task_id"])
    assert isinstance(events[0].event, TaskSubmitted)


async def test_a_task_id_reused_with_other_content_is_a_conflict_and_the_same_request_is_not(
    http: httpx.AsyncClient, bus: EventBus
) -> None:
    first = await http.post(ASSIGN, json={"task_id": "same", "task_type": "x"})
    assert first.status_code == 202
    again = await http.post(ASSIGN, json={"task_id": "same", "task_type": "x"})
    assert again.status_code == 202, "the same request again (a client's retry) is answered as the original"
    answer, original = again.json(), first.json()
    assert answer.pop("timestamp") >= original.pop("timestamp"), "when each answer was given"
    assert answer == original
    other = await http.post(ASSIGN, json={"task_id": "same", "task_type": "x", "priority": "high"})
    assert other.status_code == 409
    assert other.json()["error"]["field"] == "task_id" and "other content" in other.json()["error"]["message"]
    events, _ = await bus.read_aggregate("task", "same")
    assert [type(r.event) for r in events] == [TaskSubmitted]


async def test_a_delayed_task_retried_is_answered_with_its_original_start(
    http: httpx.AsyncClient, bus: EventBus
) -> None:
    request = {"task_id": "later", "task_type": "x", "delay_seconds": 600}
    first = await http.post(ASSIGN, json=request)
    again = await http.post(ASSIGN, json=request)  # a retry, a moment later: the same delay
    assert (first.status_code, again.status_code) == (202, 202)
    answer, original = again.json(), first.json()
    assert answer.pop("timestamp") >= original.pop("timestamp"), "when each answer was given"
    assert answer == original and original["status"] == "scheduled"
    events, _ = await bus.read_aggregate("task", "later")
    assert [type(r.event) for r in events] == [TaskSubmitted]


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ('{"task_type": ', None, "malformed_json"),
        ("not json", None, "malformed_json"),
        ('{"priority": "high"}', "task_type", "invalid_field"),
        ('{"task_type": "x", "priority": "urgent"}', "priority", "invalid_field"),
        ('{"task_type": "x", "creativity_requirements": 3}', "creativity_requirements", "invalid_field"),
        ('{"task_type": "x", "routing_strategy": "fastest"}', "routing_strategy", "invalid_field"),
        (
            '{"task_type": "x", "expected_quality_threshold": 1.5}',
            "expected_quality_threshold",
            "invalid_field",
        ),
        ('{"task_type": "x", "task_id": "a b"}', "task_id", "invalid_field"),
        ('{"task_type": "x", "surprise": 1}', "surprise", "invalid_field"),
        ('{"task_type": "x", "retry": {"max_attempts": 0}}', "retry.max_attempts", "invalid_field"),
        ("[1, 2]", None, "invalid_field"),
    ],
)
async def test_bad_input_gets_a_400_json_error_naming_the_field(
    http: httpx.AsyncClient, bus: EventBus, body: str, field: str | None, code: str
) -> None:
    before = await bus.last_sequence()
    reply = await http.post(ASSIGN, content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["status"] == 400 and error["code"] == code and error["message"]
    if field is not None:
        assert error["field"] == field
        assert field in error["message"]
    assert await bus.last_sequence() == before, "bad input must not append anything"


async def test_agents_register_and_are_listed_with_their_load(
    http: httpx.AsyncClient, gateway: GatewayService
) -> None:
    reply = await http.post(
        "/api/v1/agents",
        json={
            "agent_id": "ana",
            "capabilities": {"code_analysis": 0.9},
            "capacity": 3,
            "persona": {"cognitive_style": "analytical", "analytical_depth": 0.9},
        },
    )
    assert reply.status_code == 201, reply.text
    await gateway.view.wait_for(reply.json()["seq"])
    listed = (await http.get("/api/v1/agents")).json()
    assert [a["agent_id"] for a in listed] == ["ana"]
    assert listed[0]["capacity"] == 3 and listed[0]["persona"]["cognitive_style"] == "analytical"
    assert (await http.get("/api/v1/agents/ana")).json()["in_flight"] == 0
    missing = await http.get("/api/v1/agents/bob")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = await http.post("/api/v1/agents", json={"capabilities": {"x": 2}})
    assert bad.status_code == 400 and bad.json()["error"]["field"].startswith("capabilities")


async def test_an_unknown_task_is_404(http: httpx.AsyncClient) -> None:
    reply = await http.get("/api/v1/tasks/nope")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"


async def test_a_read_after_a_sequence_waits_for_it_or_says_it_is_behind(
    http: httpx.AsyncClient, gateway: GatewayService, bus: EventBus
) -> None:
    submitted = (await http.post(ASSIGN, json={"task_id": "mine", "task_type": "x"})).json()
    mine = await http.get("/api/v1/tasks/mine", params={"after_seq": submitted["seq"]})
    assert mine.status_code == 200 and mine.json()["task_id"] == "mine"
    negative = await http.get("/api/v1/tasks/mine", params={"after_seq": -1})
    assert negative.status_code == 400 and negative.json()["error"]["field"] == "after_seq"
    # A sequence the log does not reach: refused at once, not waited for.
    started = time.monotonic()
    beyond = await http.get("/api/v1/tasks/mine", params={"after_seq": submitted["seq"] + 1000})
    assert time.monotonic() - started < gateway.core.read_wait_s / 2
    assert beyond.status_code == 400 and beyond.json()["error"]["field"] == "after_seq"
    assert "beyond the end of the log" in beyond.json()["error"]["message"]
    # A sequence the log holds but this gateway has not applied: 503 after the wait.
    await gateway.view.stop(snapshot=False)
    later = await bus.append(TaskSubmitted(task_id="later", task_type="x"), expected=0)
    gateway.core.read_wait_s = 0.2
    behind = await http.get("/api/v1/tasks/mine", params={"after_seq": later.seq})
    assert behind.status_code == 503 and behind.json()["error"]["code"] == "unavailable"


async def test_cancelling_a_running_task_tells_its_agent(
    settings: Settings, bus: EventBus, http: httpx.AsyncClient, event_log: EventLog
) -> None:
    async with running(RouterService, settings):
        agent = Agent("worker", never_finishes, capabilities=["x"], capacity=1)
        await agent.start(bus)
        assert (await http.post(ASSIGN, json={"task_id": "long", "task_type": "x"})).status_code == 200
        await event_log.wait_for(lambda evs: any(type(e).__name__ == "TaskStarted" for e in evs))
        reply = await http.post("/api/v1/tasks/long/cancel", json={"reason": "changed my mind"})
        assert reply.status_code == 200, reply.text
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCancelRequested) for e in evs))
        again = await http.post("/api/v1/tasks/long/cancel")
        assert again.status_code == 409
        await agent.stop()
    assert event_log.of_type(TaskCancelled)[0].reason == "changed my mind"


async def test_health_lists_every_service_instance(settings: Settings, http: httpx.AsyncClient) -> None:
    degraded = await http.get("/api/v1/orchestration/health")
    assert degraded.status_code == 503
    assert "router" in degraded.json()["missing_services"]
    async with running(RouterService, settings):
        body = (await http.get("/api/v1/orchestration/health")).json()
    assert body["services"]["router"][0]["status"] == "ok"
    assert body["services"]["gateway"][0]["status"] == "ok"


async def test_metrics_and_openapi_are_served(http: httpx.AsyncClient) -> None:
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200 and "hive_queue_depth" in metrics.text
    schema = (await http.get("/api/v1/schema/openapi.json")).json()
    assert ASSIGN in schema["paths"]
    assert "/api/v1/tasks/{task_id}" in schema["paths"]


async def test_a_token_is_required_when_configured(settings: Settings) -> None:
    async with (
        running(GatewayService, settings, api_token="s3cret") as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as client,
    ):
        denied = await client.get("/api/v1/agents")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        wrong = await client.get("/api/v1/agents", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        allowed = await client.get("/api/v1/agents", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200
        assert (await client.get("/api/v1/orchestration/health")).status_code in (200, 503)


async def test_when_nats_is_down_the_gateway_answers_503_and_recovers(
    settings: Settings, nats_server: EmbeddedNats, http: httpx.AsyncClient, gateway: GatewayService
) -> None:
    nats_server.kill()
    down = await http.post(ASSIGN, json={"task_id": "during-outage", "task_type": "x"})
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "unavailable" and down.headers["retry-after"] == "1"
    nats_server.start()
    await gateway.view.catch_up(timeout=30)
    back = await http.post(ASSIGN, json={"task_id": "after-outage", "task_type": "x"})
    assert back.status_code == 202, back.text


async def test_a_task_assign_retried_after_a_503_is_answered_as_the_original(
    settings: Settings,
    nats_server: EmbeddedNats,
    http: httpx.AsyncClient,
    gateway: GatewayService,
    bus: EventBus,
) -> None:
    """The issue's outage: the 503 may hide a stored task; its retry must not be a 409."""
    request = {"task_id": "retried", "task_type": "x", "priority": "high", "deadline_seconds": 600}
    nats_server.kill()
    down = await http.post(ASSIGN, json=request)
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    error = down.json()["error"]
    assert error["field"] == "task_id"
    assert "task 'retried' may have been stored" in error["message"] and "same task_id" in error["message"]
    nats_server.start()
    await gateway.view.catch_up(timeout=30)
    again = await http.post(ASSIGN, json=request)
    assert again.status_code == 202, again.text
    assert again.json()["task_id"] == "retried"
    once_more = await http.post(ASSIGN, json=request)
    assert once_more.status_code == 202 and once_more.json()["seq"] == again.json()["seq"]
    events, _ = await bus.read_aggregate("task", "retried")
    assert [type(r.event) for r in events] == [TaskSubmitted], "stored once, whichever try landed"
