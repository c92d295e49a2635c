"""HTTP bodies of the workflow endpoints (msgspec; OpenAPI is generated from them)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from shared.domain.workflow_spec import MAX_STEPS
from shared.events import (
    PRIORITY_ALIASES,
    AffinityMode,
    Capability,
    CognitiveStyle,
    ExecutionMode,
    Id,
    Key,
    Label,
    LabelRule,
    LabelValue,
    OptimizationGoal,
    PriorityIn,
    ResourceAllocation,
    RetryPolicy,
    StepCondition,
    TaskProfile,
    Unit,
    WorkflowStep,
    WorkflowTemplate,
)


class WorkflowTaskIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One task of a workflow. Its ``task_id`` names it within the workflow (dependencies use it)."""

    task_id: Id
    task_type: Capability
    name: str = ""
    description: str = ""
    dependencies: list[Id] = []
    required_capabilities: list[Capability] = []
    estimated_duration_minutes: Annotated[float, Meta(ge=0, le=525_600)] = 1.0
    parallelizable: bool = True
    retry: RetryPolicy = RetryPolicy()
    timeout_seconds: Annotated[float, Meta(gt=0, le=86_400)] = 300.0
    condition: StepCondition = "on_success"
    priority: PriorityIn = "normal"
    """``medium`` (the specification's) is ``normal``."""
    preferred_cognitive_style: CognitiveStyle | None = None
    creativity_requirements: Unit = 0.5
    analytical_depth: Unit = 0.5
    collaboration_intensity: Unit = 0.5
    payload: dict[str, Any] = {}
    concurrency_key: Key | None = None
    """As on task/assign: at most the key's limit of tasks with this key run at once, fleet-wide."""
    rate_limit_key: Key | None = None
    """As on task/assign: the step's task takes ``units`` tokens of this key's bucket."""
    units: Annotated[int, Meta(ge=1, le=10_000)] = 1
    affinity_key: Key | None = None
    """As on task/assign: prefer (soft) or require (hard) the agent that last ran the key."""
    affinity: AffinityMode = "soft"
    labels: dict[Label, LabelValue] = {}
    """Labels the agent must have, with these values."""
    label_rules: list[LabelRule] = []
    """Conditions on the agent's labels (require or prefer), as on task/assign."""

    def to_step(self) -> WorkflowStep:
        return WorkflowStep(
            step_id=self.task_id,
            task_type=self.task_type,
            name=self.name,
            description=self.description,
            dependencies=list(dict.fromkeys(self.dependencies)),
            required_capabilities=self.required_capabilities,
            estimated_duration_minutes=self.estimated_duration_minutes,
            parallelizable=self.parallelizable,
            retry=self.retry,
            timeout_s=self.timeout_seconds,
            condition=self.condition,
            priority=PRIORITY_ALIASES.get(self.priority, self.priority),  # type: ignore[arg-type]
            profile=TaskProfile(
                preferred_cognitive_style=self.preferred_cognitive_style,
                creativity_requirements=self.creativity_requirements,
                analytical_depth=self.analytical_depth,
                collaboration_intensity=self.collaboration_intensity,
            ),
            payload=self.payload,
            concurrency_key=self.concurrency_key,
            rate_limit_key=self.rate_limit_key,
            units=self.units,
            affinity_key=self.affinity_key,
            affinity=self.affinity,
            labels=self.labels,
            label_rules=self.label_rules,
        )


class WorkflowExecuteRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    workflow_id: Id | None = None
    name: str = ""
    description: str = ""
    execution_mode: ExecutionMode = "adaptive"
    optimization_goal: OptimizationGoal = "balance_all"
    template: WorkflowTemplate = "custom"
    tasks: Annotated[list[WorkflowTaskIn], Meta(max_length=MAX_STEPS)]
    correlation_id: str = ""
    resource_allocation_strategy: ResourceAllocation = "optimized"
    """How agents are given to its tasks (``optimized``: as the optimization goal says)."""
    max_concurrent_tasks: Annotated[int, Meta(ge=1, le=100)] | None = None
    """At most this many of its tasks in flight at once (default: as the execution mode allows)."""
    max_agents: Annotated[int, Meta(ge=1, le=100)] | None = None
    """At most this many agents work for it at once: caps its tasks in flight like max_concurrent_tasks."""
    max_duration_minutes: Annotated[float, Meta(gt=0, le=525_600)] | None = None
    """Its tasks' deadline, counted from the workflow's start (see README, Workflows)."""
    quality_threshold: Unit = 0.0
    """Every task's expected_quality_threshold."""
    failure_tolerance: Unit = 0.0
    """Share of its tasks that may fail, unhandled, with the workflow still completed."""
    context: dict[str, Any] = {}
    """Handed to every task's agent as ``payload.context``."""


class WorkflowAccepted(msgspec.Struct, kw_only=True):
    workflow_id: str
    status: str
    tasks: int
    dependencies: dict[str, list[str]]
    """Each task's dependencies once the template filled them in."""
    critical_path: list[str]
    estimated_duration_minutes: float
    seq: int


class WorkflowTaskOut(msgspec.Struct, kw_only=True):
    task_id: str
    name: str
    task_type: str
    status: str
    """pending (waiting for dependencies), ready (waiting for its turn), dispatched, queued,
    assigned, running, retrying, completed, failed, skipped or cancelled."""
    reason: str
    dependencies: list[str]
    condition: str
    parallelizable: bool
    priority: str
    estimated_duration_minutes: float
    on_critical_path: bool
    hive_task_id: str | None
    attempt: int | None
    agent_id: str | None
    dispatched_ts: float | None
    started_ts: float | None
    finished_ts: float | None


class WorkflowProgress(msgspec.Struct, kw_only=True):
    total: int
    completed: int
    failed: int
    skipped: int
    cancelled: int
    in_flight: int
    pending: int
    percent: float
    """Share of tasks that have ended, whatever the outcome."""


class WorkflowOut(msgspec.Struct, kw_only=True):
    workflow_id: str
    name: str
    description: str
    status: str
    """waiting (for a slot under MAX_CONCURRENT_WORKFLOWS), running, completed, failed, cancelled."""
    reason: str
    execution_mode: str
    optimization_goal: str
    template: str
    resource_allocation_strategy: str
    max_concurrent_tasks: int | None
    quality_threshold: float
    failure_tolerance: float
    max_duration_minutes: float | None
    submitted_ts: float
    started_ts: float | None
    finished_ts: float | None
    queue_position: int | None
    progress: WorkflowProgress
    critical_path: list[str]
    critical_path_minutes: float
    estimated_remaining_minutes: float
    estimated_finish_ts: float | None
    tasks: list[WorkflowTaskOut]
    seq: int


class WorkflowSummary(msgspec.Struct, kw_only=True):
    workflow_id: str
    name: str
    status: str
    reason: str
    execution_mode: str
    optimization_goal: str
    tasks: int
    percent: float
    submitted_ts: float
    started_ts: float | None
    finished_ts: float | None
    template: str = "custom"
    submitted_seq: int = 0
    """Stream sequence of its submission: the order of the list."""


class WorkflowPage(msgspec.Struct, kw_only=True):
    items: list[WorkflowSummary]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page (older submissions); null on the last page."""


class WorkflowCancelRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: str = "cancelled by request"


class WorkflowChange(msgspec.Struct, kw_only=True):
    workflow_id: str
    task_id: str | None = None
    status: str
    seq: int
