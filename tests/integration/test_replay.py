"""`hive replay` against a real log: timeline, time travel, and re-running routing decisions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import msgspec

from services.router.rerun import UNLISTED_RIVALS, UNNAMED_INSTANCE, explain_task
from services.router.service import RouterService
from services.router.ties import own_rank
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.events import AgentRegistered, TaskAssigned, TaskCompleted, TaskStarted, TaskSubmitted
from shared.replay import TimelineFilter, seq_at, timeline
from shared.settings import Settings
from tests.conftest import EventLog, running


async def quick(context: TaskContext) -> str:
    return "ok"


async def busy_log(settings: Settings, bus: EventBus, event_log: EventLog) -> None:
    agents = [Agent(f"a{i}", quick, capabilities=["x"], capacity=1) for i in range(3)]
    async with running(RouterService, settings):
        for agent in agents:
            await agent.start(bus)
        for index in range(6):
            await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="x"), expected=0)
        await event_log.wait_for(lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) == 6)
        for agent in agents:
            await agent.stop()


def hive(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NATS_URL=settings.nats_url)
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "replay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_timeline_of_one_task_is_its_whole_story_in_order_its_assignment_included(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    await busy_log(settings, bus, event_log)
    read = [r async for r in timeline(bus, TimelineFilter(aggregate="task", aggregate_id="t2"))]
    story = [r.event.type_name() for r in read]
    # A quick task appends no task.started (its completion implies it).
    assert story == ["task.submitted", "agent.task_assigned", "task.completed"]
    assert [r.seq for r in read] == sorted(r.seq for r in read)
    held_by = read[1].event.agent_id  # type: ignore[union-attr]
    assert read[1].subject == f"hive.evt.agent.{held_by}.task_assigned"
    completed = [
        r async for r in timeline(bus, TimelineFilter(aggregate="task", types=frozenset({"completed"})))
    ]
    assert sorted(r.event.task_id for r in completed) == [f"t{i}" for i in range(6)]
    result = await asyncio.to_thread(hive, settings, "--aggregate", "task", "--id", "t2", "--format", "json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"]["type"] for line in lines] == story
    assert all(
        line["subject"].startswith("hive.evt.task.t2.") or line["event"]["task_id"] == "t2" for line in lines
    )


async def test_the_fleet_can_be_seen_as_it_was_at_any_sequence(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    await busy_log(settings, bus, event_log)
    first_assignment = event_log.seqs[
        next(i for i, e in enumerate(event_log.events) if isinstance(e, TaskAssigned))
    ]
    result = await asyncio.to_thread(hive, settings, "--at", str(first_assignment), "--format", "json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["seq"] == first_assignment
    loads = {agent_id: len(agent["in_flight"]) for agent_id, agent in body["state"]["agents"].items()}
    assert sum(loads.values()) == 1
    now = await asyncio.to_thread(hive, settings, "--at", "0s")
    assert now.returncode == 0 and "queue: 0 waiting" in now.stdout
    assert await seq_at(bus, "1") == 1


async def test_explain_re_runs_each_routing_decision_and_reproduces_it(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    await busy_log(settings, bus, event_log)
    for index in range(6):
        explanations = await explain_task(bus, f"t{index}")
        assert len(explanations) == 1
        assert explanations[0].reproduced, explanations[0]
    result = await asyncio.to_thread(hive, settings, "explain", "t4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reproduces the recorded choice" in result.stdout
    deciders = {e.decided_by for e in event_log.events if isinstance(e, TaskAssigned)}
    assert len(deciders) == 1 and "" not in deciders, "every assignment names the instance that decided"
    never = await asyncio.to_thread(hive, settings, "explain", "nope")
    assert never.returncode == 1 and "never assigned" in never.stdout


async def test_a_re_run_decides_with_the_routing_confidence_the_router_recorded(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    confident = msgspec.structs.replace(settings, routing_confidence=0.99)
    await busy_log(confident, bus, event_log)
    recorded = [
        e.breakdown["tie_confidence"]
        for e in event_log.events
        if isinstance(e, TaskAssigned) and "tie_confidence" in e.breakdown
    ]
    assert recorded and set(recorded) == {0.99}, "decisions with a choice record the confidence they used"
    for index in range(6):
        explanations = await explain_task(bus, f"t{index}")
        assert explanations[0].reproduced, explanations[0]
        assert explanations[0].breakdown.get("tie_confidence", 0.99) == 0.99


async def test_a_bad_time_or_filter_is_refused_clearly(settings: Settings, bus: EventBus) -> None:
    bad_time = await asyncio.to_thread(hive, settings, "--since", "yesterday-ish")
    assert bad_time.returncode == 2 and "neither an ISO time" in bad_time.stderr
    no_aggregate = await asyncio.to_thread(hive, settings, "--id", "t1")
    assert no_aggregate.returncode == 2 and "--id needs --aggregate" in no_aggregate.stderr


async def test_a_time_before_the_first_event_is_said_plainly_without_a_traceback(
    settings: Settings, bus: EventBus
) -> None:
    await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
    before = await asyncio.to_thread(hive, settings, "--at", "2020-01-01T00:00:00")
    assert before.returncode == 2, before.stdout
    assert "is before the first event" in before.stderr and "sequence 1" in before.stderr
    assert "Traceback" not in before.stderr and "never retrieved" not in before.stderr
    zero = await asyncio.to_thread(hive, settings, "--at", "0")
    assert zero.returncode == 2 and "sequences start at 1" in zero.stderr
    # A time after it still shows the state then, and leaves no traceback either.
    after = await asyncio.to_thread(hive, settings, "--at", "0s", "--format", "json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["seq"] == 1 and after.stderr == ""


EQUALS = [f"eq{i}" for i in range(4)]


def instance_preferring_another_than(agent_id: str) -> tuple[str, str]:
    """A router instance name whose own order puts another of ``EQUALS`` first, and that agent."""
    for n in range(100):
        name = f"router-{n}"
        first = max(EQUALS, key=lambda a: own_rank(name, a))
        if first != agent_id:
            return name, first
    raise AssertionError("no such instance name")


async def recorded_tie(bus: EventBus, task_id: str, agent_id: str, seen: int, **recorded: object) -> None:
    """Append the assignment a router instance made of `task_id` on the view at `seen`, and its
    start (a task's story holds the notices stored within its life)."""
    breakdown = recorded.pop("breakdown")
    assert isinstance(breakdown, dict)
    event = TaskAssigned(
        agent_id=agent_id,
        task_id=task_id,
        attempt=1,
        task_type="x",
        strategy="adaptive",
        breakdown={"tie_confidence": 0.8, **breakdown},
        decided_at_seq=seen,
        **recorded,  # type: ignore[arg-type]
    )
    await bus.append(event, expected=None)
    await bus.append(TaskStarted(task_id=task_id, agent_id=agent_id, attempt=1), expected=None)


async def test_ties_steered_by_rival_instances_are_re_run_from_what_the_assignment_records(
    settings: Settings, bus: EventBus
) -> None:
    for agent_id in EQUALS:
        await bus.append(AgentRegistered(agent_id=agent_id, capabilities={"x": 1.0}, capacity=2), expected=0)
    for task_id in ("own", "unnamed", "passed", "unlisted"):
        seen = (await bus.append(TaskSubmitted(task_id=task_id, task_type="x"), expected=0)).seq
    # Unloaded equals with nobody crowded: the tie rule names the first of them.
    name, first = instance_preferring_another_than("eq0")
    own_order = {"tie_in_own_order": 1.0, "tie_avoided_rival_agent": 1.0}
    avoided_rival = {"tie_avoided_rival_agent": 1.0}
    await recorded_tie(bus, "own", first, seen, breakdown=own_order, decided_by=name)
    await recorded_tie(bus, "unnamed", first, seen, breakdown=own_order)
    await recorded_tie(
        bus, "passed", "eq1", seen, breakdown=avoided_rival, decided_by=name, passed_over=["eq0"]
    )
    await recorded_tie(bus, "unlisted", "eq1", seen, breakdown=avoided_rival, decided_by=name)

    [own] = await explain_task(bus, "own")
    assert own.reproduced and own.rerun_agent == first and not own.note, own
    assert own.breakdown.get("tie_in_own_order") == 1.0
    [passed] = await explain_task(bus, "passed")
    assert passed.reproduced and not passed.note, passed
    assert passed.breakdown.get("tie_avoided_rival_agent") == 1.0
    # Recorded before decided_by or passed_over: re-run without rivals, and said so.
    [unnamed] = await explain_task(bus, "unnamed")
    assert (unnamed.rerun_agent, unnamed.note) == ("eq0", UNNAMED_INSTANCE), unnamed
    [unlisted] = await explain_task(bus, "unlisted")
    assert (unlisted.rerun_agent, unlisted.note) == ("eq0", UNLISTED_RIVALS), unlisted

    result = await asyncio.to_thread(hive, settings, "explain", "unlisted")
    assert result.returncode == 1 and f"note: {UNLISTED_RIVALS}" in result.stdout, result.stdout
    result = await asyncio.to_thread(hive, settings, "explain", "passed")
    assert result.returncode == 0 and "note:" not in result.stdout, result.stdout
