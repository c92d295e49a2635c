"""Templates fill in dependencies by position; checks name the first problem of a workflow."""

from __future__ import annotations

import pytest

from shared.domain.workflow_spec import MAX_STEPS, WorkflowSpecError, apply_template, check_steps, problem_of
from shared.events import WorkflowStep


def steps(*names: str, **deps: list[str]) -> list[WorkflowStep]:
    return [WorkflowStep(step_id=name, task_type="x", dependencies=deps.get(name, [])) for name in names]


def graph(result: list[WorkflowStep]) -> dict[str, list[str]]:
    return {step.step_id: step.dependencies for step in result}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("custom", {"a": [], "b": [], "c": [], "d": []}),
        ("linear_pipeline", {"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}),
        ("parallel_fanout", {"a": [], "b": ["a"], "c": ["a"], "d": ["a"]}),
        ("fan_in", {"a": [], "b": [], "c": [], "d": ["a", "b", "c"]}),
        ("map_reduce", {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}),
    ],
)
def test_each_template_adds_its_edges_by_position(template: str, expected: dict[str, list[str]]) -> None:
    assert graph(apply_template(template, steps("a", "b", "c", "d"))) == expected  # type: ignore[arg-type]


def test_declared_dependencies_are_kept_alongside_the_template_ones() -> None:
    result = apply_template("linear_pipeline", steps("a", "b", "c", c=["a", "b"]))
    assert graph(result) == {"a": [], "b": ["a"], "c": ["a", "b"]}


def test_a_template_refuses_too_few_tasks() -> None:
    with pytest.raises(WorkflowSpecError, match="map_reduce needs at least 3 tasks, got 2") as caught:
        apply_template("map_reduce", steps("a", "b"))
    assert caught.value.field == "tasks"


@pytest.mark.parametrize(
    ("given", "message", "field"),
    [
        ([], "at least one task", "tasks"),
        (steps("a", "b", "a"), "duplicate task id 'a' (tasks[0] and tasks[2])", "tasks[2].task_id"),
        (steps("a", "b", b=["zz"]), "task 'b' depends on unknown task 'zz'", "tasks[1].dependencies"),
        (steps("a", a=["a"]), "task 'a' depends on itself", "tasks[0].dependencies"),
        (
            steps("a", "b", "c", a=["c"], b=["a"], c=["b"]),
            "dependency cycle: a -> c -> b -> a",
            "tasks",
        ),
        (
            [WorkflowStep(step_id="h", task_type="x", condition="on_failure")],
            "condition on_failure but no dependencies",
            "tasks[0].condition",
        ),
        (steps(*(f"s{i}" for i in range(MAX_STEPS + 1))), f"at most {MAX_STEPS} tasks", "tasks"),
    ],
)
def test_a_workflow_that_cannot_run_is_refused_naming_the_problem(
    given: list[WorkflowStep], message: str, field: str
) -> None:
    with pytest.raises(WorkflowSpecError) as caught:
        check_steps(given)
    assert message in caught.value.message
    assert caught.value.field == field
    assert problem_of(given), "a workflow that bypassed the gateway is refused for the same reason"


def test_a_runnable_workflow_has_no_problem() -> None:
    ok = apply_template("fan_in", steps("a", "b", "c"))
    check_steps(ok)
    assert problem_of(ok) == ""
