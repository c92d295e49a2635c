"""A workflow as submitted: templates that fill in dependencies, and the checks it must pass. Pure.

Templates only add dependency edges to the tasks they are given, by position, on top of the
dependencies each task declares (so a template can be refined with extra edges):

* ``custom``: nothing added; the declared dependencies are the graph.
* ``linear_pipeline``: each task depends on the one before it (t1 -> t2 -> ... -> tn).
* ``parallel_fanout``: the first task runs first, every other task depends on it alone.
* ``fan_in``: every task but the last runs at once; the last depends on all of them.
* ``map_reduce``: the first task splits, the middle tasks (maps) depend on it, the last task
  (reduce) depends on every map. Needs at least three tasks.
* ``hierarchical_decomposition``: a binary tree by position: task k depends on task (k - 1) // 2,
  so the first decomposes into the next two, each of those into two more, and so on.

The specification's other template names are these by another name (``TEMPLATE_ALIASES``):
``scatter_gather`` is map_reduce, ``branching_decision`` parallel_fanout (the first task decides,
each branch depends on it and its ``condition`` says when it runs), ``iterative_refinement``
linear_pipeline (each task refines the one before, whose result it receives), and
``parallel_execution`` and ``conditional_workflow`` add nothing (declared dependencies and
conditions are the graph).

The ``fault_tolerant`` execution mode gives every task at least ``FAULT_TOLERANT_ATTEMPTS``
attempts (``with_execution_mode``); like a template, this is written into the steps stored.

The expanded graph is what ``workflow.submitted`` records, so replaying the log never depends on
what a template meant at the time.
"""

from __future__ import annotations

from typing import Final

import msgspec

from shared.domain.dag import find_cycle
from shared.domain.routing.labels import label_rule_problem
from shared.errors import HiveError
from shared.events import ExecutionMode, WorkflowStep, WorkflowTemplate

MAX_STEPS: Final = 1000
"""Steps per workflow: a workflow is one event, and an event must fit in one NATS message."""

MINIMUM_TASKS: Final[dict[str, int]] = {"parallel_fanout": 2, "fan_in": 2, "map_reduce": 3}

TEMPLATE_ALIASES: Final[dict[WorkflowTemplate, WorkflowTemplate]] = {
    "scatter_gather": "map_reduce",
    "branching_decision": "parallel_fanout",
    "iterative_refinement": "linear_pipeline",
    "parallel_execution": "custom",
    "conditional_workflow": "custom",
}

FAULT_TOLERANT_ATTEMPTS: Final = 5
"""Attempts every task of a ``fault_tolerant`` workflow gets at least."""


class WorkflowSpecError(HiveError, ValueError):
    """A workflow that cannot run; ``field`` names the offending part of the request."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _with_dependencies(step: WorkflowStep, extra: list[str]) -> WorkflowStep:
    merged = list(dict.fromkeys([*step.dependencies, *extra]))
    if merged == step.dependencies:
        return step
    return msgspec.structs.replace(step, dependencies=merged)


def apply_template(template: WorkflowTemplate, steps: list[WorkflowStep]) -> list[WorkflowStep]:
    """The steps with the template's edges added (see the module docstring)."""
    template = TEMPLATE_ALIASES.get(template, template)
    needed = MINIMUM_TASKS.get(template, 0)
    if len(steps) < needed:
        raise WorkflowSpecError(
            f"template {template} needs at least {needed} tasks, got {len(steps)}", "tasks"
        )
    ids = [step.step_id for step in steps]
    extra: list[list[str]] = [[] for _ in steps]
    if template == "linear_pipeline":
        for index in range(1, len(steps)):
            extra[index] = [ids[index - 1]]
    elif template == "parallel_fanout":
        for index in range(1, len(steps)):
            extra[index] = [ids[0]]
    elif template == "fan_in":
        extra[-1] = ids[:-1]
    elif template == "map_reduce":
        for index in range(1, len(steps) - 1):
            extra[index] = [ids[0]]
        extra[-1] = ids[1:-1]
    elif template == "hierarchical_decomposition":
        for index in range(1, len(steps)):
            extra[index] = [ids[(index - 1) // 2]]
    return [_with_dependencies(step, more) for step, more in zip(steps, extra, strict=True)]


def with_execution_mode(mode: ExecutionMode, steps: list[WorkflowStep]) -> list[WorkflowStep]:
    """The steps as the execution mode wants them stored: ``fault_tolerant`` raises retry budgets."""
    if mode != "fault_tolerant":
        return steps
    return [
        step
        if step.retry.max_attempts >= FAULT_TOLERANT_ATTEMPTS
        else msgspec.structs.replace(
            step, retry=msgspec.structs.replace(step.retry, max_attempts=FAULT_TOLERANT_ATTEMPTS)
        )
        for step in steps
    ]


def check_steps(steps: list[WorkflowStep], *, list_name: str = "tasks") -> None:
    """Raise WorkflowSpecError naming the first problem: what would make the workflow hang or lie."""
    if not steps:
        raise WorkflowSpecError("a workflow needs at least one task", list_name)
    if len(steps) > MAX_STEPS:
        raise WorkflowSpecError(f"a workflow has at most {MAX_STEPS} tasks, got {len(steps)}", list_name)
    first_seen: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.step_id in first_seen:
            raise WorkflowSpecError(
                f"duplicate task id {step.step_id!r} ({list_name}[{first_seen[step.step_id]}] "
                f"and {list_name}[{index}])",
                f"{list_name}[{index}].task_id",
            )
        first_seen[step.step_id] = index
    for index, step in enumerate(steps):
        check_dependencies(step, first_seen, field=f"{list_name}[{index}]")
    cycle = find_cycle({step.step_id: step.dependencies for step in steps})
    if cycle is not None:
        raise WorkflowSpecError(
            f"dependency cycle: {' -> '.join(cycle)} ('a -> b' means a depends on b)", list_name
        )


def check_dependencies(step: WorkflowStep, known: dict[str, int] | set[str], *, field: str) -> None:
    """A step's own dependency problems: itself, unknown tasks, a condition that can never hold."""
    for dependency in step.dependencies:
        if dependency == step.step_id:
            raise WorkflowSpecError(f"task {step.step_id!r} depends on itself", f"{field}.dependencies")
        if dependency not in known:
            raise WorkflowSpecError(
                f"task {step.step_id!r} depends on unknown task {dependency!r}", f"{field}.dependencies"
            )
    for index, rule in enumerate(step.label_rules):
        problem = label_rule_problem(rule)
        if problem is not None:
            raise WorkflowSpecError(problem, f"{field}.label_rules[{index}]".lstrip("."))
    if step.condition == "on_failure" and not step.dependencies:
        raise WorkflowSpecError(
            f"task {step.step_id!r} has condition on_failure but no dependencies: it could never run",
            f"{field}.condition",
        )


def problem_of(steps: list[WorkflowStep]) -> str:
    """Why these steps cannot run ('' when they can): for workflows that bypassed the gateway."""
    try:
        check_steps(steps, list_name="steps")
    except WorkflowSpecError as exc:
        return exc.message
    return ""
