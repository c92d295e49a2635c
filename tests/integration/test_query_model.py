"""The gateway's query model over a real nats-server, real SQLite files and real HTTP: every task of
any age answers as a fresh fold of the whole log says, pages list each task once, a restarted
gateway resumes its file, old files are rebuilt, and what retention dropped answers 404 with why."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from services.gateway import service as gateway_service
from services.gateway.query import model as query_model
from services.gateway.query.files import QueryFileInUse
from services.gateway.query.schema import SCHEMA_ID
from services.gateway.service import GatewayService
from services.gateway.tasks import task_out
from shared.bus import EventBus
from shared.domain.fleet import TERMINAL, FleetState, TaskView, apply_fleet
from shared.events import AgentRegistered, TaskAssigned, TaskStarted, TaskSubmitted, WorkflowSubmitted
from shared.recorded import Recorded
from shared.settings import Settings
from tests.conftest import running
from tests.varied_history import publish, varied_events

ASSIGN = "/api/v1/orchestration/task/assign"
OLD_WINDOW = 2_200
"""Finished tasks the gateway's fleet projection keeps in memory (2,000, dropped by tenths)."""


async def fresh_fold(bus: EventBus) -> FleetState:
    """The whole log folded with nothing forgotten: what every answer must equal."""
    fleet = FleetState(max_finished=10**9)
    async for item in bus.read():
        if isinstance(item, Recorded):
            apply_fleet(fleet, item)
    return fleet


def as_json(task: TaskView) -> Any:
    return msgspec.json.decode(msgspec.json.encode(task_out(task)))


@asynccontextmanager
async def gateway_at(
    settings: Settings, **overrides: Any
) -> AsyncIterator[tuple[GatewayService, httpx.AsyncClient]]:
    async with (
        running(GatewayService, settings, **overrides) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=30) as http,
    ):
        await asyncio.wait_for(gateway.query.caught_up.wait(), 60)
        yield gateway, http


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("tasks", "attempts", "agents", "workflows")
        }


async def test_every_task_older_than_the_old_in_memory_window_reads_back_as_a_fresh_fold_of_the_whole_log(
    settings: Settings, bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query_model, "CATCH_UP_FLUSH_EVENTS", 700)  # a task's events span many writes
    monkeypatch.setattr(query_model, "FLUSH_EVENTS", 300)
    events = varied_events(2_600, seed=11)
    half = len(events) // 2
    await publish(bus, events[:half])  # read by the model's catch-up
    async with gateway_at(settings) as (gateway, http):
        last = await publish(bus, events[half:])  # followed as the gateway applies them
        fleet = await fresh_fold(bus)
        ended = [task for task in fleet.tasks.values() if task.terminal]
        assert len(ended) > OLD_WINDOW
        assert len(gateway.view.state.fleet.tasks) < len(fleet.tasks), "the old window forgot some"
        for task in fleet.tasks.values():
            reply = await http.get(f"/api/v1/tasks/{task.task_id}", params={"after_seq": last})
            assert reply.status_code == 200, reply.text
            assert reply.json() == as_json(task), task.task_id
    sample = next(task for task in ended if len(task.assignments) == 2)
    assert next(a.agent_id for a in sample.assignments) != sample.agent_id  # moved or retried elsewhere


async def test_pages_list_every_task_exactly_once_while_new_tasks_arrive(
    settings: Settings, bus: EventBus
) -> None:
    last = await publish(bus, varied_events(230, seed=2))
    async with gateway_at(settings) as (_gateway, http):
        expected = sorted((t.submitted_seq, t.task_id) for t in (await fresh_fold(bus)).tasks.values())
        seen: list[tuple[int, str]] = []
        params: dict[str, Any] = {"limit": 17, "after_seq": last}
        arrived = 0
        while True:
            page = (await http.get("/api/v1/tasks", params=params)).json()
            seen += [(item["submitted_seq"], item["task_id"]) for item in page["items"]]
            for _ in range(3):  # newer tasks arrive between the pages
                arrived += 1
                late = await bus.append(
                    TaskSubmitted(task_id=f"late-{arrived}", task_type="review"), expected=0
                )
            if page["next_cursor"] is None:
                break
            params = {"limit": 17, "cursor": page["next_cursor"]}
        assert seen == sorted(expected, reverse=True)
        # Stored by another writer than this gateway: a read sees it at once when it names its sequence.
        newest = (await http.get("/api/v1/tasks", params={"limit": 1, "after_seq": late.seq})).json()[
            "items"
        ][0]
        assert newest["task_id"] == f"late-{arrived}"


async def test_a_read_through_a_gateway_reading_in_bursts_sees_that_gateways_own_writes_at_once(
    settings: Settings,
) -> None:
    # The longest linger, and a submission that does not wait for its routing: nothing but the
    # read-your-writes wait makes the gateway read what it just stored before it answers.
    async with gateway_at(settings, read_linger_s=1.0, assign_wait_ms=0) as (gateway, http):
        assert gateway.view.linger_s == 1.0
        for n in range(3):
            submitted = await http.post(ASSIGN, json={"task_id": f"own-{n}", "task_type": "x"})
            assert submitted.status_code == 202, submitted.text  # stored, not routed yet: no router runs
            listed = (await http.get("/api/v1/tasks", params={"limit": 1})).json()["items"]
            assert [item["task_id"] for item in listed] == [f"own-{n}"]
            cancelled = await http.post(f"/api/v1/tasks/own-{n}/cancel", json={"reason": "mine"})
            assert cancelled.status_code == 200, cancelled.text
            assert (await http.get(f"/api/v1/tasks/own-{n}")).json()["status"] == "cancelled"
            listed = (await http.get("/api/v1/tasks", params={"limit": 1})).json()["items"]
            assert listed[0]["status"] == "cancelled"


async def test_a_read_after_an_own_write_the_gateway_cannot_apply_answers_503_not_a_stale_answer(
    settings: Settings,
) -> None:
    async with gateway_at(settings, assign_wait_ms=0) as (gateway, http):
        await gateway.view.stop(snapshot=False)  # this gateway reads no further
        gateway.core.read_wait_s = 0.2
        submitted = await http.post(ASSIGN, json={"task_id": "unseen", "task_type": "x"})
        assert submitted.status_code == 202, submitted.text  # a write does not wait for the view
        listed = await http.get("/api/v1/tasks", params={"limit": 1})
        assert listed.status_code == 503 and listed.json()["error"]["code"] == "unavailable", listed.text
        assert (await http.get("/api/v1/agents")).status_code == 503
        assert (await http.get("/api/v1/schema/openapi.json")).status_code == 200  # public: not held
        again = await http.post(ASSIGN, json={"task_id": "unseen-2", "task_type": "x"})
        assert again.status_code == 202, again.text


async def test_a_restarted_gateway_resumes_its_file_and_equals_a_fresh_rebuild(
    settings: Settings, bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query_model, "FLUSH_EVENTS", 50)
    events = varied_events(400, seed=4)
    cut = len(events) // 2
    await publish(bus, events[: cut // 2])
    async with gateway_at(settings, instance="gw-a") as (gateway, _http):
        middle = await publish(bus, events[cut // 2 : cut])
        await gateway.query.flushed_to(middle, 10)
        assert gateway.query.state.fleet.tasks, "tasks in flight at the cut are restored from rows"
        first_file = Path(gateway.query.path)
        await publish(bus, events[cut : cut + 40])
        gateway.query._closed = True  # as if killed: whatever was not written is lost
    resumed_from = int(dict(sqlite3.connect(first_file).execute("SELECT key, value FROM meta"))["seq"])
    assert resumed_from > 0
    last = await publish(bus, events[cut + 40 :])
    async with gateway_at(settings, instance="gw-a") as (again, _http):
        assert again.query.path == str(first_file)
        assert again.query.catch_up_events == last - resumed_from
        await again.query.flushed_to(last, 10)
    async with gateway_at(settings, instance="gw-b") as (fresh, _http):
        assert fresh.query.catch_up_events == last
        other_file = Path(fresh.query.path)
    resumed, rebuilt = dump(first_file), dump(other_file)
    for table in resumed:
        assert set(resumed[table]) ^ set(rebuilt[table]) == set(), table
    assert len(dump(first_file)["tasks"]) == 400 + 4  # and the workflows' four steps


async def test_a_model_closed_while_a_paced_write_is_under_way_stores_no_row_newer_than_its_sequence(
    settings: Settings, bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model closes (a kill, as far as the file is concerned) between two slices of a paced
    write while the projection applies on: the write is rolled back, since the slices left would be
    encoded from state beyond the sequence it would store, and a resume from the file equals a fresh
    rebuild (each event once)."""
    for every in ("FLUSH_EVENTS", "FLUSH_INTERVAL_S", "UNREAD_FLUSH_INTERVAL_S"):
        monkeypatch.setattr(query_model, every, 10**6)  # the test starts the one write itself
    events = varied_events(300, seed=9)
    first, second, third = events[:100], events[100:200], events[200:]
    await publish(bus, first)
    async with gateway_at(settings, instance="gw-a") as (gateway, _http):
        model = gateway.query
        noted = await publish(bus, second)
        await gateway.view.wait_for(noted)
        assert model.seq == noted and model.flushed < noted
        model.slice_rows = 5
        paced = model._between_slices
        closed_midway = asyncio.Event()

        async def close_between_slices() -> None:
            if not model._closed:
                model._closed = True  # killed, as far as the file is concerned
                await gateway.view.wait_for(await publish(bus, third))  # applied on, noted by no one
                closed_midway.set()
            await paced()

        model._between_slices = close_between_slices  # type: ignore[method-assign]
        model._kick.set()
        await asyncio.wait_for(closed_midway.wait(), 10)
        async with model._flush_lock:  # the write ended, stored or rolled back
            path = Path(model.path)
    stored = int(dict(sqlite3.connect(path).execute("SELECT key, value FROM meta"))["seq"])
    assert stored < noted, "the write under way was rolled back"
    async with gateway_at(settings, instance="gw-a") as (again, _http):
        last = again.view.seq
        await again.query.flushed_to(last, 10)
    async with gateway_at(settings, instance="gw-b") as (fresh, _http):
        await fresh.query.flushed_to(last, 10)
        rebuilt_path = Path(fresh.query.path)
    resumed, rebuilt = dump(path), dump(rebuilt_path)
    for table in resumed:
        assert set(resumed[table]) ^ set(rebuilt[table]) == set(), table


async def test_a_model_that_stopped_applying_never_writes_a_sequence_beyond_what_it_applied(
    settings: Settings, bus: EventBus
) -> None:
    events = varied_events(60, seed=5)
    # Each event read as it is stored: the projection runs ahead of the model here by design, not timing.
    async with gateway_at(settings, read_linger_s=0.0) as (gateway, _http):
        applied = await publish(bus, events[:30])
        await gateway.query.flushed_to(applied, 10)
        gateway.query._closed = True  # as if killed: it applies nothing more
        last = await publish(bus, events[30:])
        await gateway.view.wait_for(last)
        await gateway.query._flush()  # a timed write that comes before the end
        file_seq = int((await gateway.query.store.meta())["seq"])
        assert file_seq == gateway.query.seq == applied, "the file must not claim events it never applied"


async def test_a_file_of_an_old_schema_or_unreadable_is_rebuilt_from_the_log(
    settings: Settings, bus: EventBus
) -> None:
    last = await publish(bus, varied_events(50, seed=9))
    folder = Path(settings.hive_home) / "query"
    folder.mkdir(parents=True)
    with sqlite3.connect(folder / "old.sqlite") as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value)")
        db.execute("INSERT INTO meta VALUES ('schema', 'query-r0-0000000000000000-00000000'), ('seq', 99999)")
        db.execute("CREATE TABLE tasks (task_id TEXT)")
    (folder / "broken.sqlite").write_bytes(b"this is not a database" * 100)
    for instance in ("old", "broken"):
        async with gateway_at(settings, instance=instance) as (gateway, http):
            assert gateway.query.catch_up_events == last
            listed = (await http.get("/api/v1/tasks", params={"limit": 500})).json()["items"]
            assert len(listed) == 50 + 4
        meta = dict(sqlite3.connect(folder / f"{instance}.sqlite").execute("SELECT key, value FROM meta"))
        assert meta["schema"] == SCHEMA_ID and meta["seq"] == last


async def test_the_files_are_private_and_two_gateways_on_one_machine_never_share_one(
    settings: Settings, bus: EventBus
) -> None:
    last = await publish(bus, varied_events(80, seed=6))
    async with gateway_at(settings) as (one, http_one), gateway_at(settings) as (two, http_two):
        assert {Path(one.query.path).name, Path(two.query.path).name} == {
            "gateway-0.sqlite",
            "gateway-1.sqlite",
        }
        folder = Path(one.query.path).parent
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(one.query.path).st_mode) == 0o600
        for path in ("/api/v1/tasks", "/api/v1/orchestration/workflows"):
            params = {"after_seq": last, "limit": 500}
            assert (await http_one.get(path, params=params)).json() == (
                await http_two.get(path, params=params)
            ).json()
        one_task = (await http_one.get("/api/v1/tasks/task-00003", params={"after_seq": last})).json()
        assert one_task == (await http_two.get("/api/v1/tasks/task-00003", params={"after_seq": last})).json()
        with pytest.raises(QueryFileInUse):
            await query_model.QueryModel(bus, one.view, home=settings.hive_home, instance="gateway-0").open()


async def test_work_ended_before_the_retention_answers_404_saying_why(
    settings: Settings, bus: EventBus
) -> None:
    old = varied_events(30, seed=8, start_ts=time.time() - 7_200)
    recent = [e for e in varied_events(30, seed=8, start_ts=time.time()) if isinstance(e, TaskSubmitted)]
    recent_ids = [msgspec.structs.replace(e, task_id=f"new-{e.task_id}") for e in recent]
    await publish(bus, [*old, *recent_ids])
    fleet = await fresh_fold(bus)
    ended_old = [t.task_id for t in fleet.tasks.values() if t.terminal and not t.task_id.startswith("new-")]
    live_old = [
        t.task_id for t in fleet.tasks.values() if t.status not in TERMINAL and t.task_id.startswith("task")
    ]
    async with gateway_at(settings, query_retention_s=3_600.0) as (gateway, http):
        await gateway.query.purge(time.time())
        gone = await http.get(f"/api/v1/tasks/{ended_old[0]}")
        assert gone.status_code == 404, gone.text
        error = gone.json()["error"]
        assert error["details"][0]["reason"] == "retention" and error["details"][0]["in_log"] is True
        assert "QUERY_RETENTION_S=3600" in error["message"]
        assert f"/api/v1/events?aggregate=task&id={ended_old[0]}" in error["message"]
        for task_id in [*live_old, "new-task-00001"]:
            assert (await http.get(f"/api/v1/tasks/{task_id}")).status_code == 200
        unknown = (await http.get("/api/v1/tasks/never-was")).json()["error"]
        assert unknown["details"][0]["reason"] == "unknown_or_forgotten"
        listed = {
            item["task_id"]
            for item in (await http.get("/api/v1/tasks", params={"limit": 500})).json()["items"]
        }
        assert not listed & set(ended_old) and set(live_old) <= listed
        workflows = (await http.get("/api/v1/orchestration/workflows")).json()["items"]
        assert workflows == []
        assert (await http.get("/api/v1/orchestration/workflow/wf-one")).status_code == 404


async def test_filters_narrow_the_list_and_bad_ones_are_refused(settings: Settings, bus: EventBus) -> None:
    last = await publish(bus, varied_events(200, seed=12))
    tasks = list((await fresh_fold(bus)).tasks.values())
    async with gateway_at(settings) as (_gateway, http):

        async def listed(**params: Any) -> list[str]:
            reply = await http.get("/api/v1/tasks", params={"limit": 500, "after_seq": last, **params})
            assert reply.status_code == 200, reply.text
            return [item["task_id"] for item in reply.json()["items"]]

        def newest_first(chosen: list[TaskView]) -> list[str]:
            return [t.task_id for t in sorted(chosen, key=lambda t: -t.submitted_seq)]

        middle_ts = sorted(t.submitted_ts for t in tasks)[100]
        cases: list[tuple[dict[str, Any], list[TaskView]]] = [
            ({"status": "completed"}, [t for t in tasks if t.status == "completed"]),
            ({"task_type": "review"}, [t for t in tasks if t.spec.task_type == "review"]),
            ({"agent_id": "agent-2"}, [t for t in tasks if t.agent_id == "agent-2"]),
            ({"workflow_id": "wf-one"}, [t for t in tasks if t.spec.workflow_id == "wf-one"]),
            ({"priority": "critical"}, [t for t in tasks if t.spec.priority == "critical"]),
            ({"submitted_after": middle_ts}, [t for t in tasks if t.submitted_ts >= middle_ts]),
            ({"submitted_before": middle_ts}, [t for t in tasks if t.submitted_ts < middle_ts]),
            (
                {"status": "completed", "priority": "high", "task_type": "analysis"},
                [
                    t
                    for t in tasks
                    if (t.status, t.spec.priority, t.spec.task_type) == ("completed", "high", "analysis")
                ],
            ),
        ]
        for params, chosen in cases:
            assert chosen, params
            assert await listed(**params) == newest_first(chosen), params

        for params, field, code in [
            ({"state": "completed"}, "state", "unknown_filter"),
            ({"status": "asleep"}, "status", "invalid_field"),
            ({"priority": "urgent"}, "priority", "invalid_field"),
            ({"limit": 501}, "limit", "invalid_field"),
            ({"limit": 0}, "limit", "invalid_field"),
            ({"cursor": "not-a-cursor"}, "cursor", "invalid_field"),
            ({"submitted_after": "yesterday"}, "submitted_after", "invalid_field"),
        ]:
            reply = await http.get("/api/v1/tasks", params=params)
            assert reply.status_code == 400, (params, reply.text)
            assert reply.json()["error"]["field"] == field and reply.json()["error"]["code"] == code, params

        workflows = (await http.get("/api/v1/orchestration/workflows", params={"status": "completed"})).json()
        assert [w["workflow_id"] for w in workflows["items"]] == ["wf-two", "wf-one"]
        assert workflows["items"][0]["percent"] == 100.0 and workflows["next_cursor"] is None
        first = (await http.get("/api/v1/orchestration/workflows", params={"limit": 1})).json()
        rest = (
            await http.get("/api/v1/orchestration/workflows", params={"cursor": first["next_cursor"]})
        ).json()
        assert [w["workflow_id"] for w in first["items"] + rest["items"]] == ["wf-two", "wf-one"]
        assert (await http.get("/api/v1/orchestration/workflows", params={"limit": 501})).status_code == 400
        assert (await http.get("/api/v1/orchestration/workflows", params={"owner": "me"})).status_code == 400

        agents = (
            await http.get("/api/v1/agents", params={"status": "active", "capability": "review"})
        ).json()
        assert [a["agent_id"] for a in agents] == [f"agent-{n}" for n in range(6)]
        assert (await http.get("/api/v1/agents", params={"capability": "cooking"})).json() == []
        assert (await http.get("/api/v1/agents", params={"kind": "x"})).status_code == 400


async def test_the_event_timeline_pages_through_one_task_or_one_type(
    settings: Settings, bus: EventBus
) -> None:
    events = varied_events(40, seed=13)
    await publish(bus, events)
    story = [
        r.seq
        async for r in bus.read()
        if isinstance(r, Recorded) and getattr(r.event, "task_id", None) == "task-00004"
    ]
    async with gateway_at(settings) as (_gateway, http):
        timeline = (await http.get("/api/v1/events", params={"aggregate": "task", "id": "task-00004"})).json()
        assert [item["seq"] for item in timeline["items"]] == story  # its assignments included
        assert "agent.task_assigned" in {item["type"] for item in timeline["items"]}
        assert timeline["items"][0]["type"] == "task.submitted" and timeline["next_cursor"] is None
        assert timeline["items"][0]["event"]["task_id"] == "task-00004"
        assigned = (
            await http.get(
                "/api/v1/events",
                params={"aggregate": "task", "id": "task-00004", "type": "agent.task_assigned"},
            )
        ).json()["items"]
        assert assigned and {item["type"] for item in assigned} == {"agent.task_assigned"}

        seen: list[int] = []
        params: dict[str, Any] = {"type": "task.submitted", "limit": 7}
        while True:
            page = (await http.get("/api/v1/events", params=params)).json()
            seen += [item["seq"] for item in page["items"]]
            assert {item["type"] for item in page["items"]} <= {"task.submitted"}
            if page["next_cursor"] is None:
                break
            params = {"type": "task.submitted", "limit": 7, "cursor": page["next_cursor"]}
        submitted = [
            r.seq async for r in bus.read() if isinstance(r, Recorded) and isinstance(r.event, TaskSubmitted)
        ]
        assert seen == submitted

        after = (await http.get("/api/v1/events", params={"after_seq": seen[-1], "limit": 500})).json()
        assert all(item["seq"] > seen[-1] for item in after["items"])
        for params, field in [
            ({"id": "task-00004"}, "id"),
            ({"aggregate": "task", "type": "registered"}, "type"),
            ({"type": "completed"}, "type"),
            ({"type": "task.nothing"}, "type"),
            ({"aggregate": "planet"}, "aggregate"),
            ({"limit": 501}, "limit"),
            ({"after_seq": 3, "cursor": timeline.get("next_cursor") or "x"}, "cursor"),
            ({"since": "10m"}, "since"),
        ]:
            reply = await http.get("/api/v1/events", params=params)
            assert reply.status_code == 400 and reply.json()["error"]["field"] == field, (params, reply.text)


async def test_the_gateway_keeps_a_bounded_number_of_versions_and_still_cancels_old_live_tasks(
    settings: Settings, bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_service, "VERSIONS_KEPT", 100)
    last = await publish(bus, varied_events(300, seed=14))
    fleet = await fresh_fold(bus)
    oldest_running = min(
        (t for t in fleet.tasks.values() if t.status == "running"), key=lambda t: t.submitted_seq
    )
    async with gateway_at(settings) as (gateway, http):
        await gateway.view.wait_for(last)
        assert len(gateway.view.versions) <= 110
        assert gateway.view.version("task", oldest_running.task_id) is None, "pruned: asked of the server"
        reply = await http.post(f"/api/v1/tasks/{oldest_running.task_id}/cancel", json={"reason": "old"})
        assert reply.status_code == 200, reply.text
        ended = next(t for t in fleet.tasks.values() if t.status == "completed")
        again = await http.post(f"/api/v1/tasks/{ended.task_id}/cancel")
        assert again.status_code == 409 and "already completed" in again.json()["error"]["message"]
        done = await http.get(
            f"/api/v1/tasks/{oldest_running.task_id}", params={"after_seq": reply.json()["seq"]}
        )
        assert done.json()["status"] == "cancelled"


async def test_neither_a_read_nor_a_command_answers_404_from_a_view_behind_the_log(
    settings: Settings, bus: EventBus
) -> None:
    async with gateway_at(settings) as (gateway, http):
        await bus.append(TaskSubmitted(task_id="early", task_type="x"), expected=0)
        early = await http.post("/api/v1/tasks/early/cancel", json={"reason": "seen"})
        assert early.status_code == 200, early.text
        await gateway.view.wait_for(gateway.bus.last_appended)  # it read its own writes (the cancel)...
        await gateway.view.stop(snapshot=False)  # ...and no further
        gateway.core.read_wait_s = 0.2
        await bus.append(TaskSubmitted(task_id="late", task_type="x"), expected=0)
        behind = await http.post("/api/v1/tasks/late/cancel", json={"reason": "not seen yet"})
        assert behind.status_code == 503, behind.text  # not a 404: the task exists, unseen yet
        read = await http.get("/api/v1/tasks/late")
        assert read.status_code == 503, read.text
        await bus.append(WorkflowSubmitted(workflow_id="w-late", steps=[]), expected=0)
        assert (await http.get("/api/v1/orchestration/workflow/w-late")).status_code == 503
        await bus.append(AgentRegistered(agent_id="a-late", capabilities={"x": 1.0}), expected=None)
        failure = {"failure_type": "agent_error", "severity": "low", "agent_id": "a-late"}
        reported = await http.post("/api/v1/orchestration/failure/handle", json=failure)
        assert reported.status_code == 503, reported.text
        reset = await http.post("/api/v1/orchestration/circuit-breakers/a-late/reset", json={})
        assert reset.status_code == 503, reset.text
        workflow = await http.post(
            "/api/v1/orchestration/workflow/w-never/tasks", json={"task_id": "b", "task_type": "x"}
        )
        assert workflow.status_code == 404  # nothing of w-never in the log: a true 404 at once
        assert (await http.get("/api/v1/tasks/never")).status_code == 404


async def test_assignments_stored_before_they_named_their_task_still_count(
    settings: Settings, bus: EventBus
) -> None:
    """An old log: version 1 assignments on the five-token subject are applied as they were."""
    await bus.append(AgentRegistered(agent_id="old-agent", capabilities={"x": 1.0}), expected=None)
    await bus.append(TaskSubmitted(task_id="old-task", task_type="x"), expected=0)
    legacy = msgspec.json.decode(
        msgspec.json.encode(TaskAssigned(agent_id="old-agent", task_id="old-task", attempt=1, score=0.7))
    )
    legacy["v"] = 1
    await bus.js.publish("hive.evt.agent.old-agent.task_assigned", msgspec.json.encode(legacy))
    last = await bus.append(TaskStarted(task_id="old-task", agent_id="old-agent", attempt=1), expected=None)
    async with gateway_at(settings) as (_gateway, http):
        task = (await http.get("/api/v1/tasks/old-task", params={"after_seq": last.seq})).json()
        assert task["status"] == "running" and task["assignments"][0]["agent_id"] == "old-agent"
        agent_story = (
            await http.get("/api/v1/events", params={"aggregate": "agent", "id": "old-agent"})
        ).json()
        assert "agent.task_assigned" in [item["type"] for item in agent_story["items"]]
