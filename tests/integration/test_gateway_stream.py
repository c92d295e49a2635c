"""The live stream (Server-Sent Events) and the dashboard's files, over a real socket.

The stream carries every event the gateway applies and every metrics sample; with HIVE_API_TOKEN it
opens with the bearer header or a short-lived ticket (a browser's EventSource sends no header), and
it ends when the gateway stops, so a stop never waits on a browser.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.gateway.service import GatewayService
from services.gateway.tickets import issue_ticket
from shared.settings import Settings
from tests.conftest import running

TOKEN = "stream-token"
ASSIGN = "/api/v1/orchestration/task/assign"


async def frames(reply: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event name, JSON data) of each Server-Sent Event, comments skipped."""
    kind, data = "message", ""
    async for line in reply.aiter_lines():
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and data:
            yield kind, json.loads(data)
            kind, data = "message", ""


async def first(stream: AsyncIterator[tuple[str, dict[str, Any]]], kind: str, **match: Any) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        async for name, data in stream:
            if name == kind and all(data.get(key) == value for key, value in match.items()):
                return data
        raise AssertionError(f"the stream ended before a {kind} frame matching {match}")

    return await asyncio.wait_for(find(), 10)


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[GatewayService]:
    async with running(GatewayService, settings, api_token=TOKEN) as service:
        yield service


async def test_the_stream_says_hello_then_sends_each_event_as_the_gateway_applies_it(
    gateway: GatewayService, http: httpx.AsyncClient
) -> None:
    async with http.stream("GET", "/api/v1/stream", params={"aggregate": "task"}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        stream = frames(reply)
        hello = await first(stream, "hello")
        assert hello["seq"] == gateway.view.seq
        submitted = await http.post(ASSIGN, json={"task_id": "watched", "task_type": "x"})
        assert submitted.status_code in (200, 202), submitted.text
        event = await first(stream, "event", id="watched")
    assert event["type"] == "task.submitted"
    assert event["aggregate"] == "task"
    assert event["subject"] == "hive.evt.task.watched.submitted"
    assert event["event"]["task_type"] == "x"
    assert event["seq"] > hello["seq"]


async def test_the_stream_sends_each_metrics_sample(settings: Settings) -> None:
    async with (
        running(GatewayService, settings, monitoring_interval_seconds=0.2) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http,
        http.stream("GET", "/api/v1/stream") as reply,
    ):
        sample = await first(frames(reply), "sample")
    assert sample["total_targets"] == 6
    assert "system_throughput_tasks_per_second" in sample["orchestration_metrics"]


async def test_an_unknown_parameter_or_event_type_is_refused(http: httpx.AsyncClient) -> None:
    unknown = await http.get("/api/v1/stream", params={"colour": "red"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["field"] == "colour"
    wrong_type = await http.get("/api/v1/stream", params={"type": "task.exploded"})
    assert wrong_type.status_code == 400
    assert wrong_type.json()["error"]["field"] == "type"


async def test_with_a_token_the_stream_opens_with_the_header_or_a_ticket_and_nothing_else(
    secured: GatewayService,
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{secured.port}", timeout=10) as http:
        assert (await http.get("/api/v1/stream")).status_code == 401
        assert (await http.post("/api/v1/stream/ticket")).status_code == 401
        forged = await http.get("/api/v1/stream", params={"ticket": f"{int(time.time()) + 60}.forged"})
        assert forged.status_code == 401
        assert "ticket" in forged.json()["error"]["message"]
        expired, _ = issue_ticket(TOKEN, time.time() - 120)
        assert (await http.get("/api/v1/stream", params={"ticket": expired})).status_code == 401
        other, _ = issue_ticket("another-token", time.time())
        assert (await http.get("/api/v1/stream", params={"ticket": other})).status_code == 401

        bearer = {"authorization": f"Bearer {TOKEN}"}
        issued = await http.post("/api/v1/stream/ticket", headers=bearer)
        assert issued.status_code == 200
        body = issued.json()
        assert body["expires_ts"] > time.time() and body["ttl_s"] == 60
        async with http.stream("GET", "/api/v1/stream", params={"ticket": body["ticket"]}) as reply:
            assert reply.status_code == 200
            await first(frames(reply), "hello")
        async with http.stream("GET", "/api/v1/stream", headers=bearer) as reply:
            assert reply.status_code == 200
            await first(frames(reply), "hello")
        # A ticket opens the stream and nothing else.
        assert (await http.get("/api/v1/agents", params={"ticket": body["ticket"]})).status_code == 401


async def test_open_streams_end_when_the_gateway_stops(settings: Settings) -> None:
    gateway = GatewayService(settings)
    await gateway.start()
    stopped = False
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http,
            http.stream("GET", "/api/v1/stream") as reply,
        ):
            stream = frames(reply)
            await first(stream, "hello")
            await asyncio.wait_for(gateway.stop(), 10)  # would hang if the server waited for the stream
            stopped = True
            rest = [frame async for frame in stream]
        assert rest == []
    finally:
        if not stopped:
            await gateway.stop()


async def test_the_dashboard_is_public_and_served_with_a_strict_content_policy(
    secured: GatewayService,
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{secured.port}", timeout=10) as http:
        root = await http.get("/")
        assert root.status_code in (301, 302, 307, 308) and root.headers["location"] == "/ui/"
        page = await http.get("/ui/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert '<script src="/ui/app.js"' in page.text
        script = await http.get("/ui/app.js")
        assert script.status_code == 200 and "EventSource" in script.text
        assert (await http.get("/ui/style.css")).status_code == 200
        assert (await http.get("/ui/missing.js")).status_code == 404
        assert (await http.get("/api/v1/agents")).status_code == 401  # the data is not public
        schema = (await http.get("/api/v1/schema/openapi.json")).json()
    assert "/api/v1/stream" in schema["paths"] and "/api/v1/stream/ticket" in schema["paths"]
    assert not any(path.startswith("/ui") for path in schema["paths"])
