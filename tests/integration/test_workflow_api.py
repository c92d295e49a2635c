"""Workflow endpoints over HTTP: refusals before anything is stored, status, changes while running."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from shared.agent.sdk import Agent
from shared.bus import EventBus
from shared.domain.workflow_spec import MAX_STEPS
from shared.domain.workflows import step_task_id
from shared.events import (
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskStarted,
    TaskSubmitted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowStepDispatched,
)
from shared.settings import Settings
from tests.conftest import EventLog
from tests.integration.workflow_helpers import (
    EXECUTE,
    Gate,
    finished,
    hive,
    outcome,
    quick,
    task,
    workflow_url,
)


async def test_a_cycle_is_refused_with_400_naming_the_cycle_and_nothing_is_stored(
    http: httpx.AsyncClient, bus: EventBus
) -> None:
    before = await bus.last_sequence()
    body = {"tasks": [task("fetch", "publish"), task("build", "fetch"), task("publish", "build")]}
    reply = await http.post(EXECUTE, json=body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "invalid_workflow" and error["field"] == "tasks"
    assert "dependency cycle: fetch -> publish -> build -> fetch" in error["message"]
    assert await bus.last_sequence() == before


def body_with(*tasks: dict[str, Any], **fields: Any) -> str:
    return json.dumps({"tasks": list(tasks), **fields})


BAD_WORKFLOWS: list[tuple[str, str, str | None, str]] = [
    (body_with(task("a"), task("a")), "invalid_workflow", "tasks[1].task_id", "duplicate task id 'a'"),
    (body_with(task("a", "ghost")), "invalid_workflow", "tasks[0].dependencies", "unknown task 'ghost'"),
    (body_with(task("a", "a")), "invalid_workflow", "tasks[0].dependencies", "depends on itself"),
    (
        body_with(task("a", condition="on_failure")),
        "invalid_workflow",
        "tasks[0].condition",
        "could never run",
    ),
    (body_with(task("a"), task("b"), template="map_reduce"), "invalid_workflow", "tasks", "at least 3"),
    (body_with(), "invalid_workflow", "tasks", "at least one task"),
    (body_with(task("a"), execution_mode="eager"), "invalid_field", "execution_mode", "eager"),
    (body_with(task("a"), optimization_goal="cheap"), "invalid_field", "optimization_goal", "cheap"),
    (body_with(task("a", condition="sometimes")), "invalid_field", "tasks[0].condition", "sometimes"),
    (body_with(task("a b")), "invalid_field", "tasks[0].task_id", "regex"),
    (
        body_with(task("a", estimated_duration_minutes=-1)),
        "invalid_field",
        "tasks[0].estimated_duration_minutes",
        ">= 0",
    ),
    (
        body_with(task("a", retry={"max_attempts": 0})),
        "invalid_field",
        "tasks[0].retry.max_attempts",
        ">= 1",
    ),
    (body_with(task("a", timeout_seconds=0)), "invalid_field", "tasks[0].timeout_seconds", "> 0"),
    (body_with(task("a"), surprise=1), "invalid_field", "surprise", "surprise"),
    ('{"name": "no tasks"}', "invalid_field", "tasks", "tasks"),
    (body_with(*(task(f"t{i}") for i in range(MAX_STEPS + 1))), "invalid_field", "tasks", str(MAX_STEPS)),
    ('{"tasks": [', "malformed_json", None, "JSON"),
]
"""(body, error code, field named, words in the message): one server for all, they append nothing."""


async def test_a_bad_workflow_gets_a_400_naming_the_problem_and_nothing_is_stored(
    http: httpx.AsyncClient, bus: EventBus
) -> None:
    before = await bus.last_sequence()
    for body, code, field, words in BAD_WORKFLOWS:
        reply = await http.post(EXECUTE, content=body, headers={"content-type": "application/json"})
        assert reply.status_code == 400, (body[:80], reply.text)
        error = reply.json()["error"]
        assert (error["code"], error["field"]) == (code, field), (body[:80], error)
        assert words in error["message"], (body[:80], error)
    assert await bus.last_sequence() == before


async def test_a_duplicate_workflow_id_is_a_conflict_and_a_huge_one_too_large(
    http: httpx.AsyncClient, bus: EventBus
) -> None:
    assert (await http.post(EXECUTE, json={"workflow_id": "w", "tasks": [task("a")]})).status_code == 202
    again = await http.post(EXECUTE, json={"workflow_id": "w", "tasks": [task("b")]})
    assert again.status_code == 409 and again.json()["error"]["field"] == "workflow_id"
    before = await bus.last_sequence()
    huge = await http.post(EXECUTE, json={"tasks": [task("a", payload={"blob": "x" * 1_100_000})]})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"
    assert await bus.last_sequence() == before


async def test_unknown_workflows_and_tasks_are_404_and_finished_ones_409(
    http: httpx.AsyncClient, bus: EventBus
) -> None:
    assert (await http.get(workflow_url("nope"))).status_code == 404
    assert (await http.post(workflow_url("nope", "cancel"))).status_code == 404
    assert (await http.post(workflow_url("nope", "tasks"), json=task("a"))).status_code == 404
    seq = (await http.post(EXECUTE, json={"workflow_id": "w", "tasks": [task("a")]})).json()["seq"]
    assert (await http.get(workflow_url("w"), params={"after_seq": seq})).json()["status"] == "waiting"
    assert (await http.post(workflow_url("w", "tasks", "ghost", "cancel"))).status_code == 404
    duplicate = await http.post(workflow_url("w", "tasks"), json=task("a"))
    assert duplicate.status_code == 409 and duplicate.json()["error"]["field"] == "task_id"
    unknown = await http.post(workflow_url("w", "tasks"), json=task("b", "ghost"))
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "dependencies"
    assert (await http.post(workflow_url("w", "cancel"), json={"reason": "enough"})).status_code == 202
    for path, payload in [("cancel", None), ("tasks", task("c")), ("tasks/a/cancel", None)]:
        late = await http.post(workflow_url("w", path), json=payload)
        assert late.status_code == 409 and "already cancelled" in late.json()["error"]["message"]


async def test_status_shows_each_task_progress_critical_path_and_estimated_finish(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    gate = Gate()
    agent = Agent("worker", gate, capabilities=["x"], capacity=2)
    tasks = [
        task("plan", estimated_duration_minutes=2),
        task("code", "plan", estimated_duration_minutes=10),
        task("docs", "plan", estimated_duration_minutes=1),
        task("ship", "code", "docs", estimated_duration_minutes=1),
    ]
    async with hive(settings) as h:
        await agent.start(bus)
        reply = await h.http.post(EXECUTE, json={"workflow_id": "w", "name": "release", "tasks": tasks})
        assert reply.json()["critical_path"] == ["plan", "code", "ship"]
        assert reply.json()["estimated_duration_minutes"] == 13.0
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
        now = time.time()
        status = (await h.http.get(workflow_url("w"), params={"after_seq": max(event_log.seqs)})).json()
        gate.open.set()
        await event_log.wait_for(finished("w"))
        done = (await h.http.get(workflow_url("w"), params={"after_seq": max(event_log.seqs)})).json()
        listed = (await h.http.get("/api/v1/orchestration/workflows")).json()["items"]
        assert [(w["workflow_id"], w["status"], w["percent"]) for w in listed] == [("w", "completed", 100.0)]
        running_now = await h.http.get("/api/v1/orchestration/workflows", params={"status": "running"})
        assert running_now.json()["items"] == []
        bad = await h.http.get("/api/v1/orchestration/workflows", params={"status": "asleep"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "status"
        assert 'hive_workflows{status="completed"} 1.0' in (await h.http.get("/metrics")).text
        h.gateway.view.state.workflows.workflows.pop("w")  # forgotten: answered from the query model
        folded = (await h.http.get(workflow_url("w"))).json()
        await agent.stop()
    states = {t["task_id"]: t for t in status["tasks"]}
    assert status["status"] == "running" and status["name"] == "release"
    assert states["plan"]["status"] == "running" and states["plan"]["agent_id"] == "worker"
    assert states["plan"]["hive_task_id"] == step_task_id("w", "plan")
    assert [states[n]["status"] for n in ("code", "docs", "ship")] == ["pending"] * 3
    assert [states[n]["on_critical_path"] for n in ("plan", "code", "docs", "ship")] == [
        True,
        True,
        False,
        True,
    ]
    assert status["progress"] == {
        "total": 4,
        "completed": 0,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
        "in_flight": 1,
        "pending": 3,
        "percent": 0.0,
    }
    assert 12.0 < status["estimated_remaining_minutes"] <= 13.0
    assert now + 12 * 60 < status["estimated_finish_ts"] <= time.time() + 13 * 60
    assert done["status"] == "completed" and done["progress"]["percent"] == 100.0
    assert done["estimated_finish_ts"] == done["finished_ts"]
    assert folded["status"] == "completed"
    assert {t["task_id"]: t["status"] for t in folded["tasks"]} == dict.fromkeys(
        ("plan", "code", "docs", "ship"), "completed"
    )


async def test_tasks_added_while_running_run_too(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    gate = Gate()
    agent = Agent("worker", gate, capabilities=["x"], capacity=3)
    async with hive(settings) as h:
        await agent.start(bus)
        await h.http.post(EXECUTE, json={"workflow_id": "w", "tasks": [task("a"), task("b", "a")]})
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
        added = await h.http.post(workflow_url("w", "tasks"), json=task("late", "a", name="added later"))
        assert added.status_code == 202 and added.json()["task_id"] == "late"
        gate.open.set()
        await event_log.wait_for(finished("w"))
        await agent.stop()
    completed = outcome(event_log, "w")
    assert isinstance(completed, WorkflowCompleted)
    assert completed.outcomes == {"a": "completed", "b": "completed", "late": "completed"}
    late = next(e for e in event_log.of_type(TaskSubmitted) if e.step_id == "late")
    assert late.name == "added later" and list(late.payload["upstream"]) == ["a"]


async def test_cancelling_a_running_task_tells_its_agent_and_skips_what_needed_it(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    gate = Gate()
    agent = Agent("worker", gate, capabilities=["x"], capacity=2)
    tasks = [task("long"), task("after", "long"), task("anyway", "long", condition="always")]
    async with hive(settings) as h:
        await agent.start(bus)
        await h.http.post(EXECUTE, json={"workflow_id": "w", "tasks": tasks})
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
        reply = await h.http.post(workflow_url("w", "tasks", "long", "cancel"), json={"reason": "too slow"})
        assert reply.status_code == 202, reply.text
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCancelRequested) for e in evs))
        gate.open.set()  # "anyway" runs after the cancelled task
        await event_log.wait_for(finished("w"))
        status = (await h.http.get(workflow_url("w"), params={"after_seq": max(event_log.seqs)})).json()
        await agent.stop()
    long_task = step_task_id("w", "long")
    assert [e.task_id for e in event_log.of_type(TaskCancelled)] == [long_task]
    notice = event_log.of_type(TaskCancelRequested)
    assert [(n.agent_id, n.task_id) for n in notice] == [("worker", long_task)]
    states = {t["task_id"]: (t["status"], t["reason"]) for t in status["tasks"]}
    assert states["long"] == ("cancelled", "too slow")
    assert states["after"] == ("skipped", "dependency 'long' was cancelled")
    assert states["anyway"][0] == "completed"
    assert status["status"] == "completed", "a cancelled task is a decision, not a failure"


async def test_cancelling_a_workflow_cancels_in_flight_tasks_tells_agents_and_starts_nothing_more(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    gate = Gate()
    agents = [Agent(f"worker-{i}", gate, capabilities=["x"], capacity=1) for i in range(2)]
    tasks = [task("a"), task("b"), task("c", "a", "b"), task("d", "c")]
    async with hive(settings) as h:
        for agent in agents:
            await agent.start(bus)
        await h.http.post(EXECUTE, json={"workflow_id": "w", "tasks": tasks})
        await event_log.wait_for(lambda evs: sum(isinstance(e, TaskStarted) for e in evs) == 2)
        reply = await h.http.post(workflow_url("w", "cancel"), json={"reason": "release pulled"})
        assert reply.status_code == 202 and reply.json()["status"] == "cancelled"
        await event_log.wait_for(lambda evs: sum(isinstance(e, TaskCancelled) for e in evs) == 2)
        gate.open.set()
        status = (await h.http.get(workflow_url("w"), params={"after_seq": max(event_log.seqs)})).json()
        for agent in agents:
            await agent.stop()
    assert isinstance(outcome(event_log, "w"), WorkflowCancelled)
    cancelled = {step_task_id("w", "a"), step_task_id("w", "b")}
    assert {e.task_id for e in event_log.of_type(TaskCancelled)} == cancelled
    notices = event_log.of_type(TaskCancelRequested)
    assert {n.task_id for n in notices} == cancelled
    assert {n.agent_id for n in notices} == {"worker-0", "worker-1"}
    assert {e.step_id for e in event_log.of_type(WorkflowStepDispatched)} == {"a", "b"}
    assert status["status"] == "cancelled" and status["reason"] == "release pulled"
    assert {t["status"] for t in status["tasks"]} == {"cancelled"}


async def test_modes_and_goals_shape_what_is_submitted_and_when(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    agents = [Agent(f"worker-{i}", quick, capabilities=["x"], capacity=4) for i in range(2)]
    fan = [task("root", estimated_duration_minutes=1)] + [
        task(f"leaf-{i}", "root", estimated_duration_minutes=5 if i == 0 else 1) for i in range(4)
    ]
    async with hive(settings) as h:
        for agent in agents:
            await agent.start(bus)
        for workflow_id, mode, goal in [
            ("seq", "sequential", "balance_all"),
            ("fast", "parallel", "minimize_time"),
            ("good", "adaptive", "maximize_quality"),
        ]:
            body = {
                "workflow_id": workflow_id,
                "execution_mode": mode,
                "optimization_goal": goal,
                "tasks": fan,
            }
            assert (await h.http.post(EXECUTE, json=body)).status_code == 202
        await event_log.wait_for(finished("seq", "fast", "good"), timeout=20)
        for agent in agents:
            await agent.stop()
    submitted = {(e.workflow_id, e.step_id): e for e in event_log.of_type(TaskSubmitted)}
    assert submitted[("fast", "leaf-0")].priority == "high", "critical step one level up"
    assert submitted[("fast", "leaf-1")].priority == "normal"
    assert {submitted[("fast", s)].routing_strategy for s in ("root", "leaf-1")} == {"load_balanced"}
    assert submitted[("good", "root")].routing_strategy == "performance_optimized"
    assert submitted[("seq", "root")].routing_strategy is None
    in_flight: set[str] = set()
    peak = 0
    for event in event_log.events:
        if isinstance(event, TaskSubmitted) and event.workflow_id == "seq":
            in_flight.add(event.task_id)
        elif isinstance(event, TaskCompleted):
            in_flight.discard(event.task_id)
        peak = max(peak, len(in_flight))
    assert peak == 1, "sequential: one task of the workflow in flight at a time"
