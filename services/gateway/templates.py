"""From request bodies to what the log stores: a task or a workflow as a template, and a task's start.

``task/assign`` and ``workflow/execute`` turn their bodies into a ``ScheduledTask`` /
``ScheduledWorkflow`` here and into their events with ``shared.domain.schedules``; a schedule
stores the same templates and the workflow service turns them into the same events at each slot.
Every check is made here, before anything is stored, and refused with a 400 naming the field
(prefixed by where the body sits, e.g. ``task.priority`` in a schedule).
"""

from __future__ import annotations

from typing import Final

from services.gateway.errors import ApiError
from services.gateway.schemas import TaskAssignRequest
from services.gateway.timestamps import epoch_of, iso_utc
from services.gateway.workflow_schemas import WorkflowExecuteRequest
from shared.domain.routing.labels import label_rule_problem
from shared.domain.schedules import with_key
from shared.domain.workflow_spec import WorkflowSpecError, apply_template, check_steps, with_execution_mode
from shared.events import PRIORITY_ALIASES, LabelRule, ScheduledTask, ScheduledWorkflow, TaskProfile

MAX_DELAY_S: Final = 366 * 86_400.0
"""How far ahead a task may be delayed (``not_before`` or ``delay_seconds``): a year and a day."""


def constraint_text(value: str | int | float | bool) -> str:
    """A resource constraint as agents' metadata holds values: text (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def task_template(data: TaskAssignRequest, prefix: str = "") -> ScheduledTask:
    """What a task/assign body asks for, less its id and its times."""
    return ScheduledTask(
        task_type=data.task_type,
        name=data.name,
        description=data.description,
        priority=PRIORITY_ALIASES.get(data.priority, data.priority),  # type: ignore[arg-type]
        required_capabilities=data.required_capabilities,
        profile=TaskProfile(
            preferred_cognitive_style=data.preferred_cognitive_style,
            creativity_requirements=data.creativity_requirements,
            analytical_depth=data.analytical_depth,
            collaboration_intensity=data.collaboration_intensity,
        ),
        routing_strategy=data.routing_strategy,
        expected_quality_threshold=data.expected_quality_threshold,
        payload=with_key(data.payload, "contextual_factors", data.contextual_factors),
        timeout_s=data.timeout_seconds,
        retry=data.retry,
        deadline_s=data.deadline_seconds,
        estimated_duration_s=data.estimated_duration_seconds,
        quality_wait_s=(
            data.max_acceptable_delay_minutes * 60 if data.max_acceptable_delay_minutes else None
        ),
        resource_constraints={key: constraint_text(v) for key, v in data.resource_constraints.items()},
        concurrency_key=data.concurrency_key,
        rate_limit_key=data.rate_limit_key,
        units=data.units,
        affinity_key=data.affinity_key,
        affinity=data.affinity,
        labels=data.labels,
        label_rules=_label_rules(data.label_rules, prefix),
    )


def _label_rules(rules: list[LabelRule], prefix: str) -> list[LabelRule]:
    """The rules, each checked against its comparator (400 naming the rule)."""
    for index, rule in enumerate(rules):
        problem = label_rule_problem(rule)
        if problem is not None:
            field = f"{prefix}label_rules[{index}]"
            raise ApiError(400, "invalid_field", f"invalid field '{field}': {problem}", field)
    return rules


def task_start(data: TaskAssignRequest, now: float, prefix: str = "") -> float | None:
    """When a delayed task may start (``not_before``, or ``delay_seconds`` from `now`); None: at once,
    also for a ``not_before`` already past."""
    if data.not_before is not None and data.delay_seconds is not None:
        raise ApiError(
            400,
            "invalid_field",
            f"invalid field '{prefix}not_before': give not_before or delay_seconds, not both",
            f"{prefix}not_before",
        )
    if data.delay_seconds is not None:
        return now + data.delay_seconds
    if data.not_before is None:
        return None
    try:
        start = epoch_of(data.not_before)
    except ValueError as exc:
        raise ApiError(
            400, "invalid_field", f"invalid field '{prefix}not_before': {exc}", f"{prefix}not_before"
        ) from None
    if start > now + MAX_DELAY_S:
        raise ApiError(
            400,
            "invalid_field",
            f"invalid field '{prefix}not_before': {iso_utc(start)} is more than {MAX_DELAY_S / 86_400:g} "
            "days ahead",
            f"{prefix}not_before",
        )
    return start if start > now else None


def workflow_template(data: WorkflowExecuteRequest, prefix: str = "") -> ScheduledWorkflow:
    """What a workflow/execute body asks for, checked in full (the template's edges, every step)."""
    try:
        steps = apply_template(data.template, [task.to_step() for task in data.tasks])
        check_steps(steps)
    except WorkflowSpecError as exc:
        field = f"{prefix}{exc.field}" if exc.field else (prefix.rstrip(".") or None)
        raise ApiError(400, "invalid_workflow", exc.message, field) from None
    caps = [cap for cap in (data.max_concurrent_tasks, data.max_agents) if cap is not None]
    return ScheduledWorkflow(
        name=data.name,
        description=data.description,
        execution_mode=data.execution_mode,
        optimization_goal=data.optimization_goal,
        template=data.template,
        steps=with_execution_mode(data.execution_mode, steps),
        resource_allocation=data.resource_allocation_strategy,
        max_concurrent_tasks=min(caps) if caps else None,
        quality_threshold=data.quality_threshold,
        failure_tolerance=data.failure_tolerance,
        max_duration_s=data.max_duration_minutes * 60 if data.max_duration_minutes else None,
        context=data.context,
    )
