"""Learned routing against a real nats-server: outcomes steer the router, thresholds hold tasks,
held tasks end at their deadline, the mode and default strategy come from the settings."""

from __future__ import annotations

import time

import httpx

from services.gateway.service import GatewayService
from services.router.service import RouterService
from shared.agent.sdk import Agent, TaskContext, TaskOutcome
from shared.bus import EventBus
from shared.events import TaskAssigned, TaskCompleted, TaskFailed, TaskQueued, TaskSubmitted
from shared.settings import Settings
from tests.conftest import EventLog, running

ASSIGN = "/api/v1/orchestration/task/assign"


def reporting(quality: float):  # type: ignore[no-untyped-def]
    async def handle(context: TaskContext) -> TaskOutcome:
        return TaskOutcome(result="done", quality=quality)

    return handle


def completed(count: int):  # type: ignore[no-untyped-def]
    return lambda events: sum(isinstance(e, TaskCompleted) for e in events) >= count


async def test_the_router_learns_to_give_work_to_the_agent_that_delivers_quality(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    ace = Agent("ace", reporting(0.95), capabilities={"review": 0.7}, capacity=1)
    dud = Agent("dud", reporting(0.3), capabilities={"review": 0.9}, capacity=1)
    async with running(RouterService, settings) as router:
        await ace.start(bus)
        await dud.start(bus)
        for index in range(14):
            await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="review"), expected=0)
            await event_log.wait_for(completed(index + 1))
        details = router.details()
        await ace.stop()
        await dud.stop()
    chosen = [a.agent_id for a in event_log.of_type(TaskAssigned)]
    assert chosen[0] == "dud", "before any outcome, declared proficiency leads"
    assert "ace" in chosen[:4], "the other agent is explored early"
    assert chosen[-6:] == ["ace"] * 6, chosen
    last = event_log.of_type(TaskAssigned)[-1]
    assert "outcome(s) on review" in last.explanation
    assert last.breakdown["predicted_quality"] > 0.8
    assert details["outcomes_learned"] >= 13
    assert details["adaptive_weights"]["performance"] > details["adaptive_weights"]["capability"]


async def test_what_the_router_learned_survives_its_restart(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    agent = Agent("solo", reporting(0.8), capabilities={"review": 0.9}, capacity=1)
    async with running(RouterService, settings) as router:
        await agent.start(bus)
        for index in range(3):
            await bus.append(TaskSubmitted(task_id=f"t{index}", task_type="review"), expected=0)
            await event_log.wait_for(completed(index + 1))
        await router.view.catch_up()
        learned = router.view.state.performance
        await agent.stop()
    async with running(RouterService, settings) as again:
        assert again.view.loaded_from_snapshot > 0, "the restart must start from the snapshot"
        assert again.view.state.performance == learned
        assert again.view.state.performance.outcomes == 3


async def test_a_task_below_its_quality_threshold_is_answered_202_then_goes_to_a_good_enough_agent(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    weak = Agent("weak", reporting(0.5), capabilities={"review": 0.3}, capacity=1)
    strong = Agent("strong", reporting(0.95), capabilities={"review": 1.0}, capacity=1)
    async with (
        running(RouterService, settings),
        running(GatewayService, settings) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http,
    ):
        await weak.start(bus)
        reply = await http.post(
            ASSIGN, json={"task_id": "picky", "task_type": "review", "expected_quality_threshold": 0.9}
        )
        assert reply.status_code == 202, reply.text
        body = reply.json()
        assert body["status"] == "queued" and body["reason"] == "below_quality_threshold"
        assert "(weak) is below the required 0.90" in body["detail"]
        held = (await http.get("/api/v1/tasks/picky", params={"after_seq": body["seq"]})).json()
        assert held["queued_reason"] == "below_quality_threshold" and held["queued_detail"] == body["detail"]
        await strong.start(bus)
        await event_log.wait_for(completed(1))
        status = (await http.get("/api/v1/tasks/picky", params={"after_seq": event_log.seqs[-1]})).json()
        await weak.stop()
        await strong.stop()
    assert [a.agent_id for a in event_log.of_type(TaskAssigned)] == ["strong"]
    assert status["status"] == "completed" and status["expected_quality_threshold"] == 0.9
    decision = status["assignments"][0]
    assert (
        decision["breakdown"]["weight_performance"] > 0 and decision["breakdown"]["predicted_quality"] >= 0.9
    )
    assert "strong scored" in decision["explanation"]
    assert any(r["agent_id"] == "weak" and "threshold 0.90" in r["reason"] for r in decision["rejected"])


async def test_a_task_held_below_its_threshold_fails_when_its_deadline_passes(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    weak = Agent("weak", reporting(0.5), capabilities={"review": 0.3}, capacity=1)
    async with running(RouterService, settings) as router:
        await weak.start(bus)
        await bus.append(
            TaskSubmitted(
                task_id="late",
                task_type="review",
                expected_quality_threshold=0.95,
                deadline_ts=time.time() + 0.5,
            ),
            expected=0,
        )
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskQueued) for e in evs))
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskFailed) for e in evs))
        expired = router.expired
        await weak.stop()
    failed = event_log.of_type(TaskFailed)
    assert len(failed) == 1 and failed[0].failure_type == "deadline_exceeded"
    assert "0.95" in failed[0].error and "weak" in failed[0].error
    assert event_log.of_type(TaskQueued)[0].reason == "below_quality_threshold"
    assert not event_log.of_type(TaskAssigned)
    assert expired == 1


async def test_the_mode_and_the_default_strategy_come_from_the_settings(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    agent = Agent("only", reporting(0.8), capabilities={"review": 0.9}, capacity=1)
    async with running(
        RouterService,
        settings,
        orchestration_mode="fault_tolerant",
        default_routing_strategy="capability_first",
    ):
        await agent.start(bus)
        await bus.append(TaskSubmitted(task_id="a", task_type="review"), expected=0)
        await bus.append(
            TaskSubmitted(task_id="b", task_type="review", routing_strategy="round_robin"), expected=0
        )
        await event_log.wait_for(completed(2))
        await agent.stop()
    first, second = event_log.of_type(TaskAssigned)
    assert first.strategy == "capability_first" and second.strategy == "round_robin"
    assert first.explanation.startswith("capability_first (fault_tolerant mode)")
    assert first.breakdown["risk_tolerance"] < 0
    assert first.decided_at_seq > 0
