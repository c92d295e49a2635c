"""What the Python client sends and receives: msgspec Structs mirroring the gateway's HTTP bodies.

Requests send only the fields you set (``UNSET`` ones are left out, so the gateway's defaults and
checks apply, and a field the gateway learns later needs no client change: pass a plain dict).
Responses ignore fields they do not know, so a newer gateway does not break an older client.
The gateway's own schemas live with the server (``services/gateway``) and import it; these import
only ``msgspec`` and ``shared.events``' value types. ``tests/integration/test_client.py`` keeps the two
sets of field names equal.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from shared.events import (
    CatchUp,
    CognitiveStyle,
    ExecutionMode,
    FailureTypeIn,
    LoadBalancingStrategy,
    OptimizationGoal,
    Persona,
    PriorityIn,
    RecoveryStrategyIn,
    RejectedCandidate,
    ResourceAllocation,
    RetryPolicy,
    RoutingStrategy,
    ScheduledTask,
    ScheduledWorkflow,
    SeverityIn,
    StepCondition,
    WorkflowTemplate,
)

# --- requests -----------------------------------------------------------------------------------


class Request(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A request body: only the fields set are sent."""


class TaskRequest(Request):
    """A task to route (``POST /orchestration/task/assign``)."""

    task_type: str
    task_id: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    priority: PriorityIn | UnsetType = UNSET
    required_capabilities: list[str] | UnsetType = UNSET
    preferred_cognitive_style: CognitiveStyle | UnsetType = UNSET
    creativity_requirements: float | UnsetType = UNSET
    analytical_depth: float | UnsetType = UNSET
    collaboration_intensity: float | UnsetType = UNSET
    routing_strategy: RoutingStrategy | UnsetType = UNSET
    expected_quality_threshold: float | UnsetType = UNSET
    payload: dict[str, Any] | UnsetType = UNSET
    timeout_seconds: float | UnsetType = UNSET
    retry: RetryPolicy | UnsetType = UNSET
    deadline_seconds: float | UnsetType = UNSET
    estimated_duration_seconds: float | UnsetType = UNSET
    correlation_id: str | UnsetType = UNSET
    max_acceptable_delay_minutes: float | UnsetType = UNSET
    contextual_factors: dict[str, Any] | UnsetType = UNSET
    resource_constraints: dict[str, str | int | float | bool] | UnsetType = UNSET
    not_before: str | float | UnsetType = UNSET
    """A delayed task: no agent gets it before this time (ISO-8601 or Unix seconds)."""
    delay_seconds: float | UnsetType = UNSET
    """A delayed task: no agent gets it before this many seconds from now."""
    concurrency_key: str | UnsetType = UNSET
    """At most its pattern's limit of tasks with this key run at once, across the fleet."""
    rate_limit_key: str | UnsetType = UNSET
    units: int | UnsetType = UNSET
    """Tokens of the rate-limit key's bucket the task takes (default 1)."""
    affinity_key: str | UnsetType = UNSET
    affinity: Literal["soft", "hard"] | UnsetType = UNSET
    labels: dict[str, str] | UnsetType = UNSET
    """Labels the agent must have with these values."""
    label_rules: list[dict[str, Any]] | UnsetType = UNSET
    """``{"label", "op", "value", "mode": "require"|"prefer", "weight"}`` each."""


class AgentRegistration(Request):
    """An agent registered over HTTP (``POST /agents``); its process still heartbeats over NATS."""

    capabilities: dict[str, float] | list[str]
    agent_id: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    persona: Persona | UnsetType = UNSET
    capacity: int | UnsetType = UNSET
    metadata: dict[str, str] | UnsetType = UNSET
    labels: dict[str, str] | UnsetType = UNSET


class WorkflowTask(Request):
    """One task of a workflow; ``task_id`` names it within the workflow (dependencies use it)."""

    task_id: str
    task_type: str
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    dependencies: list[str] | UnsetType = UNSET
    required_capabilities: list[str] | UnsetType = UNSET
    estimated_duration_minutes: float | UnsetType = UNSET
    parallelizable: bool | UnsetType = UNSET
    retry: RetryPolicy | UnsetType = UNSET
    timeout_seconds: float | UnsetType = UNSET
    condition: StepCondition | UnsetType = UNSET
    priority: PriorityIn | UnsetType = UNSET
    preferred_cognitive_style: CognitiveStyle | UnsetType = UNSET
    creativity_requirements: float | UnsetType = UNSET
    analytical_depth: float | UnsetType = UNSET
    collaboration_intensity: float | UnsetType = UNSET
    payload: dict[str, Any] | UnsetType = UNSET
    concurrency_key: str | UnsetType = UNSET
    """As on a task: at most its pattern's limit of tasks with this key run at once."""
    rate_limit_key: str | UnsetType = UNSET
    units: int | UnsetType = UNSET
    affinity_key: str | UnsetType = UNSET
    affinity: Literal["soft", "hard"] | UnsetType = UNSET
    labels: dict[str, str] | UnsetType = UNSET
    label_rules: list[dict[str, Any]] | UnsetType = UNSET


class WorkflowRequest(Request):
    """A DAG of tasks to run (``POST /orchestration/workflow/execute``)."""

    tasks: list[WorkflowTask | dict[str, Any]]
    workflow_id: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    execution_mode: ExecutionMode | UnsetType = UNSET
    optimization_goal: OptimizationGoal | UnsetType = UNSET
    template: WorkflowTemplate | UnsetType = UNSET
    correlation_id: str | UnsetType = UNSET
    resource_allocation_strategy: ResourceAllocation | UnsetType = UNSET
    max_concurrent_tasks: int | UnsetType = UNSET
    max_agents: int | UnsetType = UNSET
    max_duration_minutes: float | UnsetType = UNSET
    quality_threshold: float | UnsetType = UNSET
    failure_tolerance: float | UnsetType = UNSET
    context: dict[str, Any] | UnsetType = UNSET


class FailureEvent(Request):
    """A failure to handle (``POST /orchestration/failure/handle``): recovery picks the strategy."""

    failure_type: FailureTypeIn
    severity: SeverityIn | UnsetType = UNSET
    agent_id: str | UnsetType = UNSET
    task_id: str | UnsetType = UNSET
    workflow_id: str | UnsetType = UNSET
    session_id: str | UnsetType = UNSET
    detail: str | UnsetType = UNSET
    error_message: str | UnsetType = UNSET
    incident_id: str | UnsetType = UNSET
    event_id: str | UnsetType = UNSET
    timestamp: str | float | UnsetType = UNSET
    """ISO-8601 or epoch seconds (format a datetime with ``.isoformat()``)."""
    recovery_strategy: RecoveryStrategyIn | UnsetType = UNSET
    context: dict[str, Any] | UnsetType = UNSET


class ScheduleRequest(Request):
    """A schedule (``POST /schedules``): one of ``cron`` and ``interval_seconds``, one of ``task``
    and ``workflow`` (without their ids: each slot's gets one derived from the schedule and the slot)."""

    schedule_id: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    cron: str | UnsetType = UNSET
    interval_seconds: float | UnsetType = UNSET
    start_at: str | float | UnsetType = UNSET
    catch_up: CatchUp | UnsetType = UNSET
    max_catch_up: int | UnsetType = UNSET
    misfire_grace_seconds: float | UnsetType = UNSET
    task: TaskRequest | dict[str, Any] | UnsetType = UNSET
    workflow: WorkflowRequest | dict[str, Any] | UnsetType = UNSET


class OptimizeRequest(Request):
    request_id: str | UnsetType = UNSET
    dry_run: bool | UnsetType = UNSET
    max_moves: int | UnsetType = UNSET
    unstarted_after_s: float | UnsetType = UNSET
    requested_by: str | UnsetType = UNSET
    strategy: LoadBalancingStrategy | UnsetType = UNSET


# --- responses ----------------------------------------------------------------------------------


class Response(msgspec.Struct, kw_only=True, frozen=True):
    """A response body (fields the client does not know are ignored)."""


class TaskAssignment(Response, frozen=True):
    task_id: str
    status: str
    """assigned, queued (``reason`` and ``detail`` say why) or pending (no decision yet)."""
    attempt: int = 1
    agent_id: str | None = None
    strategy: str | None = None
    score: float | None = None
    breakdown: dict[str, float] = {}
    rejected: list[RejectedCandidate] = []
    explanation: str = ""
    reason: str = ""
    detail: str = ""
    seq: int = 0
    """Pass it as ``after_seq`` to read your own write."""
    success: bool = False
    timestamp: str = ""
    not_before_ts: float | None = None
    """A delayed task (status ``scheduled``): when it may start."""


class Assignment(Response, frozen=True):
    agent_id: str
    attempt: int
    seq: int
    ts: float
    strategy: str
    score: float
    breakdown: dict[str, float] = {}
    rejected: list[RejectedCandidate] = []
    explanation: str = ""


TASK_ENDED = frozenset({"completed", "failed", "cancelled"})


class Task(Response, frozen=True):
    task_id: str
    task_type: str
    status: str
    attempt: int = 1
    priority: str = "normal"
    agent_id: str | None = None
    required_capabilities: list[str] = []
    submitted_ts: float = 0.0
    assigned_ts: float | None = None
    started_ts: float | None = None
    finished_ts: float | None = None
    queued_reason: str = ""
    queued_detail: str = ""
    routing_strategy: str | None = None
    expected_quality_threshold: float = 0.0
    last_error: str = ""
    failure_type: str = ""
    progress: float = 0.0
    result: Any = None
    quality: float | None = None
    workflow_id: str | None = None
    assignments: list[Assignment] = []
    not_before_ts: float | None = None
    schedule_id: str | None = None
    step_id: str | None = None
    name: str = ""
    submitted_seq: int = 0
    eligible_ts: float | None = None
    """While queued by a rate limit: when its key's bucket holds its units again."""
    concurrency_key: str | None = None
    rate_limit_key: str | None = None
    units: int = 1
    affinity_key: str | None = None
    affinity: str = "soft"
    labels: dict[str, str] = {}
    label_rules: list[dict[str, Any]] = []

    @property
    def ended(self) -> bool:
        return self.status in TASK_ENDED


class TaskSummary(Response, frozen=True):
    """A task as ``list_tasks`` pages it (``get_task`` for its decisions and result)."""

    task_id: str
    status: str
    submitted_seq: int = 0
    task_type: str = ""
    name: str = ""
    priority: str = "normal"
    attempt: int = 1
    agent_id: str | None = None
    workflow_id: str | None = None
    step_id: str | None = None
    submitted_ts: float = 0.0
    assigned_ts: float | None = None
    started_ts: float | None = None
    finished_ts: float | None = None
    quality: float | None = None
    failure_type: str = ""
    queued_reason: str = ""


class TaskPage(Response, frozen=True):
    items: list[TaskSummary] = []
    next_cursor: str | None = None
    """Pass as `cursor` for the next page; None on the last."""


class EventRecord(Response, frozen=True):
    """One event of the log as ``events`` pages it: its sequence, subject, type, time and body."""

    seq: int
    subject: str
    type: str
    ts: float = 0.0
    event: dict[str, Any] = {}


class EventPage(Response, frozen=True):
    items: list[EventRecord] = []
    next_cursor: str | None = None


class Cancelled(Response, frozen=True):
    task_id: str
    status: str
    seq: int = 0


class RegisteredAgent(Response, frozen=True):
    agent_id: str
    session: str
    seq: int = 0


class AgentStall(Response, frozen=True):
    """Why an agent is stalled: it beats, but left an assignment unreceived (``agent.stalled``)."""

    since: float = 0.0
    seq: int = 0
    received_seq: int = 0
    pending_seq: int = 0
    reason: str = ""


class Agent(Response, frozen=True):
    agent_id: str
    name: str = ""
    status: str = ""
    capabilities: dict[str, float] = {}
    persona: Persona = Persona()
    capacity: int = 1
    in_flight: int = 0
    utilisation: float = 0.0
    assigned_total: int = 0
    completed: int = 0
    failed: int = 0
    last_assigned_seq: int = 0
    stall: AgentStall | None = None
    """While ``status`` is ``stalled``: why."""
    labels: dict[str, str] = {}
    last_heartbeat_ts: float | None = None
    """When the gateway last heard the agent's heartbeat (None: not since it started)."""


class WorkflowAccepted(Response, frozen=True):
    workflow_id: str
    status: str
    tasks: int = 0
    dependencies: dict[str, list[str]] = {}
    critical_path: list[str] = []
    estimated_duration_minutes: float = 0.0
    seq: int = 0


class WorkflowTaskStatus(Response, frozen=True):
    task_id: str
    name: str = ""
    task_type: str = ""
    status: str = ""
    reason: str = ""
    dependencies: list[str] = []
    condition: str = ""
    parallelizable: bool = True
    priority: str = ""
    estimated_duration_minutes: float = 0.0
    on_critical_path: bool = False
    hive_task_id: str | None = None
    attempt: int | None = None
    agent_id: str | None = None
    dispatched_ts: float | None = None
    started_ts: float | None = None
    finished_ts: float | None = None


class WorkflowProgress(Response, frozen=True):
    total: int = 0
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    in_flight: int = 0
    pending: int = 0
    percent: float = 0.0


WORKFLOW_ENDED = frozenset({"completed", "failed", "cancelled"})


class WorkflowStatus(Response, frozen=True):
    workflow_id: str
    status: str
    name: str = ""
    description: str = ""
    reason: str = ""
    execution_mode: str = ""
    optimization_goal: str = ""
    template: str = ""
    resource_allocation_strategy: str = "optimized"
    max_concurrent_tasks: int | None = None
    quality_threshold: float = 0.0
    failure_tolerance: float = 0.0
    max_duration_minutes: float | None = None
    submitted_ts: float = 0.0
    started_ts: float | None = None
    finished_ts: float | None = None
    queue_position: int | None = None
    progress: WorkflowProgress = WorkflowProgress()
    critical_path: list[str] = []
    critical_path_minutes: float = 0.0
    estimated_remaining_minutes: float = 0.0
    estimated_finish_ts: float | None = None
    tasks: list[WorkflowTaskStatus] = []
    seq: int = 0

    @property
    def ended(self) -> bool:
        return self.status in WORKFLOW_ENDED


class WorkflowSummary(Response, frozen=True):
    workflow_id: str
    status: str
    name: str = ""
    reason: str = ""
    execution_mode: str = ""
    optimization_goal: str = ""
    tasks: int = 0
    percent: float = 0.0
    submitted_ts: float = 0.0
    started_ts: float | None = None
    finished_ts: float | None = None
    template: str = "custom"
    submitted_seq: int = 0


class WorkflowPage(Response, frozen=True):
    items: list[WorkflowSummary] = []
    next_cursor: str | None = None


class WorkflowChange(Response, frozen=True):
    workflow_id: str
    status: str
    task_id: str | None = None
    seq: int = 0


class FailureHandled(Response, frozen=True):
    incident_id: str
    status: str
    """handled (recovery acted; what it did is below) or reported (not yet)."""
    failure_type: str = ""
    severity: str = ""
    strategy: str = ""
    actions: list[str] = []
    escalated: bool = False
    agent_id: str | None = None
    task_ids: list[str] = []
    detail: str = ""
    seq: int = 0
    recovery_success: bool = False
    occurred_at: str | None = None
    handled_timestamp: str = ""
    recovery_metrics: dict[str, Any] = {}
    """handled_in_ms, since_failure_ms, actions_taken, tasks_moved, escalated."""
    system_impact: dict[str, Any] = {}
    """affected_agents/tasks/workflows, capacity_lost, active_agents, fleet_capacity, fleet_load, level."""
    improvement_recommendations: list[str] = []


class OrchestrationMetrics(Response, frozen=True):
    task_assignment_latency_ms: float | None = None
    load_balancing_efficiency: float | None = None
    routing_accuracy_percent: float | None = None
    failure_recovery_time_ms: float | None = None
    system_throughput_tasks_per_second: float | None = None
    workflow_completion_rate: float | None = None


class ScaleAdvice(Response, frozen=True):
    capability: str
    additional_agents: int = 0
    current_agents: int = 0
    current_slots: int = 0
    needed_slots: float = 0.0
    arrival_rate_per_s: float = 0.0
    queue_depth: int = 0
    mean_duration_s: float = 0.0
    reason: str = ""
    ts: float = 0.0


class SystemMetrics(Response, frozen=True):
    active_agents: int = 0
    total_tasks: int = 0
    completed_tasks: int = 0
    failed_tasks: int = 0
    active_workflows: int = 0
    cpu_utilization_percent: float | None = None
    memory_utilization_percent: float | None = None


class Metrics(Response, frozen=True):
    timestamp: str
    """ISO-8601 UTC (``ts``: epoch seconds)."""
    ts: float
    window_s: float
    performance_score: float | None = None
    targets_met: int = 0
    total_targets: int = 0
    orchestration_metrics: OrchestrationMetrics = OrchestrationMetrics()
    samples: dict[str, int] = {}
    percentiles: dict[str, dict[str, float | None]] = {}
    scale_recommendations: list[ScaleAdvice] = []
    seq: int = 0
    system_metrics: SystemMetrics = SystemMetrics()


class HistorySample(Response, frozen=True):
    ts: float
    performance_score: float | None = None
    targets_met: int = 0
    targets_measured: int = 0
    total_targets: int = 0
    orchestration_metrics: dict[str, float | None] = {}
    assignment_latency_p50_ms: float | None = None


class MetricsHistory(Response, frozen=True):
    interval_s: float
    retention_hours: float
    window_s: float
    samples: list[HistorySample] = []


class TargetCheck(Response, frozen=True):
    metric: str
    measured: float | None = None
    target: float = 0.0
    comparison: str = ""
    unit: str = ""
    met: bool | None = None
    attainment: float | None = None
    samples: int = 0
    variable: str = ""
    definition: str = ""


class Validation(Response, frozen=True):
    timestamp: str
    """ISO-8601 UTC (``ts``: epoch seconds)."""
    ts: float
    window_s: float
    status: str
    """met, not_met or no_data."""
    performance_score: float | None = None
    targets_met: int = 0
    targets_measured: int = 0
    total_targets: int = 0
    targets: list[TargetCheck] = []
    seq: int = 0
    overall_score: float | None = None
    target_results: dict[str, bool | None] = {}
    current_metrics: dict[str, float | None] = {}
    performance_targets: dict[str, float] = {}
    improvement_recommendations: list[str] = []
    validation_timestamp: str = ""


class Move(Response, frozen=True):
    task_id: str
    attempt: int
    from_agent_id: str
    to_agent_id: str
    waited_s: float = 0.0
    quality_from: float = 0.0
    quality_to: float = 0.0


class LoadOptimization(Response, frozen=True):
    request_id: str
    status: str
    """done (the balancer answered) or requested (not yet)."""
    dry_run: bool = False
    moves: list[Move] = []
    efficiency_before: float | None = None
    efficiency_after: float | None = None
    notes: list[str] = []
    detail: str = ""
    seq: int = 0


BreakerStatus = Literal["closed", "open", "half_open"]


class CircuitBreaker(Response, frozen=True):
    agent_id: str
    status: str
    agent_status: str = ""
    failure_rate: float = 0.0
    calls: int = 0
    failures: int = 0
    reason: str = ""
    opened_ts: float = 0.0
    retry_after_ts: float = 0.0
    probes_allowed: int = 0
    probes_assigned: int = 0
    probe_successes: int = 0
    probe_failures: int = 0
    times_opened: int = 0
    last_change_ts: float = 0.0


class BreakerPolicy(Response, frozen=True):
    enabled: bool = True
    failure_threshold: float = 0.0
    window_size: int = 0
    window_s: float = 0.0
    min_calls: int = 0
    open_s: float = 0.0
    half_open_probes: int = 0


class CircuitBreakers(Response, frozen=True):
    policy: BreakerPolicy = BreakerPolicy()
    counts: dict[str, int] = {}
    breakers: list[CircuitBreaker] = []


class BreakerResetDone(Response, frozen=True):
    agent_id: str
    status: str
    seq: int = 0


class PredictionFactor(Response, frozen=True):
    name: str
    value: float = 0.0
    weight: float = 0.0
    contribution: float = 0.0
    detail: str = ""


class Prediction(Response, frozen=True):
    agent_id: str
    probability: float
    status: str = ""
    risk: str = ""
    factors: list[PredictionFactor] = []
    note: str = ""


class Predictions(Response, frozen=True):
    generated_ts: float
    heartbeat_interval_s: float = 0.0
    method: str = ""
    predictions: dict[str, float] = {}
    """agent id -> probability of failing within the horizon, riskiest first."""
    forecasts: list[Prediction] = []
    """The same agents riskiest first, with their factors."""
    time_horizon_minutes: float = 30.0
    high_risk_agents: list[str] = []
    prediction_timestamp: str = ""


class Health(Response, frozen=True):
    status: str
    """ok, or degraded (a service missing, NATS unreachable): the gateway answers 503 then."""
    nats: dict[str, Any] = {}
    services: dict[str, list[dict[str, Any]]] = {}
    missing_services: list[str] = []
    projection_seq: int = 0
    agents: dict[str, int] = {}
    tasks: dict[str, int] = {}
    running: bool = False
    components: dict[str, str] = {}
    """The specification's components: healthy, starting or missing."""
    uptime_seconds: float = 0.0
    integration_mode: str = ""
    timestamp: str = ""


class ErrorBody(Response, frozen=True):
    status: int
    code: str
    message: str
    field: str | None = None
    details: list[dict[str, Any]] = []


class ErrorResponse(Response, frozen=True):
    error: ErrorBody


class NextFiring(Response, frozen=True):
    ts: float
    at: str = ""


class Firing(Response, frozen=True):
    slot_ts: float
    target_id: str
    slot: str = ""
    fired_ts: float = 0.0
    late_s: float = 0.0


class Schedule(Response, frozen=True):
    schedule_id: str
    status: str
    """active, paused, deleted or invalid."""
    name: str = ""
    description: str = ""
    reason: str = ""
    problem: str = ""
    cron: str | None = None
    interval_seconds: float | None = None
    start_ts: float | None = None
    catch_up: str = "last"
    max_catch_up: int = 100
    misfire_grace_seconds: float = 60.0
    target: str = "task"
    task: ScheduledTask | None = None
    workflow: ScheduledWorkflow | None = None
    created_ts: float = 0.0
    next_firings: list[NextFiring] = []
    due_since_ts: float | None = None
    fired_total: int = 0
    skipped_total: int = 0
    last_fired_slot_ts: float | None = None
    recent_firings: list[Firing] = []
    seq: int = 0


class ScheduleSummary(Response, frozen=True):
    schedule_id: str
    status: str
    name: str = ""
    cron: str | None = None
    interval_seconds: float | None = None
    target: str = "task"
    next_firing: NextFiring | None = None
    fired_total: int = 0
    last_fired_slot_ts: float | None = None
    created_ts: float = 0.0


class ScheduleChange(Response, frozen=True):
    schedule_id: str
    status: str
    seq: int = 0


class ConcurrencyLimit(Response, frozen=True):
    pattern: str
    max_running: int
    strategy: str = "queue"
    source: str = "api"
    """api, or environment (CONCURRENCY_LIMITS of the gateway's environment)."""


class RateLimit(Response, frozen=True):
    pattern: str
    limit: int
    period_seconds: float = 60.0
    burst: int = 0
    source: str = "api"


class Limits(Response, frozen=True):
    concurrency: list[ConcurrencyLimit] = []
    rate: list[RateLimit] = []


class LimitChange(Response, frozen=True):
    pattern: str
    kind: str
    """concurrency or rate."""
    status: str
    """set or removed."""
    seq: int = 0


class KeyState(Response, frozen=True):
    """What the log says a key holds now."""

    key: str
    concurrency_limit: ConcurrencyLimit | None = None
    running: int = 0
    holders: list[str] = []
    waiting: int = 0
    rate_limit: RateLimit | None = None
    tokens: float | None = None
    affinity_agent: str | None = None
