"""Router against a real nats-server: capacity under racing instances, queueing, explanations."""

from __future__ import annotations

import asyncio

import msgspec

from services.recovery.service import RecoveryService
from services.router.service import RouterService
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.domain.routing.view import ROUTER_VIEW
from shared.events import TaskAssigned, TaskCompleted, TaskQueued, TaskSubmitted
from shared.projection import rebuild
from shared.settings import Settings
from shared.subjects import EVENTS_STREAM
from tests.conftest import EventLog, running


def max_in_flight_per_agent(events: list) -> dict[str, int]:
    """Replay the log's assignments and releases and keep the peak per agent."""
    holder: dict[tuple[str, int], str] = {}
    load: dict[str, int] = {}
    peak: dict[str, int] = {}
    for event in events:
        if isinstance(event, TaskAssigned):
            holder[(event.task_id, event.attempt)] = event.agent_id
            load[event.agent_id] = load.get(event.agent_id, 0) + 1
            peak[event.agent_id] = max(peak.get(event.agent_id, 0), load[event.agent_id])
        elif hasattr(event, "attempt") and type(event).__name__ in {
            "TaskCompleted",
            "TaskAttemptFailed",
            "TaskFailed",
            "TaskCancelled",
            "TaskRequeued",
        }:
            attempt = event.attempt - 1 if type(event).__name__ == "TaskRequeued" else event.attempt
            agent = holder.pop((event.task_id, attempt), None)
            if agent is not None:
                load[agent] -= 1
    return peak


async def quick(context: TaskContext) -> str:
    await asyncio.sleep(0.001)
    return "done"


async def run_burst(bus: EventBus, event_log: EventLog, agents: list[Agent], tasks: int) -> None:
    """Start `agents`, submit `tasks` review tasks (``t0``...) and wait until that many completed,
    then stop the agents: the routers running meanwhile shared the burst."""
    for agent in agents:
        await agent.start(bus)
    for index in range(tasks):
        await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="review"), expected=0)
    await event_log.wait_for(lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) >= tasks, timeout=60)
    for agent in agents:
        await agent.stop()


async def test_three_routers_never_give_an_agent_more_than_its_capacity(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    agent = Agent("solo", quick, capabilities=["review"], capacity=1)
    async with (
        running(RouterService, settings, instance="r1") as r1,
        running(RouterService, settings, instance="r2") as r2,
        running(RouterService, settings, instance="r3") as r3,
    ):
        await run_burst(bus, event_log, [agent], 100)
        routers = (r1, r2, r3)
    assigned = event_log.of_type(TaskAssigned)
    assert len({a.task_id for a in assigned}) == 100
    assert len(assigned) == 100, "a task attempt was assigned twice"
    assert agent.stats.max_concurrent == 1
    assert max_in_flight_per_agent(event_log.events) == {"solo": 1}
    assert sum(r.assignments for r in routers) == 100
    assert len({t.task_id for t in event_log.of_type(TaskCompleted)}) == 100


async def test_racing_routers_decode_none_of_their_own_appends_and_their_views_match_the_log(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    """Each router applies the assignments it stored as it holds them (not decoded again), each
    submission it claims is decoded once for both its readers, and its view ends as a view that
    decodes the whole log, rivals' assignments and refused appends included."""
    agents = [Agent(f"racer{i}", quick, capabilities=["review"], capacity=2) for i in range(2)]
    async with (
        running(RouterService, settings, instance="r1") as r1,
        running(RouterService, settings, instance="r2") as r2,
    ):
        await run_burst(bus, event_log, agents, 60)
        for router in (r1, r2):
            seq = await router.view.catch_up()
            rebuilt, _ = await rebuild(bus, ROUTER_VIEW, stop_seq=seq)
            assert msgspec.msgpack.encode(router.view.state) == msgspec.msgpack.encode(rebuilt)
            read, again = router.view.delivered, router.decodings.work_again
            assert router.decodings.reused >= router.assignments > 0, "an own assignment was decoded"
            # A claim redelivered to the work consumer (its acknowledgement wait ran out on a busy
            # machine) after the projection read it is decoded again: at most once per redelivery.
            assert router.decodings.decoded <= read - router.assignments + again, "decoded twice"
    assert len(event_log.of_type(TaskAssigned)) == 60


async def test_task_waits_in_queue_until_a_capable_agent_registers(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async with running(RouterService, settings):
        await bus.append(TaskSubmitted(task_id="lonely", task_type="translate"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskQueued) for e in evs))
        queued = event_log.of_type(TaskQueued)[0]
        assert queued.reason == "no_capable_agent"
        agent = Agent("polyglot", quick, capabilities=["translate"], capacity=1)
        await agent.start(bus)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs))
        await agent.stop()
    assigned = event_log.of_type(TaskAssigned)
    assert [a.agent_id for a in assigned] == ["polyglot"]


async def test_busy_agents_queue_work_and_take_it_when_they_free_up(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    release = asyncio.Event()

    async def held(context: TaskContext) -> str:
        await release.wait()
        return "ok"

    agent = Agent("busy", held, capabilities=["lint"], capacity=1)
    async with running(RouterService, settings), running(RecoveryService, settings):
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="first", task_type="lint"), expected=0)
        await bus.append(TaskSubmitted(task_id="second", task_type="lint"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskQueued) for e in evs))
        assert event_log.of_type(TaskQueued)[0].reason == "all_capable_agents_busy"
        release.set()
        await event_log.wait_for(lambda evs: len([e for e in evs if isinstance(e, TaskCompleted)]) == 2)
        await agent.stop()
    assert [a.task_id for a in event_log.of_type(TaskAssigned)] == ["first", "second"]


async def test_the_routers_work_durables_each_read_one_kind_of_new_work(
    settings: Settings, bus: EventBus
) -> None:
    """One filter each: a durable with several filters and a backlog makes the server walk a block's
    subjects for every message it delivers. Nothing about agents is work (the projection wakes
    decisions on capacity)."""
    async with running(RouterService, settings):
        filters = {}
        for durable in ("router", "router-requeues"):
            config = (await bus.js.consumer_info(EVENTS_STREAM, durable)).config
            filters[durable] = config.filter_subjects or [config.filter_subject]
    assert filters == {
        "router": ["hive.evt.task.*.submitted"],
        "router-requeues": ["hive.evt.task.*.requeued"],
    }
