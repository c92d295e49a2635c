"""The balancer on a real nats-server: unstarted work moves to an idle agent, a move that loses the race
to the agent's start is refused, scale advice is appended once and shown."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from services.balancer.service import BalancerService
from services.router.service import RouterService
from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.background import cancel_and_wait
from shared.bus import ConcurrencyConflict, EventBus
from shared.domain.starts import START_REPORTED_WITHIN_S
from shared.events import (
    AgentRegistered,
    LoadRebalanced,
    RebalanceRequested,
    ScaleRecommended,
    TaskAssigned,
    TaskCancelRequested,
    TaskCompleted,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.settings import Settings
from tests.conftest import EventLog, running

QUIET = {"rebalance_interval_s": 3600.0}
"""No tick of its own: the test drives ``tick`` and ``rebalance`` itself."""


async def register_stalled(bus: EventBus, agent_id: str = "stalled", capacity: int = 1) -> None:
    """An agent that is registered (and, for all anyone knows, alive) but never reads its assignments."""
    await bus.append(
        AgentRegistered(agent_id=agent_id, capabilities={"review": 0.9}, capacity=capacity, session="s1"),
        expected=None,
    )


async def done(context: TaskContext) -> TaskOutcome:
    return TaskOutcome(result={"by": context.agent_id}, quality=0.9)


@pytest.fixture
async def router(settings: Settings) -> AsyncIterator[RouterService]:
    async with running(RouterService, settings) as service:
        yield service


async def assigned_to(log: EventLog, agent_id: str, task_id: str, attempt: int = 1) -> TaskAssigned:
    await log.wait_for(
        lambda evs: any(
            isinstance(e, TaskAssigned) and (e.task_id, e.agent_id, e.attempt) == (task_id, agent_id, attempt)
            for e in evs
        )
    )
    found: TaskAssigned = next(
        e
        for e in log.of_type(TaskAssigned)
        if (e.task_id, e.agent_id, e.attempt) == (task_id, agent_id, attempt)
    )
    return found


async def stranded_beside_an_idle_agent(bus: EventBus, log: EventLog) -> TaskAssigned:
    """Task ``t`` assigned to the stalled agent, then an idle agent registered: one move to plan."""
    await register_stalled(bus)
    await bus.append(TaskSubmitted(task_id="t", task_type="review"), expected=0)
    assignment = await assigned_to(log, "stalled", "t")
    await register_stalled(bus, "idle")
    return assignment


async def test_an_assignment_left_unstarted_moves_to_an_idle_agent_and_its_old_attempt_is_fenced(
    settings: Settings, bus: EventBus, event_log: EventLog, router: RouterService
) -> None:
    await register_stalled(bus)
    await bus.append(TaskSubmitted(task_id="t", task_type="review"), expected=0)
    first = await assigned_to(event_log, "stalled", "t")
    ready = Agent("ready", done, capabilities={"review": 0.9}, capacity=1)
    await ready.start(bus)
    async with running(
        BalancerService, settings, rebalance_after_s=0.3, rebalance_interval_s=0.05
    ) as balancer:
        await event_log.wait_for(
            lambda evs: (
                any(isinstance(e, TaskCompleted) and e.task_id == "t" for e in evs)
                and any(isinstance(e, LoadRebalanced) for e in evs)
            ),
            timeout=15,
        )
        await balancer.view.wait_for(event_log.seqs[-1])
        # Emptied of the work it did not start, the stalled agent is no move's target (shown in health).
        assert balancer.details()["not_targets_until_they_start"] == ["stalled"]
    await ready.stop()
    moves = [e for e in event_log.of_type(TaskRequeued) if e.task_id == "t"]
    assert [(m.attempt, m.reason, m.previous_agent_id, m.preferred_agent_id) for m in moves] == [
        (2, "rebalanced", "stalled", "ready")
    ]
    assert [(e.agent_id, e.attempt) for e in event_log.of_type(TaskCompleted)] == [("ready", 2)]
    notices = event_log.of_type(TaskCancelRequested)
    assert [(n.agent_id, n.task_id, n.attempt) for n in notices] == [("stalled", "t", 1)]
    summary = event_log.of_type(LoadRebalanced)
    assert summary and summary[0].trigger == "auto" and summary[0].moves[0]["to_agent_id"] == "ready"
    with pytest.raises(ConcurrencyConflict):  # the stalled agent waking up: its start is refused
        await bus.append(TaskStarted(task_id="t", agent_id="stalled", attempt=1), expected=first.task_seq)


async def test_a_move_decided_before_the_agent_started_is_refused_by_the_server_and_not_retried(
    settings: Settings, bus: EventBus, event_log: EventLog, router: RouterService
) -> None:
    assignment = await stranded_beside_an_idle_agent(bus, event_log)
    async with running(
        BalancerService, settings, enable_rebalancing=False, rebalance_after_s=0.0
    ) as balancer:
        await balancer.view.catch_up()
        # Decided once the attempt is too old to be running with its start report deferred.
        plan, versions = balancer.plan(time.time() + START_REPORTED_WITHIN_S, balancer.policy)
        assert [(m.task_id, m.to_agent_id) for m in plan.moves] == [("t", "idle")]
        # The agent starts the attempt between the decision and its append.
        await bus.append(
            TaskStarted(task_id="t", agent_id="stalled", attempt=1), expected=assignment.task_seq
        )
        made: list[object] = []
        refusals: list[str] = []
        refused = await balancer.carry_out(plan.moves, versions, "auto", "", made, refusals)  # type: ignore[arg-type]
        assert refused == 1 and made == [] and "started meanwhile" in refusals[0]
        await balancer.view.catch_up()
        again = await balancer.rebalance(
            time.time() + START_REPORTED_WITHIN_S, balancer.policy, trigger="auto"
        )
        assert again.moves == []
    stored, _ = await bus.read_aggregate("task", "t")
    assert not [r for r in stored if isinstance(r.event, TaskRequeued)]
    assert balancer.moves_refused == 1


async def test_no_move_is_planned_of_an_attempt_the_log_says_ended_after_the_view_last_read(
    settings: Settings, bus: EventBus, event_log: EventLog, router: RouterService
) -> None:
    """The reader's word (a burst that ended with "nothing pending") is what a busy server gives of a
    consumer seconds behind: a plan with moves is made again up to when the first event the view has
    not applied was stored, and the attempt that ended before then does not move."""
    assignment = await stranded_beside_an_idle_agent(bus, event_log)
    async with running(
        BalancerService, settings, enable_rebalancing=False, rebalance_after_s=0.0
    ) as balancer:
        await balancer.view.catch_up()
        later = time.time() + START_REPORTED_WITHIN_S + 1.0
        current = await balancer.rebalance(later, balancer.policy, trigger="auto", dry_run=True)
        assert [(m.task_id, m.to_agent_id) for m in current.moves] == [("t", "idle")]
        # The reader stops where it is, still "current" by its own word, and the attempt ends.
        await cancel_and_wait(balancer.view._task)
        await bus.append(
            TaskCompleted(task_id="t", agent_id="stalled", attempt=1, result={}, duration_s=0.01),
            expected=assignment.task_seq,
        )
        assert balancer.view.lag_s() < START_REPORTED_WITHIN_S
        assert balancer.plan(later, balancer.policy)[0].moves, "by the reader's word alone: a futile move"
        outcome = await balancer.rebalance(later, balancer.policy, trigger="auto", dry_run=True)
        assert outcome.moves == [] and outcome.plan.waiting == 0


async def test_scale_advice_is_appended_once_per_change_and_shown_in_health(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    for index in range(3):
        await bus.append(TaskSubmitted(task_id=f"g{index}", task_type="golang"), expected=0)
    async with running(BalancerService, settings, **QUIET) as balancer:
        await balancer.view.catch_up()
        now = time.time()
        await balancer.tick(now)
        await balancer.tick(now + 6.0)  # evaluated again: the same advice, nothing appended
        stored = [r async for r in bus.read()]
        recommended = [r.event for r in stored if isinstance(getattr(r, "event", None), ScaleRecommended)]
        assert [
            (e.capability, e.additional_agents, e.queue_depth, e.current_agents) for e in recommended
        ] == [("golang", 1, 3, 0)]
        replies = await bus.gather_health(2.0, expect=frozenset({"balancer"}))
        details = next(r for r in replies if r["service"] == "balancer")["details"]
        assert details["scale_recommendations"]["golang"]["additional_agents"] == 1
        assert "3 queued" in details["scale_recommendations"]["golang"]["reason"]


async def test_two_balancer_instances_advise_once_and_a_redelivered_request_is_answered_once(
    settings: Settings, bus: EventBus
) -> None:
    await bus.append(TaskSubmitted(task_id="g", task_type="golang"), expected=0)
    request = await bus.append(RebalanceRequested(scope="req-1", max_moves=-1), expected=0)
    async with (
        running(BalancerService, settings, **QUIET) as first,
        running(BalancerService, settings, **QUIET) as second,
    ):
        now = time.time()
        await first.tick(now)
        await second.tick(now)
        await first.view.catch_up()
        stored, _ = await bus.read_aggregate("system", "req-1")
        recorded = stored[0]
        await first.on_request(recorded)  # a redelivery, after either instance answered it
        await second.on_request(recorded)
    advice, _ = await bus.read_aggregate("system", "scale-golang")
    assert [type(r.event) for r in advice] == [ScaleRecommended]
    answers, _ = await bus.read_aggregate("system", "req-1")
    assert [type(r.event) for r in answers] == [RebalanceRequested, LoadRebalanced]
    answer = answers[1].event
    assert isinstance(answer, LoadRebalanced) and answer.moves == [] and answer.trigger == "request"
    assert answers[1].seq > request.seq


async def test_work_is_not_traded_between_two_stalled_agents_and_goes_to_the_first_that_reads(
    settings: Settings, bus: EventBus, event_log: EventLog, router: RouterService
) -> None:
    """Task ``t`` waits at stalled agent "a" and moves to stalled agent "b", the only other one.
    "a", emptied of the work it did not start, looks idle, but the task does not go back to it (it
    would wait there again, then, its moves spent, until its attempt's timeout): it stays until a
    ready agent registers, and goes there."""
    await register_stalled(bus, "a")
    await bus.append(TaskSubmitted(task_id="t", task_type="review"), expected=0)
    await assigned_to(event_log, "a", "t")
    await register_stalled(bus, "b")
    async with running(
        BalancerService, settings, enable_rebalancing=False, rebalance_after_s=0.0
    ) as balancer:

        async def rebalance_later(delay_s: float) -> list[tuple[str, str, str]]:
            await balancer.view.wait_for(event_log.seqs[-1])
            later = time.time() + START_REPORTED_WITHIN_S + delay_s
            outcome = await balancer.rebalance(later, balancer.policy, trigger="auto")
            return [(m.task_id, m.from_agent_id, m.to_agent_id) for m in outcome.moves]

        assert await rebalance_later(1.0) == [("t", "a", "b")]
        await assigned_to(event_log, "b", "t", attempt=2)
        assert await rebalance_later(2.0) == [], "back to the agent that did not start it"
        assert balancer.details()["not_targets_until_they_start"] == ["a"]
        ready = Agent("ready", done, capabilities={"review": 0.9}, capacity=1)
        await ready.start(bus)
        try:
            await event_log.wait_for(
                lambda evs: any(isinstance(e, AgentRegistered) and e.agent_id == "ready" for e in evs)
            )
            assert await rebalance_later(3.0) == [("t", "b", "ready")]
            await event_log.wait_for(
                lambda evs: any(isinstance(e, TaskCompleted) and e.task_id == "t" for e in evs)
            )
        finally:
            await ready.stop()
    assert [(e.agent_id, e.attempt) for e in event_log.of_type(TaskCompleted)] == [("ready", 3)]
