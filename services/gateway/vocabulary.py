"""The values each enumerated request field accepts, to name them when a request uses another.

msgspec refuses an unknown value as ``Invalid enum value 'x' - at `$.field```; the error handler
adds the allowed values from here (lower case: the failure report also takes them upper case).
"""

from __future__ import annotations

import typing
from typing import Any, Final

from shared.events import (
    CatchUp,
    CognitiveStyle,
    ExecutionMode,
    FailureTypeIn,
    LoadBalancingStrategy,
    OptimizationGoal,
    PriorityIn,
    RecoveryStrategyIn,
    ResourceAllocation,
    RoutingStrategy,
    SeverityIn,
    StepCondition,
    WorkflowTemplate,
)


def values_of(literal: Any) -> tuple[str, ...]:
    """The values of a Literal (nested Literals flattened), lower-case spellings only, in order."""
    found: list[str] = []
    for arg in typing.get_args(literal):
        for value in values_of(arg) if typing.get_args(arg) else (arg,):
            if isinstance(value, str) and value == value.lower() and value not in found:
                found.append(value)
    return tuple(found)


ALLOWED: Final[dict[str, tuple[str, ...]]] = {
    "failure_type": values_of(FailureTypeIn),
    "severity": values_of(SeverityIn),
    "recovery_strategy": values_of(RecoveryStrategyIn),
    "routing_strategy": values_of(RoutingStrategy),
    "priority": values_of(PriorityIn),
    "preferred_cognitive_style": values_of(CognitiveStyle),
    "cognitive_style": values_of(CognitiveStyle),
    "execution_mode": values_of(ExecutionMode),
    "optimization_goal": values_of(OptimizationGoal),
    "template": values_of(WorkflowTemplate),
    "resource_allocation_strategy": values_of(ResourceAllocation),
    "condition": values_of(StepCondition),
    "strategy": values_of(LoadBalancingStrategy),
    "catch_up": values_of(CatchUp),
}


def with_allowed_values(message: str, field: str | None) -> str:
    """The validation message, naming the allowed values when it refuses an enumerated value."""
    if field is None or "Invalid enum value" not in message:
        return message
    allowed = ALLOWED.get(field.rsplit(".", 1)[-1])
    return f"{message}; allowed: {', '.join(allowed)}" if allowed else message
