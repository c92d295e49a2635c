"""Bad input over a real socket: every refusal a 4xx JSON error naming the problem, nothing stored."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from services.gateway.service import GatewayService
from shared.bus import EventBus
from shared.events import AgentRegistered, TaskSubmitted, WorkflowStep, WorkflowSubmitted
from shared.nesting import MAX_NESTING
from shared.settings import Settings
from tests.conftest import running

ASSIGN = "/api/v1/orchestration/task/assign"
EXECUTE = "/api/v1/orchestration/workflow/execute"
FAILURE = "/api/v1/orchestration/failure/handle"
AGENTS = "/api/v1/agents"
WORKFLOW_TASKS = "/api/v1/orchestration/workflow/w/tasks"
JSON = {"content-type": "application/json"}
LIMIT = 1_048_576

# A valid body for each route that needs one; `{}` stands where the deep or large part goes.
BODIES = {
    ASSIGN: '{"task_type": "x", "payload": {"a": %s}}',
    EXECUTE: '{"tasks": [{"task_id": "a", "task_type": "x", "payload": {"a": %s}}]}',
    FAILURE: '{"failure_type": "agent_error", "severity": "low", "agent_id": "a", "detail": %s}',
    AGENTS: '{"capabilities": ["x"], "metadata": {"a": %s}}',
    WORKFLOW_TASKS: '{"task_id": "b", "task_type": "x", "payload": {"a": %s}}',
}


@pytest.fixture
async def seeded(bus: EventBus, gateway: GatewayService) -> AsyncIterator[int]:
    """An agent, a task and a running workflow `w`, applied by the gateway; yields the last sequence."""
    await bus.append(AgentRegistered(agent_id="a", capabilities={"x": 1.0}), expected=None)
    await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
    step = WorkflowStep(step_id="s", task_type="x")
    result = await bus.append(WorkflowSubmitted(workflow_id="w", steps=[step]), expected=0)
    await gateway.view.wait_for(result.seq)
    yield result.seq


def assert_refused(reply: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, str]:
    assert reply.status_code == status, reply.text
    error: dict[str, str] = reply.json()["error"]
    assert error["status"] == status and error["code"] == code and error["message"]
    if field is not None:
        assert error["field"] == field
    return error


@pytest.mark.parametrize("path", list(BODIES))
async def test_a_body_nested_a_thousand_deep_is_a_400_naming_the_bound(
    http: httpx.AsyncClient, bus: EventBus, seeded: int, path: str
) -> None:
    deep = "[" * 1000 + "]" * 1000
    reply = await http.post(path, content=BODIES[path] % deep, headers=JSON)
    error = assert_refused(reply, 400, "too_deep")
    assert f"deeper than {MAX_NESTING} levels" in error["message"]
    assert await bus.last_sequence() == seeded


@pytest.mark.parametrize("path", list(BODIES))
async def test_a_body_over_one_mebibyte_is_a_413_naming_the_limit(
    http: httpx.AsyncClient, bus: EventBus, seeded: int, path: str
) -> None:
    big = '"' + "x" * LIMIT + '"'
    reply = await http.post(path, content=BODIES[path] % big, headers=JSON)
    error = assert_refused(reply, 413, "payload_too_large")
    assert f"larger than {LIMIT} bytes" in error["message"] and "GATEWAY_MAX_BODY_BYTES" in error["message"]
    assert await bus.last_sequence() == seeded


async def test_a_body_within_the_limit_whose_event_does_not_fit_one_nats_message_is_a_413(
    http: httpx.AsyncClient, bus: EventBus, seeded: int
) -> None:
    # Under 1 MiB as a body, over it as an event (ids, timestamps and defaults are added).
    filler = "x" * (LIMIT - 200)
    for path in (ASSIGN, WORKFLOW_TASKS, EXECUTE):
        reply = await http.post(path, content=BODIES[path] % f'"{filler}"', headers=JSON)
        error = assert_refused(reply, 413, "payload_too_large")
        assert "accepts" in error["message"] and str(LIMIT) in error["message"], error
    assert await bus.last_sequence() == seeded


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/api/v1/tasks/%2A", "task_id"),
        ("GET", "/api/v1/tasks/%3E", "task_id"),
        ("GET", "/api/v1/tasks/a%20b", "task_id"),
        ("GET", "/api/v1/tasks/" + "x" * 65, "task_id"),
        ("POST", "/api/v1/tasks/%3E/cancel", "task_id"),
        ("GET", "/api/v1/agents/a.b", "agent_id"),
        ("GET", "/api/v1/orchestration/workflow/a%20b", "workflow_id"),
        ("POST", "/api/v1/orchestration/workflow/%2A/tasks", "workflow_id"),
        ("POST", "/api/v1/orchestration/workflow/%2A/cancel", "workflow_id"),
        ("POST", "/api/v1/orchestration/workflow/w/tasks/%3E/cancel", "task_id"),
        ("POST", "/api/v1/orchestration/circuit-breakers/%2A/reset", "agent_id"),
    ],
)
async def test_a_path_id_that_is_not_one_subject_token_is_a_400_naming_it(
    http: httpx.AsyncClient, bus: EventBus, seeded: int, method: str, path: str, field: str
) -> None:
    body = '{"task_id": "b", "task_type": "x"}' if path.endswith("/tasks") else None
    reply = await http.request(method, path, content=body, headers=JSON)
    error = assert_refused(reply, 400, "invalid_id", field)
    assert "letters, digits" in error["message"]
    assert await bus.last_sequence() == seeded


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/tasks/nope"),
        ("POST", "/api/v1/tasks/nope/cancel"),
        ("GET", "/api/v1/agents/nope"),
        ("GET", "/api/v1/orchestration/workflow/nope"),
        ("POST", "/api/v1/orchestration/workflow/nope/cancel"),
        ("POST", "/api/v1/orchestration/workflow/w/tasks/nope/cancel"),
        ("POST", "/api/v1/orchestration/circuit-breakers/nope/reset"),
    ],
)
async def test_a_well_formed_id_that_does_not_exist_is_a_404(
    http: httpx.AsyncClient, seeded: int, method: str, path: str
) -> None:
    assert_refused(await http.request(method, path), 404, "not_found")


async def test_a_wildcard_task_id_is_refused_at_once_without_reading_the_log(
    http: httpx.AsyncClient, bus: EventBus, seeded: int
) -> None:
    for i in range(200):
        await bus.append(TaskSubmitted(task_id=f"many-{i}", task_type="x"), expected=0)
    started = time.monotonic()
    assert_refused(await http.get("/api/v1/tasks/%2A"), 400, "invalid_id", "task_id")
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("path", ["/api/v1/tasks/t", "/api/v1/orchestration/workflow/w"])
async def test_after_seq_beyond_the_end_of_the_log_is_a_400_at_once(
    http: httpx.AsyncClient, gateway: GatewayService, seeded: int, path: str
) -> None:
    started = time.monotonic()
    reply = await http.get(path, params={"after_seq": seeded + 1})
    assert time.monotonic() - started < gateway.core.read_wait_s / 2
    error = assert_refused(reply, 400, "invalid_field", "after_seq")
    assert f"last sequence is {seeded}" in error["message"]
    assert (await http.get(path, params={"after_seq": seeded})).status_code == 200


@pytest.mark.parametrize("path", list(BODIES))
async def test_an_empty_body_is_a_400_saying_the_body_is_missing(
    http: httpx.AsyncClient, bus: EventBus, seeded: int, path: str
) -> None:
    for body in (b"", b"  \n"):
        reply = await http.post(path, content=body, headers=JSON)
        error = assert_refused(reply, 400, "missing_body")
        assert "body is missing" in error["message"]
    assert await bus.last_sequence() == seeded


async def test_routes_whose_body_is_optional_take_an_empty_one(http: httpx.AsyncClient, seeded: int) -> None:
    reply = await http.post("/api/v1/tasks/t/cancel", content=b"", headers=JSON)
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/schema",
        "/api/v1/schema/openapi.json",
        "/api/v1/schema/openapi.yaml",
        "/api/v1/schema/swagger",
        "/api/v1/schema/redoc",
    ],
)
async def test_the_api_description_is_public_when_a_token_is_required(settings: Settings, path: str) -> None:
    async with (
        running(GatewayService, settings, api_token="s3cret") as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as client,
    ):
        reply = await client.get(path)
        assert reply.status_code == 200, reply.text
        assert "task/assign" in reply.text or "<html" in reply.text.lower()
        denied = await client.get("/api/v1/agents")
        assert_refused(denied, 401, "unauthorized")
