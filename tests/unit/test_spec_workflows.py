"""The specification's workflow vocabulary, without NATS: templates, execution modes, goals,
resource allocation strategies and the limits a workflow request may set, each doing what the
README's "The specification's names in Hive" says."""

from __future__ import annotations

import typing

import pytest

from services.workflow import policy
from services.workflow.decide import Dispatch, Finish
from shared.domain.workflow_spec import (
    FAULT_TOLERANT_ATTEMPTS,
    TEMPLATE_ALIASES,
    apply_template,
    with_execution_mode,
)
from shared.events import (
    ExecutionMode,
    OptimizationGoal,
    ResourceAllocation,
    RetryPolicy,
    WorkflowStep,
    WorkflowTemplate,
)
from tests.unit.test_workflow_decide import Sim, step


def steps(count: int) -> list[WorkflowStep]:
    return [WorkflowStep(step_id=f"s{index}", task_type="x") for index in range(count)]


def edges(template: WorkflowTemplate, count: int = 5) -> dict[str, list[str]]:
    return {s.step_id: s.dependencies for s in apply_template(template, steps(count))}


# --- templates ----------------------------------------------------------------------------------------


def test_every_template_name_of_the_document_expands_and_the_aliases_expand_as_what_they_name() -> None:
    for template in typing.get_args(WorkflowTemplate):
        apply_template(template, steps(5))
    for alias, name in TEMPLATE_ALIASES.items():
        assert edges(alias) == edges(name), alias
    assert edges("scatter_gather")["s4"] == ["s1", "s2", "s3"]
    assert edges("iterative_refinement")["s3"] == ["s2"]
    assert edges("parallel_execution") == {f"s{i}": [] for i in range(5)}


def test_hierarchical_decomposition_is_a_binary_tree_by_position() -> None:
    assert edges("hierarchical_decomposition", 7) == {
        "s0": [],
        "s1": ["s0"],
        "s2": ["s0"],
        "s3": ["s1"],
        "s4": ["s1"],
        "s5": ["s2"],
        "s6": ["s2"],
    }


def test_fault_tolerant_raises_every_retry_budget_below_its_floor_and_keeps_larger_ones() -> None:
    given = [
        WorkflowStep(step_id="a", task_type="x"),
        WorkflowStep(step_id="b", task_type="x", retry=RetryPolicy(max_attempts=9)),
    ]
    raised = with_execution_mode("fault_tolerant", given)
    assert [s.retry.max_attempts for s in raised] == [FAULT_TOLERANT_ATTEMPTS, 9]
    assert with_execution_mode("adaptive", given) == given


# --- modes, goals, allocation ------------------------------------------------------------------------


def test_every_execution_mode_dispatches_as_sequential_parallel_or_adaptive() -> None:
    for mode in typing.get_args(ExecutionMode):
        assert policy.dispatch_mode(mode) in ("sequential", "parallel", "adaptive")
    assert policy.dispatch_mode("mixed") == "parallel"
    assert policy.dispatch_mode("optimized") == policy.dispatch_mode("fault_tolerant") == "adaptive"


def test_every_goal_and_allocation_strategy_orders_steps_and_asks_the_router_for_something_known() -> None:
    for goal in typing.get_args(OptimizationGoal):
        for allocation in typing.get_args(ResourceAllocation):
            policy.routing_strategy(goal, allocation)
    assert policy.routing_strategy("minimize_risk") == "performance_optimized"
    assert policy.routing_strategy("minimize_cost") is None
    assert policy.routing_strategy("minimize_time", "greedy") == "capability_first"
    assert policy.routing_strategy("maximize_quality", "balanced") == "load_balanced"
    assert policy.routing_strategy("minimize_time", "priority_based") == "load_balanced"


def test_maximize_throughput_takes_the_shortest_step_first_and_priority_based_the_highest_priority() -> None:
    sim = Sim(agents=1)
    sim.submit(
        step("long", estimated_duration_minutes=30.0),
        step("short", estimated_duration_minutes=1.0),
        step("urgent", estimated_duration_minutes=60.0, priority="critical"),
        execution_mode="sequential",
        optimization_goal="maximize_throughput",
    )
    assert sim.dispatched(sim.decide()) == ["short"]
    by_priority = Sim(agents=1)
    by_priority.submit(
        step("long", estimated_duration_minutes=30.0),
        step("short", estimated_duration_minutes=1.0),
        step("urgent", estimated_duration_minutes=60.0, priority="critical"),
        execution_mode="sequential",
        optimization_goal="maximize_throughput",
        resource_allocation="priority_based",
    )
    assert by_priority.dispatched(by_priority.decide()) == ["urgent"]


@pytest.mark.parametrize("mode", ["parallel", "mixed", "adaptive"])
def test_max_concurrent_tasks_caps_the_steps_in_flight_in_every_mode(mode: ExecutionMode) -> None:
    sim = Sim(agents=10, capacity=2)
    sim.submit(*(step(f"s{i}") for i in range(6)), execution_mode=mode, max_concurrent_tasks=2)
    assert len(sim.dispatched(sim.settle())) == 2
    sim.run("s0")
    assert sim.dispatched(sim.settle()) == ["s2"]


def test_the_workflows_threshold_and_deadline_go_to_every_task_it_submits() -> None:
    sim = Sim(agents=1)
    sim.submit(step("a"), quality_threshold=0.8, max_duration_s=600.0)
    dispatch = next(a for a in sim.decide() if isinstance(a, Dispatch))
    assert dispatch.task.expected_quality_threshold == 0.8
    started = sim.workflow.started_ts
    assert dispatch.task.deadline_ts == started + 600.0


# --- failure tolerance ------------------------------------------------------------------------------


def test_a_workflow_completes_when_its_unhandled_failures_stay_within_its_failure_tolerance() -> None:
    tolerant = Sim(agents=4)
    tolerant.submit(*(step(f"s{i}") for i in range(10)), execution_mode="parallel", failure_tolerance=0.1)
    tolerant.settle()
    for index in range(10):
        tolerant.run(f"s{index}", ok=index != 3)
    finish = next(a for a in tolerant.decide() if isinstance(a, Finish))
    assert finish.status == "completed" and "within its failure_tolerance 0.1" in finish.reason
    strict = Sim(agents=4)
    strict.submit(*(step(f"s{i}") for i in range(10)), execution_mode="parallel", failure_tolerance=0.1)
    strict.settle()
    for index in range(10):
        strict.run(f"s{index}", ok=index not in (3, 4))
    finish = next(a for a in strict.decide() if isinstance(a, Finish))
    assert finish.status == "failed", "two of ten is beyond 0.1"
