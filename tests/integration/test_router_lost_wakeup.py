"""A freed slot whose wake-up the router missed costs at most its poll, not the work waiting."""

from __future__ import annotations

import pytest

import services.router.service as router_module
from services.router.service import RouterService
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
