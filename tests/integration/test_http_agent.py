"""HTTP agents against a real local HTTP server: outcome, status codes, the task's timeout, a takeover
that fences a late answer, cancellation, and ``hive agent http`` itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.recovery.service import RecoveryService
from services.router.service import RouterService
from shared.agent import Agent
from shared.agent.webhook import EndpointSpec, endpoint_handler
from shared.bus import EventBus
from shared.events import (
    AgentDeregistered,
    AgentRegistered,
    RetryPolicy,
    TaskAttemptFailed,
    TaskCancelRequested,
    TaskCompleted,
    TaskFailed,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.settings import Settings
from tests.conftest import EventLog, running, watching_logs

ROOT = Path(__file__).resolve().parents[2]


class Endpoint:
    """A service on a real socket; what it answers is the task payload's ``mode``.

    ok: 200 with an outcome echoing what it got; reject: 400; flaky: 503 on attempt 1, then ok;
    hold: answers ok only once ``release`` is set (or the test ends).
    """

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.release = threading.Event()
        self.holding = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {name.lower(): value for name, value in self.headers.items()}
                endpoint.requests.append((headers, body))
                mode = body["payload"]["mode"]
                if mode == "hold":
                    endpoint.holding.set()
                    endpoint.release.wait(30)
                if mode == "reject":
                    self.answer(400, {"error": "no diff to review"})
                elif mode == "flaky" and headers["hive-attempt"] == "1":
                    self.answer(503, {"error": "overloaded"})
                else:
                    self.answer(200, {"result": {"reviewed": body["task_id"]}, "quality": 0.6})

            def answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tasks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with Endpoint() as running_endpoint:
        yield running_endpoint


@pytest.fixture
async def hive(settings: Settings, bus: EventBus) -> AsyncIterator[None]:
    """Router and recovery, stopped before the test's connection closes."""
    async with running(RouterService, settings), running(RecoveryService, settings):
        yield


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as pool:
        yield pool


def http_agent(endpoint: Endpoint, client: httpx.AsyncClient) -> Agent:
    spec = EndpointSpec(endpoint.url, {"Authorization": "Bearer t0ken"})
    return Agent("web-1", endpoint_handler(spec, client), capabilities=["review"], capacity=2)


def submit(task_id: str, mode: str, *, timeout_s: float = 60.0, attempts: int = 3) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id,
        task_type="review",
        payload={"mode": mode},
        timeout_s=timeout_s,
        retry=RetryPolicy(max_attempts=attempts, initial_backoff_s=0.01),
    )


async def test_a_2xx_answer_completes_the_task_with_its_outcome(
    hive: None, bus: EventBus, event_log: EventLog, endpoint: Endpoint, client: httpx.AsyncClient
) -> None:
    agent = http_agent(endpoint, client)
    await agent.start(bus)
    try:
        await bus.append(submit("t", "ok"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs))
    finally:
        await agent.stop()
    [completed] = event_log.of_type(TaskCompleted)
    assert (completed.result, completed.quality) == ({"reviewed": "t"}, 0.6)
    [(headers, body)] = endpoint.requests
    assert (body["task_id"], body["task_type"], body["attempt"], body["payload"]) == (
        "t",
        "review",
        1,
        {"mode": "ok"},
    )
    assert (
        headers["idempotency-key"] == "t:1"
        and headers["hive-task-id"] == "t"
        and headers["hive-attempt"] == "1"
    )
    assert headers["authorization"] == "Bearer t0ken" and headers["content-type"] == "application/json"


async def test_a_4xx_fails_the_task_for_good_and_a_5xx_is_retried(
    hive: None, bus: EventBus, event_log: EventLog, endpoint: Endpoint, client: httpx.AsyncClient
) -> None:
    agent = http_agent(endpoint, client)
    await agent.start(bus)
    try:
        await bus.append(submit("bad", "reject"), expected=0)
        await bus.append(submit("flaky", "flaky"), expected=0)
        await event_log.wait_for(
            lambda evs: (
                any(isinstance(e, TaskFailed) for e in evs) and any(isinstance(e, TaskCompleted) for e in evs)
            )
        )
    finally:
        await agent.stop()
    failures = {(e.task_id, e.attempt): e for e in event_log.of_type(TaskAttemptFailed)}
    assert failures[("bad", 1)].retryable is False and "HTTP 400" in failures[("bad", 1)].error
    assert failures[("flaky", 1)].retryable is True and "HTTP 503" in failures[("flaky", 1)].error
    assert [(e.task_id, e.attempt) for e in event_log.of_type(TaskCompleted)] == [("flaky", 2)]
    assert [e.task_id for e in event_log.of_type(TaskFailed)] == ["bad"]


async def test_no_answer_before_the_task_timeout_fails_the_attempt(
    hive: None, bus: EventBus, event_log: EventLog, endpoint: Endpoint, client: httpx.AsyncClient
) -> None:
    agent = http_agent(endpoint, client)
    await agent.start(bus)
    try:
        await bus.append(submit("t", "hold", timeout_s=0.5, attempts=1), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskFailed) for e in evs))
    finally:
        await agent.stop()
    [attempt] = event_log.of_type(TaskAttemptFailed)
    assert attempt.failure_type == "task_timeout" and attempt.retryable


async def test_an_unreachable_endpoint_is_a_retryable_failure(
    hive: None, bus: EventBus, event_log: EventLog, client: httpx.AsyncClient
) -> None:
    with Endpoint() as closed:
        url = closed.url
    spec = EndpointSpec(url, connect_timeout_s=2.0)
    agent = Agent("web-1", endpoint_handler(spec, client), capabilities=["review"])
    await agent.start(bus)
    try:
        await bus.append(submit("t", "ok", attempts=1), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskFailed) for e in evs))
    finally:
        await agent.stop()
    [attempt] = event_log.of_type(TaskAttemptFailed)
    assert attempt.retryable and "unreachable" in attempt.error


async def test_an_answer_after_a_takeover_is_refused(
    hive: None, bus: EventBus, event_log: EventLog, endpoint: Endpoint, client: httpx.AsyncClient
) -> None:
    agent = http_agent(endpoint, client)
    await agent.start(bus)
    try:
        await bus.append(submit("t", "hold"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
        await asyncio.wait_for(asyncio.to_thread(endpoint.holding.wait, 10), 15)
        # The attempt is taken over behind the agent's back (what recovery does to a silent agent).
        await bus.append(
            TaskRequeued(task_id="t", attempt=2, reason="agent_unresponsive"),
            expected=await bus.aggregate_version("task", "t"),
        )
        endpoint.release.set()
        await agent.wait_idle(10)
        assert agent.stats.fenced == 1, "the late answer was refused"
    finally:
        await agent.stop()
    assert [e.attempt for e in event_log.of_type(TaskCompleted)] == []


async def test_a_cancelled_attempt_abandons_its_request_and_reports_nothing(
    hive: None, bus: EventBus, event_log: EventLog, endpoint: Endpoint, client: httpx.AsyncClient
) -> None:
    with watching_logs("task_cancelled") as logs:
        agent = http_agent(endpoint, client)
        await agent.start(bus)
        try:
            await bus.append(submit("t", "hold"), expected=0)
            await asyncio.wait_for(asyncio.to_thread(endpoint.holding.wait, 10), 15)
            await bus.append(
                TaskCancelRequested(agent_id="web-1", task_id="t", attempt=1, reason="cancelled"),
                expected=None,
            )
            await asyncio.wait_for(logs.arrived.wait(), 10)
        finally:
            await agent.stop()
    assert event_log.of_type(TaskAttemptFailed) == [] and event_log.of_type(TaskCompleted) == []


async def test_hive_agent_http_registers_posts_tasks_and_drains_on_sigterm(
    hive: None, settings: Settings, bus: EventBus, event_log: EventLog, endpoint: Endpoint
) -> None:
    env = {**os.environ, "NATS_URL": settings.nats_url}
    for name in ("NATS_USER", "NATS_PASSWORD", "HIVE_AGENT_CREDENTIALS"):
        env.pop(name, None)
    command = ["agent", "http", "--id", "web-9", "--capability", "review", "--url", endpoint.url]
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        *command,
        "--header",
        "X-Team: reviewers",
        env=env,
        cwd=ROOT,
    )
    try:
        await event_log.wait_for(lambda evs: any(isinstance(e, AgentRegistered) for e in evs), timeout=30)
        await bus.append(submit("t", "ok"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs), timeout=30)
        agent.send_signal(signal.SIGTERM)
        await event_log.wait_for(lambda evs: any(isinstance(e, AgentDeregistered) for e in evs), timeout=30)
        assert await asyncio.wait_for(agent.wait(), 30) == 0
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    [completed] = event_log.of_type(TaskCompleted)
    assert completed.agent_id == "web-9" and completed.result == {"reviewed": "t"}
    [(headers, _)] = endpoint.requests
    assert headers["x-team"] == "reviewers"
