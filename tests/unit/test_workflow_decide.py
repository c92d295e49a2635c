"""Workflow decisions without NATS: readiness, conditions, modes, goals, endings, repairs, admission."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.workflow.decide import (
    Action,
    CancelTask,
    Dispatch,
    Finish,
    Skip,
    Submit,
    admissions,
    affected,
    decide,
)
from services.workflow.view import WorkflowServiceState, apply_workflow_service
from shared.domain.workflows import UPSTREAM_RESULT_MAX_BYTES, UPSTREAM_RESULT_MAX_NESTING, step_task_id
from shared.events import (
    AgentRegistered,
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TaskSubmitted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowStep,
    WorkflowStepAdded,
    WorkflowStepCancelled,
    WorkflowStepDispatched,
    WorkflowStepSkipped,
    WorkflowSubmitted,
)
from shared.ids import ID_PATTERN
from shared.nesting import MAX_NESTING, value_nests_deeper
from shared.recorded import Recorded

WF = "wf"


def step(name: str, *deps: str, **fields: Any) -> WorkflowStep:
    return WorkflowStep(
        step_id=name, task_type=fields.pop("task_type", "x"), dependencies=list(deps), **fields
    )


class Sim:
    """A workflow driven by hand: decisions are turned into the events the shell would append."""

    def __init__(self, agents: int = 0, capacity: int = 1) -> None:
        self.state = WorkflowServiceState()
        self.seq = 0
        for index in range(agents):
            self.apply(AgentRegistered(agent_id=f"a{index}", capabilities={"x": 1.0}, capacity=capacity))

    def apply(self, *events: Event) -> None:
        for event in events:
            self.seq += 1
            apply_workflow_service(self.state, Recorded(self.seq, event.subject, event))  # type: ignore[arg-type]

    def submit(self, *steps: WorkflowStep, start: bool = True, **fields: Any) -> None:
        self.apply(WorkflowSubmitted(workflow_id=WF, steps=list(steps), **fields))
        if start:
            self.apply(WorkflowStarted(workflow_id=WF))

    @property
    def workflow(self) -> Any:
        return self.state.flows.workflows[WF]

    def decide(self) -> list[Action]:
        return decide(self.state, WF)

    def perform(self, actions: list[Action], *, submit: bool = True) -> None:
        for action in actions:
            if isinstance(action, Dispatch):
                self.apply(
                    WorkflowStepDispatched(
                        workflow_id=WF, step_id=action.task.step_id, task_id=action.task.task_id
                    )
                )
                if submit:
                    self.apply(self.submission(action))
            elif isinstance(action, Submit):
                self.apply(self.submission(action))
            elif isinstance(action, Skip):
                self.apply(WorkflowStepSkipped(workflow_id=WF, step_id=action.step_id, reason=action.reason))
            elif isinstance(action, CancelTask):
                self.apply(
                    TaskCancelled(task_id=action.task_id, attempt=action.attempt, reason=action.reason)
                )
            elif action.status == "completed":
                self.apply(WorkflowCompleted(workflow_id=WF, outcomes=action.outcomes))
            else:
                self.apply(WorkflowFailed(workflow_id=WF, reason=action.reason, outcomes=action.outcomes))

    def submission(self, action: Dispatch | Submit) -> TaskSubmitted:
        spec = self.workflow.steps[action.task.step_id].spec
        return TaskSubmitted(
            task_id=action.task.task_id,
            task_type=spec.task_type,
            workflow_id=WF,
            step_id=spec.step_id,
            priority=action.task.priority,
            payload={"upstream": action.task.upstream},
        )

    def settle(self) -> list[Action]:
        """Perform decisions until only dispatches of running steps would remain; return the last."""
        while True:
            actions = self.decide()
            if not actions:
                return actions
            self.perform(actions)
            if all(isinstance(a, Dispatch) for a in actions):
                return actions

    def task_of(self, name: str) -> str:
        return str(self.workflow.steps[name].task_id)

    def run(self, name: str, *, ok: bool = True, result: Any = None, agent: str = "a0") -> None:
        task_id = self.task_of(name)
        self.apply(
            TaskAssigned(agent_id=agent, task_id=task_id, attempt=1),
            TaskStarted(task_id=task_id, agent_id=agent, attempt=1),
        )
        if ok:
            self.apply(TaskCompleted(task_id=task_id, agent_id=agent, attempt=1, result=result))
        else:
            self.apply(TaskFailed(task_id=task_id, attempt=1, error="boom"))

    def dispatched(self, actions: list[Action]) -> list[str]:
        return [a.task.step_id for a in actions if isinstance(a, Dispatch)]


# --- readiness and endings --------------------------------------------------------------------------


def test_steps_are_dispatched_as_their_dependencies_complete_and_the_workflow_completes() -> None:
    sim = Sim(agents=4)
    sim.submit(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"), execution_mode="parallel")
    assert sim.dispatched(sim.settle()) == ["a"]
    sim.run("a", result={"n": 1})
    first = sim.settle()
    assert sim.dispatched(first) == ["b", "c"]
    assert first[0].task.upstream == {
        "a": {"status": "completed", "task_id": sim.task_of("a"), "result": {"n": 1}}
    }
    sim.run("b")
    assert sim.settle() == []
    sim.run("c")
    assert sim.dispatched(sim.settle()) == ["d"]
    sim.run("d")
    ending = sim.decide()
    assert ending == [
        Finish(
            status="completed",
            reason="",
            summary={"completed": 4},
            outcomes={"a": "completed", "b": "completed", "c": "completed", "d": "completed"},
        )
    ]
    sim.perform(ending)
    assert sim.workflow.status == "completed" and sim.decide() == []


def test_a_dependency_s_result_reaches_its_dependent_after_the_fleet_forgot_the_task() -> None:
    sim = Sim(agents=1)
    sim.state.fleet.max_finished = 0  # the fleet view forgets every finished task at once
    sim.submit(step("a"), step("big"), step("b", "a", "big"), execution_mode="sequential")
    sim.run(sim.dispatched(sim.settle())[0], result={"n": 1})
    sim.run(sim.dispatched(sim.settle())[0], result="x" * (UPSTREAM_RESULT_MAX_BYTES + 1))
    assert sim.task_of("a") not in sim.state.fleet.tasks
    (dispatch,) = sim.settle()
    assert isinstance(dispatch, Dispatch) and dispatch.task.upstream == {
        "a": {"status": "completed", "task_id": sim.task_of("a"), "result": {"n": 1}},
        "big": {
            "status": "completed",
            "task_id": sim.task_of("big"),
            "result_omitted": f"larger than {UPSTREAM_RESULT_MAX_BYTES} bytes",
        },
    }


def test_a_result_nested_too_deep_for_the_dependent_s_payload_is_not_handed_on() -> None:
    deepest: object = 1
    for _ in range(UPSTREAM_RESULT_MAX_NESTING):
        deepest = [deepest]
    sim = Sim(agents=1)
    sim.submit(step("fits"), step("deep"), step("b", "fits", "deep"), execution_mode="sequential")
    sim.run(sim.dispatched(sim.settle())[0], result=deepest)
    sim.run(sim.dispatched(sim.settle())[0], result=[deepest])
    (dispatch,) = sim.settle()
    assert isinstance(dispatch, Dispatch)
    assert dispatch.task.upstream["fits"]["result"] == deepest
    assert dispatch.task.upstream["deep"]["result_omitted"] == (
        f"nested deeper than {UPSTREAM_RESULT_MAX_NESTING} levels"
    )
    payload = {"upstream": dispatch.task.upstream}
    assert not value_nests_deeper(payload, MAX_NESTING)


def test_task_ids_are_derived_valid_and_distinct_across_workflows() -> None:
    import re

    one, two = step_task_id("w" * 64, "s" * 64), step_task_id("w" * 64, "s" * 63 + "t")
    assert one != two and len(one) <= 64 and re.match(ID_PATTERN, one)
    assert step_task_id("a-b", "c") != step_task_id("a", "b-c")
    assert step_task_id("w", "s") == step_task_id("w", "s")


def test_a_failed_dependency_skips_on_success_steps_at_once_with_the_reason() -> None:
    sim = Sim(agents=2)
    sim.submit(step("a"), step("slow"), step("b", "a", "slow"), step("c", "b"))
    sim.settle()
    sim.run("a", ok=False)
    assert [a for a in sim.decide() if isinstance(a, Skip)] == [
        Skip(step_id="b", reason="dependency 'a' failed")
    ]
    sim.perform(sim.decide())
    assert sim.decide() == [Skip(step_id="c", reason="dependency 'b' was skipped")]


def test_on_failure_runs_only_when_a_dependency_failed_and_always_runs_after_all() -> None:
    sim = Sim(agents=3)
    sim.submit(
        step("a"),
        step("b"),
        step("rescue", "a", condition="on_failure"),
        step("unneeded", "b", condition="on_failure"),
        step("cleanup", "a", "b", condition="always"),
    )
    sim.settle()
    sim.run("a", ok=False)
    rescue = sim.decide()
    assert sim.dispatched(rescue) == ["rescue"], "cleanup waits until every dependency has ended"
    sim.perform(rescue)
    sim.run("b")
    actions = sim.decide()
    assert Skip(step_id="unneeded", reason="condition on_failure: no dependency failed") in actions
    assert sim.dispatched(actions) == ["cleanup"]
    sim.perform(actions)
    sim.run("rescue")
    sim.run("cleanup")
    finish = sim.decide()[0]
    assert isinstance(finish, Finish) and finish.status == "completed", "a handled failure is no failure"
    assert finish.summary == {"failed": 1, "completed": 3, "skipped": 1}


def test_an_unhandled_failure_fails_the_workflow_naming_the_step() -> None:
    sim = Sim(agents=2)
    sim.submit(step("a"), step("b"))
    sim.settle()
    sim.run("a", ok=False)
    sim.run("b")
    finish = sim.decide()[0]
    assert isinstance(finish, Finish)
    assert (finish.status, finish.reason) == ("failed", "task(s) failed: 'a'")
    assert finish.outcomes == {"a": "failed", "b": "completed"}


def test_a_workflow_that_cannot_run_fails_at_once_even_while_waiting() -> None:
    sim = Sim()
    sim.submit(step("a", "b"), step("b", "a"), start=False)
    assert admissions(sim.state.flows, 10) == []
    (finish,) = sim.decide()
    assert isinstance(finish, Finish) and finish.status == "failed"
    assert "dependency cycle: a -> b -> a" in finish.reason


def test_a_step_added_with_an_unknown_dependency_is_skipped_with_the_reason() -> None:
    sim = Sim(agents=1)
    sim.submit(step("a"))
    sim.settle()
    sim.apply(WorkflowStepAdded(workflow_id=WF, step=step("late", "ghost")))
    assert Skip(step_id="late", reason="task 'late' depends on unknown task 'ghost'") in sim.decide()


# --- execution modes ----------------------------------------------------------------------------


def fan_out(width: int, **fields: Any) -> list[WorkflowStep]:
    return [step("root"), *(step(f"m{i}", "root", **fields) for i in range(width))]


def test_sequential_mode_keeps_one_step_in_flight() -> None:
    sim = Sim(agents=5, capacity=5)
    sim.submit(*fan_out(3), execution_mode="sequential")
    sim.settle()
    sim.run("root")
    assert sim.dispatched(sim.settle()) == ["m0"]
    assert sim.decide() == []
    sim.run("m0")
    assert sim.dispatched(sim.settle()) == ["m1"]


def test_parallel_mode_dispatches_every_ready_step_whatever_the_fleet() -> None:
    sim = Sim(agents=1)
    sim.submit(*fan_out(6), execution_mode="parallel")
    sim.settle()
    sim.run("root")
    assert len(sim.dispatched(sim.settle())) == 6


def test_adaptive_mode_keeps_no_more_steps_in_flight_than_capable_capacity() -> None:
    sim = Sim(agents=2, capacity=1)
    sim.submit(*fan_out(6), execution_mode="adaptive")
    sim.settle()
    sim.run("root")
    assert sim.dispatched(sim.settle()) == ["m0", "m1"]
    assert sim.decide() == []
    sim.run("m0")
    assert sim.dispatched(sim.settle()) == ["m2"]
    sim.apply(AgentRegistered(agent_id="big", capabilities={"x": 1.0}, capacity=3))
    assert affected(sim.state, AgentRegistered(agent_id="big")) == [WF]
    assert sim.dispatched(sim.settle()) == ["m3", "m4", "m5"]


def test_adaptive_mode_without_a_capable_agent_still_submits_one_step_to_be_queued() -> None:
    sim = Sim()
    sim.submit(*fan_out(3, task_type="rare"), execution_mode="adaptive")
    assert sim.dispatched(sim.settle()) == ["root"]


def test_a_non_parallelizable_step_runs_alone_and_holds_back_what_follows_it() -> None:
    sim = Sim(agents=5, capacity=5)
    sim.submit(
        step("a"),
        step("b"),
        step("solo", parallelizable=False, priority="high"),
        step("c"),
        execution_mode="parallel",
    )
    assert sim.dispatched(sim.settle()) == ["solo"]
    assert sim.decide() == []
    sim.run("solo")
    assert sim.dispatched(sim.settle()) == ["a", "b", "c"]


def test_a_non_parallelizable_step_waits_for_the_steps_in_flight() -> None:
    sim = Sim(agents=5, capacity=5)
    sim.submit(step("a"), step("b"), step("solo", "a", parallelizable=False), step("c", "a"))
    sim.settle()
    sim.run("a")
    assert sim.decide() == [], "b is still running, and c waits behind solo"
    sim.run("b")
    assert sim.dispatched(sim.settle()) == ["solo"]


# --- optimization goals -------------------------------------------------------------------------


def goal_workflow(goal: str) -> Sim:
    sim = Sim(agents=1, capacity=10)
    sim.submit(
        step("short", estimated_duration_minutes=1, priority="high"),
        step("long", estimated_duration_minutes=5),
        step("after_long", "long", estimated_duration_minutes=5),
        execution_mode="sequential",
        optimization_goal=goal,
    )
    return sim


def test_minimize_time_runs_the_critical_path_first_one_priority_level_higher() -> None:
    (first,) = goal_workflow("minimize_time").settle()
    assert isinstance(first, Dispatch)
    assert (first.task.step_id, first.task.priority, first.task.routing_strategy) == (
        "long",
        "high",
        "load_balanced",
    )


def test_maximize_quality_follows_declared_priority_and_asks_for_the_best_agents() -> None:
    (first,) = goal_workflow("maximize_quality").settle()
    assert isinstance(first, Dispatch)
    assert (first.task.step_id, first.task.priority, first.task.routing_strategy) == (
        "short",
        "high",
        "performance_optimized",
    )


def test_balance_all_takes_priority_then_the_longest_chain_with_the_default_routing() -> None:
    sim = goal_workflow("balance_all")
    (first,) = sim.settle()
    assert isinstance(first, Dispatch) and first.task.step_id == "short"
    assert first.task.routing_strategy is None
    sim.run("short")
    (second,) = sim.settle()
    assert isinstance(second, Dispatch) and (second.task.step_id, second.task.priority) == ("long", "normal")


# --- cancellation, repairs, idempotence -------------------------------------------------------------


def test_cancelling_a_workflow_cancels_its_live_tasks_and_tells_their_agents() -> None:
    sim = Sim(agents=2)
    sim.submit(step("a"), step("b"), step("c", "a"))
    sim.settle()
    task_a, task_b = sim.task_of("a"), sim.task_of("b")
    sim.apply(TaskAssigned(agent_id="a1", task_id=task_a, attempt=1))
    sim.apply(WorkflowCancelled(workflow_id=WF, reason="stop"))
    actions = sim.decide()
    assert actions == [
        CancelTask(
            step_id="a", task_id=task_a, attempt=1, agent_id="a1", reason="workflow wf: workflow cancelled"
        ),
        CancelTask(
            step_id="b", task_id=task_b, attempt=1, agent_id="", reason="workflow wf: workflow cancelled"
        ),
    ]
    sim.perform(actions)
    assert sim.decide() == []
    assert {s.status for s in sim.workflow.steps.values()} == {"cancelled"}


def test_cancelling_one_step_cancels_its_task_and_its_dependents_are_skipped() -> None:
    sim = Sim(agents=2)
    sim.submit(step("a"), step("b", "a"), step("c", "a", condition="always"))
    sim.settle()
    sim.apply(WorkflowStepCancelled(workflow_id=WF, step_id="a", reason="not needed"))
    actions = sim.decide()
    assert [type(a) for a in actions] == [CancelTask, Skip, Dispatch]
    assert actions[1] == Skip(step_id="b", reason="dependency 'a' was cancelled")
    assert sim.dispatched(actions) == ["c"]


def test_a_dispatch_without_its_task_is_repaired_by_submitting_once() -> None:
    sim = Sim(agents=2)
    sim.submit(step("a"), step("b"))
    sim.perform(sim.decide(), submit=False)  # the crash: step_dispatched appended, task.submitted not
    repairs = sim.decide()
    assert [type(a) for a in repairs] == [Submit, Submit]
    assert [a.task.task_id for a in repairs if isinstance(a, Submit)] == [sim.task_of("a"), sim.task_of("b")]
    sim.perform(repairs)
    assert sim.decide() == []


def test_redelivered_and_late_facts_change_nothing() -> None:
    sim = Sim(agents=1)
    sim.submit(step("a"), step("b", "a"))
    sim.settle()
    sim.run("a")
    sim.settle()
    before = sim.workflow.steps["a"].status, sim.workflow.steps["b"].status
    task_a = sim.task_of("a")
    sim.apply(
        TaskFailed(task_id=task_a, attempt=1, error="late"),
        WorkflowStepDispatched(workflow_id=WF, step_id="b", task_id="other"),
        WorkflowStepSkipped(workflow_id=WF, step_id="a", reason="late"),
        WorkflowSubmitted(workflow_id=WF, steps=[step("zzz")]),
    )
    assert (sim.workflow.steps["a"].status, sim.workflow.steps["b"].status) == before
    assert sim.workflow.steps["b"].task_id == step_task_id(WF, "b")
    assert list(sim.workflow.steps) == ["a", "b"]


def test_admission_is_first_come_first_served_within_the_limit() -> None:
    sim = Sim()
    for name in ("w1", "w2", "w3"):
        sim.apply(WorkflowSubmitted(workflow_id=name, steps=[step("a")]))
    assert admissions(sim.state.flows, 2) == ["w1", "w2"]
    sim.apply(WorkflowStarted(workflow_id="w1"), WorkflowStarted(workflow_id="w2"))
    assert admissions(sim.state.flows, 2) == []
    sim.apply(WorkflowCancelled(workflow_id="w1"))
    assert admissions(sim.state.flows, 2) == ["w3"]
    assert decide(sim.state, "w3") == [], "a waiting workflow dispatches nothing"


# --- property: any DAG, any outcomes, any mode ---------------------------------------------------------


@st.composite
def workflows(draw: st.DrawFn) -> tuple[list[WorkflowStep], str, str]:
    size = draw(st.integers(min_value=1, max_value=12))
    steps_: list[WorkflowStep] = []
    for index in range(size):
        names = [s.step_id for s in steps_]
        deps = draw(st.lists(st.sampled_from(names), unique=True, max_size=3)) if names else []
        condition = (
            draw(st.sampled_from(["on_success", "on_success", "on_failure", "always"]))
            if deps
            else "on_success"
        )
        steps_.append(
            step(
                f"s{index}",
                *deps,
                condition=condition,
                parallelizable=draw(st.booleans()),
                estimated_duration_minutes=draw(st.integers(0, 5)),
            )
        )
    mode = draw(st.sampled_from(["sequential", "parallel", "adaptive"]))
    goal = draw(st.sampled_from(["minimize_time", "maximize_quality", "balance_all"]))
    return steps_, mode, goal


@settings(max_examples=150, deadline=None)
@given(workflows(), st.lists(st.booleans(), min_size=40, max_size=40), st.randoms(use_true_random=False))
def test_any_workflow_ends_with_every_step_ended_once_and_never_early(
    spec: tuple[list[WorkflowStep], str, str], outcomes: list[bool], rng: Any
) -> None:
    steps_, mode, goal = spec
    sim = Sim(agents=2, capacity=2)
    sim.submit(*steps_, execution_mode=mode, optimization_goal=goal)
    by_name = {s.step_id: s for s in steps_}
    finished = None
    for _ in range(200):
        actions = sim.decide()
        for action in actions:
            if isinstance(action, Dispatch):
                spec_ = by_name[action.task.step_id]
                deps = [sim.workflow.steps[d] for d in spec_.dependencies]
                assert all(d.done for d in deps), f"{spec_.step_id} dispatched before its dependencies ended"
                if spec_.condition == "on_success":
                    assert all(d.status == "completed" for d in deps)
            if isinstance(action, Finish):
                finished = action
        sim.perform(actions)
        in_flight = [s for s in sim.workflow.steps.values() if s.status == "dispatched"]
        if mode == "sequential":
            assert len(in_flight) <= 1
        if any(not s.spec.parallelizable for s in in_flight):
            assert len(in_flight) == 1, "a non-parallelizable step ran alongside another"
        if finished is not None:
            break
        if in_flight and not [a for a in actions if not isinstance(a, Dispatch)]:
            chosen = rng.choice(in_flight)
            sim.run(chosen.step_id, ok=outcomes[sim.seq % len(outcomes)])
    assert finished is not None, "the workflow never finished"
    assert sim.workflow.done
    assert all(s.done for s in sim.workflow.steps.values())
    assert sim.decide() == []
    if finished.status == "completed":
        assert "failed" not in finished.outcomes.values() or any(
            s.spec.condition == "on_failure" and s.status == "completed" for s in sim.workflow.steps.values()
        )


@pytest.mark.parametrize("event_cls", [TaskCompleted, TaskFailed, TaskCancelled])
def test_a_task_outside_any_workflow_concerns_no_workflow(event_cls: type[Any]) -> None:
    sim = Sim()
    sim.submit(step("a"))
    fields: dict[str, Any] = {"task_id": "plain", "attempt": 1}
    if event_cls is TaskCompleted:
        fields["agent_id"] = "a0"
    assert affected(sim.state, event_cls(**fields)) == []
