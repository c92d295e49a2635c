"""What a service's projection skips undecoded (``ProjectionSpec.ignores``), against a real nats-server:
never decoded (garbage there is no dead letter of that service), still counted in its aggregate's
version, and the events it does need are applied as before."""

from __future__ import annotations

from services.balancer.view import BALANCER_VIEW
from services.workflow.view import WORKFLOW_VIEW
from shared.bus import EventBus
from shared.domain.workflows import step_task_id
from shared.events import (
    AgentRegistered,
    TaskAssigned,
    TaskCompleted,
    TaskSubmitted,
    WorkflowStarted,
    WorkflowStep,
    WorkflowStepDispatched,
    WorkflowSubmitted,
)
from shared.projection import ProjectionRunner
from shared.subjects import report_subject

WF = "wf"
STEP = step_task_id(WF, "a")


async def test_the_workflow_service_does_not_decode_a_task_of_no_workflow_but_follows_its_steps(
    bus: EventBus,
) -> None:
    await bus.append(AgentRegistered(agent_id="a1", capabilities={"x": 1.0}, session="s"), expected=None)
    await bus.append(
        WorkflowSubmitted(workflow_id=WF, steps=[WorkflowStep(step_id="a", task_type="x")]), expected=0
    )
    await bus.append(WorkflowStarted(workflow_id=WF), expected=None)
    await bus.append(TaskSubmitted(task_id="plain", task_type="x"), expected=0)
    await bus.append(TaskAssigned(agent_id="a1", task_id="plain", attempt=1, session="s"), expected=None)
    # Not even an event: a decoder would dead-letter it.
    garbage = await bus.js.publish(report_subject("plain", "completed", "a1"), b"\x00not an event")
    await bus.append(WorkflowStepDispatched(workflow_id=WF, step_id="a", task_id=STEP), expected=None)
    await bus.append(TaskSubmitted(task_id=STEP, task_type="x", workflow_id=WF, step_id="a"), expected=0)
    await bus.append(TaskAssigned(agent_id="a1", task_id=STEP, attempt=1, session="s"), expected=None)
    done = await bus.append(TaskCompleted(task_id=STEP, agent_id="a1", attempt=1, result=7), expected=None)

    runner = ProjectionRunner(bus, WORKFLOW_VIEW)
    problems: list[str] = []
    runner._dead_letter = lambda msg, seq, reason: _note(problems, reason)  # type: ignore[method-assign]
    await runner.start()
    try:
        await runner.catch_up()
        assert runner.seq >= done.seq
        assert problems == []
        assert runner.ignored == 3, "the plain task's submission, assignment and (garbage) end"
        assert set(runner.state.fleet.tasks) == {STEP}
        step = runner.state.flows.workflows[WF].steps["a"]
        assert step.status == "completed" and step.result == 7
        assert runner.state.fleet.agents["a1"].capacity == 1
        assert runner.seen_version("task", "plain") == garbage.seq, "skipped, still counted"
    finally:
        await runner.stop(snapshot=False)


async def _note(problems: list[str], reason: str) -> None:
    problems.append(reason)


async def test_the_balancer_skips_progress_undecoded_and_its_task_version_still_moves_with_it(
    bus: EventBus,
) -> None:
    await bus.append(AgentRegistered(agent_id="a1", capabilities={"x": 1.0}, session="s"), expected=None)
    await bus.append(TaskSubmitted(task_id="t", task_type="x"), expected=0)
    await bus.append(TaskAssigned(agent_id="a1", task_id="t", attempt=1, session="s"), expected=None)
    progress = await bus.js.publish(report_subject("t", "progress", "a1"), b"\x00not an event")
    runner = ProjectionRunner(bus, BALANCER_VIEW)
    problems: list[str] = []
    runner._dead_letter = lambda msg, seq, reason: _note(problems, reason)  # type: ignore[method-assign]
    await runner.start()
    try:
        await runner.catch_up()
        assert problems == [] and runner.ignored == 1
        assert runner.state.router.fleet.tasks["t"].status == "assigned"
        # A move is appended against this version: a progress stored meanwhile refuses it.
        assert runner.version("task", "t") == progress.seq
    finally:
        await runner.stop(snapshot=False)
