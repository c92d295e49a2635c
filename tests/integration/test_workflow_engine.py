"""The workflow engine with real services: dependency order, agents killed, limits, restarts."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec
import nats.errors

from services.router.service import RouterService
from services.workflow.service import WorkflowService
from shared.agent.sdk import Agent, NonRetryableError, TaskContext
from shared.agent.simulated import SimulationProfile, make_simulated_agents
from shared.bus import AppendResult, DeadLetter, EventBus
from shared.domain.workflows import step_task_id
from shared.embedded import EmbeddedNats
from shared.events import (
    Event,
    RetryPolicy,
    TaskCompleted,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowStep,
    WorkflowStepDispatched,
    WorkflowSubmitted,
)
from shared.settings import Settings
from shared.subjects import DLQ_STREAM, dlq_subject
from tests.conftest import EventLog, running
from tests.integration.workflow_helpers import (
    EXECUTE,
    Gate,
    fan_out_fan_in_50,
    finished,
    hive,
    outcome,
    quick,
    started_before_dependencies_completed,
    task,
    workflow_url,
)


def graph_of(tasks: list[dict[str, object]]) -> dict[str, list[str]]:
    return {str(t["task_id"]): list(t["dependencies"]) for t in tasks}  # type: ignore[call-overload]


async def test_a_fifty_task_fan_out_fan_in_dag_completes_in_dependency_order(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    tasks = fan_out_fan_in_50()
    agents = [Agent(f"worker-{i}", quick, capabilities=["x"], capacity=3) for i in range(6)]
    async with hive(settings, workflow_instances=2) as h:
        for agent in agents:
            await agent.start(bus)
        reply = await h.http.post(
            EXECUTE, json={"workflow_id": "big", "execution_mode": "parallel", "tasks": tasks}
        )
        assert reply.status_code == 202, reply.text
        assert reply.json()["critical_path"][0] == "root" and reply.json()["critical_path"][-1] == "report"
        await event_log.wait_for(finished("big"), timeout=60)
        status = (await h.http.get(workflow_url("big"), params={"after_seq": max(event_log.seqs)})).json()
        for agent in agents:
            await agent.stop()
    assert isinstance(outcome(event_log, "big"), WorkflowCompleted)
    assert started_before_dependencies_completed(event_log, {"big": graph_of(tasks)}) == []
    submitted = Counter(e.step_id for e in event_log.of_type(TaskSubmitted))
    assert len(submitted) == 50 and set(submitted.values()) == {1}, "each step's task submitted once"
    assert len({e.task_id for e in event_log.of_type(TaskCompleted)}) == 50
    assert status["status"] == "completed" and status["progress"]["percent"] == 100.0
    assert {t["status"] for t in status["tasks"]} == {"completed"}
    report = next(e for e in event_log.of_type(TaskCompleted) if e.task_id == step_task_id("big", "report"))
    assert report.result["upstream"] == ["verify-0", "verify-1", "verify-2", "verify-3"]


async def run_with_a_fifth_of_the_agents_killed(
    settings: Settings, bus: EventBus, event_log: EventLog, *, replace: bool
) -> None:
    hung = Gate()  # the victims hold their tasks until they die
    victims = [Agent(f"agent-{i}", hung, capabilities=["x"], capacity=2) for i in range(2)]
    survivors = make_simulated_agents(
        8, prefix="agent-s", capabilities=["x"], capacity=2, profile=SimulationProfile(work_s=0.01)
    )
    shapes = ["linear_pipeline", "parallel_fanout", "fan_in", "map_reduce", "custom"]
    workflows = {}
    async with hive(settings) as h:
        for agent in victims:
            await agent.start(bus)
        for index, shape in enumerate(shapes):
            tasks = [task(f"t{i}") for i in range(12)]
            reply = await h.http.post(
                EXECUTE, json={"workflow_id": f"wf{index}", "template": shape, "tasks": tasks}
            )
            assert reply.status_code == 202, reply.text
            workflows[f"wf{index}"] = reply.json()["dependencies"]
        # Both victims are busy before the survivors even exist, then they die without a word.
        await event_log.wait_for(
            lambda evs: {e.agent_id for e in evs if isinstance(e, TaskStarted)} >= {"agent-0", "agent-1"}
        )
        for agent in survivors:
            await agent.start(bus)
        for agent in victims:
            await agent.stop()
        if replace:  # the same agent ids come back as new processes (new sessions)
            victims = [
                Agent(f"agent-{i}", quick, capabilities=["x"], capacity=2) for i in range(len(victims))
            ]
            for agent in victims:
                await agent.start(bus)
        await event_log.wait_for(finished(*workflows), timeout=60)
        for agent in [*survivors, *victims]:
            await agent.stop()
    completed = [w for w in workflows if isinstance(outcome(event_log, w), WorkflowCompleted)]
    print(f"\ncompletion rate {len(completed)}/{len(workflows)}")
    assert completed == list(workflows), "completion rate must be 100%"
    assert started_before_dependencies_completed(event_log, workflows) == []
    done = Counter(e.task_id for e in event_log.of_type(TaskCompleted))
    assert len(done) == 60 and set(done.values()) == {1}, "every step completed exactly once"
    assert len(hung.entered) >= 2
    assert {e.previous_agent_id for e in event_log.of_type(TaskRequeued)} >= {"agent-0", "agent-1"}


async def test_with_a_fifth_of_the_agents_killed_and_restarted_every_workflow_completes(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    await run_with_a_fifth_of_the_agents_killed(settings, bus, event_log, replace=True)


async def test_with_a_fifth_of_the_agents_killed_for_good_every_workflow_completes(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    await run_with_a_fifth_of_the_agents_killed(settings, bus, event_log, replace=False)


async def test_failures_follow_the_retry_policy_and_conditions_pick_the_branch(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async def flaky_then_broken(context: TaskContext) -> str:
        if context.task_type == "broken":
            raise NonRetryableError("cannot be done")
        if context.attempt < 2:
            raise RuntimeError("transient")
        return "ok"

    agent = Agent("worker", flaky_then_broken, capabilities=["x", "broken"], capacity=4)
    retry = {"max_attempts": 3, "initial_backoff_s": 0.01}
    tasks = [
        task("flaky", retry=retry),
        task("doomed", task_type="broken"),
        task("publish", "flaky", "doomed"),
        task("rollback", "doomed", condition="on_failure"),
        task("notify", "flaky", "doomed", condition="always"),
    ]
    async with hive(settings) as h:
        await agent.start(bus)
        assert (await h.http.post(EXECUTE, json={"workflow_id": "w", "tasks": tasks})).status_code == 202
        await event_log.wait_for(finished("w"))
        status = (await h.http.get(workflow_url("w"), params={"after_seq": max(event_log.seqs)})).json()
        await agent.stop()
    states = {t["task_id"]: (t["status"], t["reason"]) for t in status["tasks"]}
    assert states["flaky"] == ("completed", "")
    assert states["doomed"][0] == "failed" and "cannot be done" in states["doomed"][1]
    assert states["publish"] == ("skipped", "dependency 'doomed' failed")
    assert states["rollback"][0] == states["notify"][0] == "completed"
    assert status["status"] == "completed", "the failure was handled by rollback"
    retried = [e for e in event_log.of_type(TaskRequeued) if e.task_id == step_task_id("w", "flaky")]
    assert [e.attempt for e in retried] == [2]
    assert [t.retry for t in event_log.of_type(TaskSubmitted) if t.step_id == "flaky"] == [
        RetryPolicy(max_attempts=3, initial_backoff_s=0.01)
    ]


async def test_running_workflows_never_exceed_the_limit_and_the_rest_wait_their_turn(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    gate = Gate()
    agent = Agent("worker", gate, capabilities=["x"], capacity=10)
    async with hive(settings, workflow_instances=2, max_concurrent_workflows=2) as h:
        await agent.start(bus)
        for index in range(5):
            body = {"workflow_id": f"w{index}", "tasks": [task("a"), task("b", "a")]}
            assert (await h.http.post(EXECUTE, json=body)).status_code == 202
        await event_log.wait_for(lambda evs: sum(isinstance(e, TaskStarted) for e in evs) == 2)
        last = max(event_log.seqs)
        waiting = [
            (await h.http.get(workflow_url(f"w{i}"), params={"after_seq": last})).json() for i in (2, 3, 4)
        ]
        assert [(w["status"], w["queue_position"]) for w in waiting] == [
            ("waiting", 1),
            ("waiting", 2),
            ("waiting", 3),
        ]
        gate.open.set()
        await event_log.wait_for(finished(*(f"w{i}" for i in range(5))), timeout=30)
        await agent.stop()
    running_now, peak, order = 0, 0, []
    for event in event_log.events:
        if isinstance(event, WorkflowStarted):
            running_now += 1
            order.append(event.workflow_id)
        elif isinstance(event, WorkflowCompleted | WorkflowFailed):
            running_now -= 1
        peak = max(peak, running_now)
    assert peak == 2
    assert order == ["w0", "w1", "w2", "w3", "w4"], "first submitted, first started"


async def test_a_restarted_workflow_service_picks_up_where_it_stopped(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    gate = Gate()
    agent = Agent("worker", gate, capabilities=["x"], capacity=2)
    steps = [
        WorkflowStep(step_id=f"s{i}", task_type="x", dependencies=[f"s{i - 1}"] if i else [])
        for i in range(5)
    ]
    async with running(WorkflowService, settings) as first:
        await agent.start(bus)
        await bus.append(WorkflowSubmitted(workflow_id="w", steps=steps), expected=0)
        await event_log.wait_for(lambda evs: any(isinstance(e, WorkflowStepDispatched) for e in evs))
    # While the service is down, the router works on: s0 is assigned and completes.
    async with running(RouterService, settings):
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
        gate.open.set()
        await event_log.wait_for(lambda evs: any(isinstance(e, TaskCompleted) for e in evs))
        async with running(WorkflowService, settings) as second:
            assert second.view.loaded_from_snapshot >= first.view.seq > 0
            await event_log.wait_for(finished("w"), timeout=20)
    await agent.stop()
    assert isinstance(outcome(event_log, "w"), WorkflowCompleted)
    dispatched = Counter(e.step_id for e in event_log.of_type(WorkflowStepDispatched))
    submitted = Counter(e.step_id for e in event_log.of_type(TaskSubmitted))
    assert dispatched == submitted == Counter({f"s{i}": 1 for i in range(5)})


async def test_a_decision_that_could_not_be_appended_after_a_step_ended_is_made_again(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    steps = [
        WorkflowStep(step_id="first", task_type="x"),
        WorkflowStep(step_id="second", task_type="x", dependencies=["first"]),
    ]
    agent = Agent("worker", quick, capabilities=["x"], capacity=1)
    async with hive(settings) as h:
        append = h.workflow.bus.append
        refused: list[str] = []

        async def append_failing_once(event: Event, **kwargs: Any) -> AppendResult:
            # NATS did not answer in time when the workflow service dispatched "second".
            if isinstance(event, WorkflowStepDispatched) and event.step_id == "second" and not refused:
                refused.append(event.step_id)
                raise nats.errors.TimeoutError
            return await append(event, **kwargs)

        h.workflow.bus.append = append_failing_once  # type: ignore[method-assign]
        await agent.start(bus)
        await bus.append(WorkflowSubmitted(workflow_id="w", steps=steps), expected=0)
        await event_log.wait_for(finished("w"), timeout=20)
        await agent.stop()
    assert refused == ["second"], "the fault was injected when the first step ended"
    assert isinstance(outcome(event_log, "w"), WorkflowCompleted)
    assert Counter(e.step_id for e in event_log.of_type(TaskSubmitted)) == {"first": 1, "second": 1}


async def test_a_crash_between_the_dispatch_and_the_task_submission_loses_and_duplicates_nothing(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    steps = [WorkflowStep(step_id="torn", task_type="x"), WorkflowStep(step_id="whole", task_type="x")]
    seq = (await bus.append(WorkflowSubmitted(workflow_id="w", steps=steps), expected=0)).seq
    seq = (await bus.append(WorkflowStarted(workflow_id="w"), expected=seq)).seq
    # What a crashed instance left: both dispatches recorded, only one of the two tasks submitted.
    for name in ("torn", "whole"):
        seq = (
            await bus.append(
                WorkflowStepDispatched(workflow_id="w", step_id=name, task_id=step_task_id("w", name)),
                expected=seq,
            )
        ).seq
    await bus.append(
        TaskSubmitted(task_id=step_task_id("w", "whole"), task_type="x", workflow_id="w", step_id="whole"),
        expected=0,
    )
    agent = Agent("worker", quick, capabilities=["x"], capacity=2)
    async with hive(settings):
        await agent.start(bus)
        await event_log.wait_for(finished("w"))
        await agent.stop()
    assert isinstance(outcome(event_log, "w"), WorkflowCompleted)
    assert Counter(e.step_id for e in event_log.of_type(TaskSubmitted)) == {"torn": 1, "whole": 1}
    assert len(event_log.of_type(WorkflowStepDispatched)) == 2


async def test_workflow_state_survives_a_nats_server_restart(
    settings: Settings, bus: EventBus, nats_server: EmbeddedNats
) -> None:
    gate = Gate()
    agent = Agent("worker", gate, capabilities=["x"], capacity=1)
    async with hive(settings) as h:
        await agent.start(bus)
        body = {"workflow_id": "w", "template": "linear_pipeline", "tasks": [task("a"), task("b"), task("c")]}
        assert (await h.http.post(EXECUTE, json=body)).status_code == 202
        before = await EventLog(bus).start()
        await before.wait_for(lambda evs: any(isinstance(e, TaskStarted) for e in evs))
        await before.stop()
        await asyncio.to_thread(nats_server.stop)  # in a thread: clients notice at once and retry
        await asyncio.to_thread(nats_server.start)
        await bus.ensure_streams()  # returns once JetStream answers again, with the stream recovered
        gate.open.set()  # "a" reports now; b and c follow
        after = await EventLog(bus).start()
        try:
            await after.wait_for(finished("w"), timeout=30)
            status = (await h.http.get(workflow_url("w"), params={"after_seq": max(after.seqs)})).json()
        finally:
            await after.stop()
        await agent.stop()
    assert isinstance(outcome(after, "w"), WorkflowCompleted)
    assert status["status"] == "completed"
    assert Counter(e.step_id for e in after.of_type(TaskSubmitted)) == {"a": 1, "b": 1, "c": 1}


async def test_a_workflow_that_bypassed_the_gateway_with_a_cycle_fails_and_the_service_goes_on(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    loop = [
        WorkflowStep(step_id="a", task_type="x", dependencies=["b"]),
        WorkflowStep(step_id="b", task_type="x", dependencies=["a"]),
    ]
    agent = Agent("worker", quick, capabilities=["x"], capacity=1)
    async with hive(settings, workflow_instances=2):
        await agent.start(bus)
        await bus.append(WorkflowSubmitted(workflow_id="bad", steps=loop), expected=0)
        await bus.js.publish("hive.evt.workflow.junk.submitted", b"{not json")
        await bus.append(
            WorkflowSubmitted(workflow_id="good", steps=[WorkflowStep(step_id="a", task_type="x")]),
            expected=0,
        )
        await event_log.wait_for(finished("bad", "good"))
        await agent.stop()
    letters = await bus.js.subscribe(dlq_subject("workflow"), stream=DLQ_STREAM)
    letter = msgspec.json.decode((await letters.next_msg(timeout=10)).data, type=DeadLetter)
    assert letter.subject == "hive.evt.workflow.junk.submitted" and "not a JSON object" in letter.reason
    bad = outcome(event_log, "bad")
    assert isinstance(bad, WorkflowFailed) and "dependency cycle: a -> b -> a" in bad.reason
    assert isinstance(outcome(event_log, "good"), WorkflowCompleted)
    assert not [e for e in event_log.of_type(TaskSubmitted) if e.workflow_id == "bad"]
