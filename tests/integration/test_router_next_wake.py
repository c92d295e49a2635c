"""The expiry timer's next wake-up (``RouterService._next_wake``) walks the queue only while a task
may wait for a time there (held below its quality threshold, or by a rate limit): a long backlog of
tasks waiting for an agent is not walked every second for nothing, and the answer is the walk's."""

from __future__ import annotations

import time

import pytest

import services.router.service as router_module
from services.router.decide import next_expiry
from services.router.service import RouterService
from shared.bus import EventBus
from shared.domain.routing.admission import rate_wake
from shared.domain.routing.eligibility import BELOW_THRESHOLD
from shared.events import TaskQueued, TaskSubmitted
from shared.settings import Settings
from tests.conftest import running


def walked(router: RouterService) -> float | None:
    """The old computation: both walks, every time."""
    state = router.view.state
    deadline = next_expiry(state, router.config)
    refill = rate_wake(state.keys, state.fleet, router._limits_in_force(), time.time())
    if refill is not None and (deadline is None or refill < deadline):
        deadline = refill
    if router._starts and (deadline is None or router._starts[0][0] < deadline):
        return router._starts[0][0]
    return deadline


async def test_the_queue_is_walked_again_only_after_a_timed_hold(
    settings: Settings, bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    walks = [0]

    def counted(*args: object, **kwargs: object) -> float | None:
        walks[0] += 1
        return next_expiry(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(router_module, "next_expiry", counted)
    async with running(RouterService, settings) as router:
        for index in range(40):  # no agent: each waits for one
            await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="review"), expected=0)
        deadline = time.time() + 3600
        last = await bus.append(
            TaskSubmitted(task_id="timed", task_type="review", deadline_ts=deadline), expected=0
        )
        await router.view.wait_for(last.seq)
        assert len(router.view.state.fleet.queue) == 41
        walks[0] = 0
        assert [router._next_wake() for _ in range(5)] == [None] * 5 == [walked(router)] * 5
        assert walks[0] <= 1, "a queue with no timed hold is walked once, not at each look"
        held = await bus.append(TaskQueued(task_id="timed", attempt=1, reason=BELOW_THRESHOLD), expected=None)
        await router.view.wait_for(held.seq)
        before = walks[0]
        assert router._next_wake() == deadline == walked(router)
        assert router._next_wake() == deadline
        assert walks[0] - before >= 2, "walked again at each look while the hold lasts"
