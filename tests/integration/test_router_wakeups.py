"""At a moderate rate each wake-up of the router's decisions decides about one task, and about as many
wake-ups decide nothing (its own assignment landing in its view, a submission its view applied
before its claim came): those, with nothing waiting that is its own to decide, lay no overlay and
make no plan; an append's answer wakes none unless it frees the last room for appends."""

from __future__ import annotations

import pytest

import services.router.service as router_module
from services.router.service import RouterService
from shared.agent.sdk import Agent, TaskContext
from shared.bus import EventBus
from shared.domain.routing.view import RouterState
from shared.events import TaskAssigned, TaskCompleted, TaskSubmitted
from shared.settings import Settings
from tests.conftest import EventLog, running


async def quick(context: TaskContext) -> str:
    return "done"


async def test_a_wake_up_with_nothing_waiting_makes_no_plan(
    settings: Settings, bus: EventBus, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = {"rounds": 0, "plans": 0, "plans_on_empty_queue": 0}
    decide = RouterService._decide
    plan = router_module.plan

    def counted_decide(self: RouterService) -> object:
        counts["rounds"] += 1
        return decide(self)

    def counted_plan(state: RouterState, *args: object, **kwargs: object) -> object:
        counts["plans"] += 1
        counts["plans_on_empty_queue"] += not state.fleet.queue
        return plan(state, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RouterService, "_decide", counted_decide)
    monkeypatch.setattr(router_module, "plan", counted_plan)
    agents = [Agent(f"ag{index}", quick, capabilities=["review"], capacity=2) for index in range(2)]
    async with running(RouterService, settings) as router:
        for agent in agents:
            await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="warm", task_type="review"), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs), timeout=10)
        counts.update(rounds=0, plans=0, plans_on_empty_queue=0)
        for index in range(30):  # one at a time: the queue is empty between them
            await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="review"), expected=0)
            await event_log.wait_for(
                lambda evs, n=index: sum(isinstance(e, TaskCompleted) for e in evs) >= n + 2, timeout=10
            )
        for agent in agents:
            await agent.stop()
        assert router.assignments == 31
        assert router.details()["decide_rounds"] >= counts["rounds"]
    assert len({a.task_id for a in event_log.of_type(TaskAssigned)}) == 31
    assert counts["rounds"] >= 30
    # Nothing is owed here (no keys): a plan on an empty queue is one that could decide nothing.
    # Nor does a round plan while the view shows a submission whose claim has not arrived yet (the
    # projection often reads it before the work consumer does): one plan per task, each deciding it.
    assert counts["plans_on_empty_queue"] == 0, f"{counts} for 30 tasks decided one at a time"
    assert counts["plans"] <= 30, f"{counts} for 30 tasks decided one at a time"
    assert counts["plans"] < counts["rounds"], counts


async def test_an_append_answered_wakes_the_decisions_only_when_it_frees_the_last_room(
    settings: Settings, bus: EventBus, event_log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer changes nothing a plan reads but the room for appends: with room left it wakes no
    round (one in two rounds at a moderate rate was an answer's, deciding nothing); with none left
    it does, else the tasks behind would wait for a landing."""
    monkeypatch.setattr(router_module, "MAX_APPENDS", 2)
    answers: list[tuple[int, bool]] = []
    appended = RouterService._appended

    def spied(self: RouterService, chain: object, stored: int) -> None:
        was_set = self._wanted.is_set()
        in_flight = len(self._appends)
        appended(self, chain, stored)  # type: ignore[arg-type]
        if not was_set:
            answers.append((in_flight, self._wanted.is_set()))

    monkeypatch.setattr(RouterService, "_appended", spied)
    agents = [Agent(f"ag{index}", quick, capabilities=["review"], capacity=4) for index in range(2)]
    async with running(RouterService, settings) as router:
        for agent in agents:
            await agent.start(bus)
        for index in range(5):  # one at a time: one append in flight, room left
            await bus.append(TaskSubmitted(task_id=f"one{index}", task_type="review"), expected=0)
            await event_log.wait_for(
                lambda evs, n=index: sum(isinstance(e, TaskCompleted) for e in evs) >= n + 1, timeout=10
            )
        for index in range(8):  # at once: more than MAX_APPENDS decided in one plan's worth
            await bus.append(TaskSubmitted(task_id=f"many{index}", task_type="review"), expected=0)
        await event_log.wait_for(lambda evs: sum(isinstance(e, TaskCompleted) for e in evs) >= 13, timeout=10)
        for agent in agents:
            await agent.stop()
        assert router.assignments == 13
    assert len({a.task_id for a in event_log.of_type(TaskAssigned)}) == 13
    with_room = [woke for in_flight, woke in answers if in_flight < 2]
    without_room = [woke for in_flight, woke in answers if in_flight >= 2]
    assert with_room and not any(with_room), answers
    assert without_room and all(without_room), answers
