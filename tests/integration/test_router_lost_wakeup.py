"""A freed slot whose wake-up the router missed costs at most its poll, not the work waiting."""

from __future__ import annotations

import asyncio

import pytest

import services.router.service as router_module
from services.router.service import InFlight, RouterService
from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.events import TaskCompleted, TaskQueued, TaskSubmitted
from shared.recorded import Recorded
from shared.settings import Settings
from tests.conftest import EventLog, running


async def _done(context: TaskContext) -> TaskOutcome:
    return TaskOutcome(result="done", quality=0.9)


async def test_waiting_work_is_looked_at_again_when_a_freed_slot_woke_nothing(
    settings: Settings, bus: EventBus, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router_module, "EXPIRY_POLL_S", 0.2)
    hearing = RouterService._on_applied

    def deaf_to_completions(self: RouterService, recorded: Recorded) -> None:
        if not isinstance(recorded.event, TaskCompleted):  # the wake-up of a freed slot, lost
            hearing(self, recorded)

    monkeypatch.setattr(RouterService, "_on_applied", deaf_to_completions)
    agent = Agent("only", _done, capabilities={"review": 0.9}, capacity=1)
    async with running(RouterService, settings):
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="first", task_type="review"), expected=0)
        await bus.append(TaskSubmitted(task_id="second", task_type="review"), expected=0)
        await event_log.wait_for(lambda events: any(isinstance(e, TaskQueued) for e in events))
        await event_log.wait_for(
            lambda events: sum(isinstance(e, TaskCompleted) for e in events) >= 2, timeout=5.0
        )
        await agent.stop()


async def test_a_decision_in_flight_that_woke_nothing_does_not_stop_the_look_at_waiting_work(
    settings: Settings, bus: EventBus, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry left in flight (its landing read before its answer, the wake-up lost) must not
    disable the net: the look forgets what the view shows and decides the waiting work."""
    monkeypatch.setattr(router_module, "EXPIRY_POLL_S", 30.0)  # no look until the stage is set
    hearing = RouterService._on_applied

    def deaf_to_completions(self: RouterService, recorded: Recorded) -> None:
        if not isinstance(recorded.event, TaskCompleted):
            hearing(self, recorded)

    monkeypatch.setattr(RouterService, "_on_applied", deaf_to_completions)
    # The first task ends only once the stage is set: had it ended before the router's hold of the
    # second landed, the round that landing woke would decide the second, and nothing would be left
    # for the look to do (a busy machine's order, about one full run in twenty).
    release = asyncio.Event()

    async def first_waits(context: TaskContext) -> TaskOutcome:
        if context.task_id == "first":
            await release.wait()
        return await _done(context)

    agent = Agent("only", first_waits, capabilities={"review": 0.9}, capacity=1)
    async with running(RouterService, settings) as router:
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="first", task_type="review"), expected=0)
        await bus.append(TaskSubmitted(task_id="second", task_type="review"), expected=0)
        await event_log.wait_for(lambda events: any(isinstance(e, TaskQueued) for e in events))
        await router.view.catch_up()
        await router._settled()  # the hold's landing and its round are over
        router._in_flight["first"] = InFlight("first", 1, "only", seq=1)  # shown by the view long ago
        monkeypatch.setattr(router_module, "EXPIRY_POLL_S", 0.2)
        router._timer_woken.set()  # the timer waits again, with the short poll
        release.set()
        await event_log.wait_for(
            lambda events: sum(isinstance(e, TaskCompleted) for e in events) >= 2, timeout=5.0
        )
        assert "first" not in router._in_flight
        await agent.stop()
