"""HTTP request and response bodies of the gateway (msgspec; OpenAPI is generated from them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from shared.events import (
    AffinityMode,
    Capability,
    CognitiveStyle,
    Id,
    Key,
    Label,
    LabelRule,
    LabelValue,
    NonNegative,
    Persona,
    PriorityIn,
    RejectedCandidate,
    RetryPolicy,
    RoutingStrategy,
    Unit,
)

ConstraintValue = Annotated[str, Meta(max_length=200)] | int | float | bool


class ErrorBody(msgspec.Struct, kw_only=True):
    status: int
    code: str
    message: str
    field: str | None = None
    details: list[dict[str, Any]] = []


class ErrorResponse(msgspec.Struct, kw_only=True):
    """The one error shape of the API."""

    error: ErrorBody


# --- agents ---------------------------------------------------------------------------------------


class RegisterAgentRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    agent_id: Id | None = None
    name: str = ""
    capabilities: dict[Capability, Unit] | list[Capability]
    persona: Persona = Persona()
    capacity: Annotated[int, Meta(ge=1, le=10_000)] = 1
    metadata: dict[str, str] = {}
    labels: dict[Label, LabelValue] = {}
    """What tasks' labels and label_rules are matched against (e.g. {"gpu": "h100", "region": "eu"})."""


class RegisterAgentResponse(msgspec.Struct, kw_only=True):
    agent_id: str
    session: str
    seq: int


class AgentStallOut(msgspec.Struct, kw_only=True):
    """Why an agent is ``stalled``: it beats, but an assignment stayed unreceived past
    ``STALL_AFTER_S`` by its own heartbeats (``agent.stalled``)."""

    since: float
    """When it was declared stalled (Unix time)."""
    seq: int
    """Sequence of its ``agent.stalled``: it is back once its heartbeat says it received this far."""
    received_seq: int
    """The last inbox sequence its heartbeat said it had taken."""
    pending_seq: int
    """The assignment it had not received."""
    reason: str


class AgentOut(msgspec.Struct, kw_only=True):
    agent_id: str
    name: str
    status: str
    """active, draining, unresponsive, stalled, quarantined or deregistered."""
    capabilities: dict[str, float]
    persona: Persona
    capacity: int
    in_flight: int
    utilisation: float
    assigned_total: int
    completed: int
    failed: int
    labels: dict[str, str] = {}
    last_assigned_seq: int = 0
    """Stream sequence of its last assignment (0: none yet)."""
    stall: AgentStallOut | None = None
    """While stalled, the evidence; null otherwise."""
    last_heartbeat_ts: float | None = None
    """When this gateway last heard the agent's heartbeat (Unix seconds; null: not since it started)."""


# --- tasks ----------------------------------------------------------------------------------------


class TaskAssignRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A task to route. Persona hints describe what the task asks of the agent's cognition."""

    task_id: Id | None = None
    task_type: Capability
    name: str = ""
    description: str = ""
    priority: PriorityIn = "normal"
    """``medium`` (the specification's) is ``normal``."""
    required_capabilities: list[Capability] = []
    preferred_cognitive_style: CognitiveStyle | None = None
    creativity_requirements: Unit = 0.5
    analytical_depth: Unit = 0.5
    collaboration_intensity: Unit = 0.5
    routing_strategy: RoutingStrategy | None = None
    expected_quality_threshold: Unit = 0.0
    payload: dict[str, Any] = {}
    timeout_seconds: Annotated[float, Meta(gt=0, le=86_400)] = 300.0
    retry: RetryPolicy = RetryPolicy()
    deadline_seconds: Annotated[float, Meta(gt=0)] | None = None
    estimated_duration_seconds: NonNegative | None = None
    correlation_id: str = ""
    max_acceptable_delay_minutes: Annotated[float, Meta(ge=1, le=10_080)] | None = None
    """How long the task may wait for an agent predicted to reach its quality threshold before it
    goes to the best available one (default: QUALITY_WAIT_S)."""
    contextual_factors: dict[str, Any] = {}
    """Handed to the agent with the task, as ``payload.contextual_factors``."""
    resource_constraints: dict[str, ConstraintValue] = {}
    """Values the agent's registration metadata must hold (e.g. {"gpu": "a100"})."""
    not_before: Annotated[str, Meta(max_length=64)] | float | None = None
    """A delayed task: no agent gets it before this time (ISO-8601, UTC unless it says otherwise,
    or Unix seconds; at most a year and a day ahead; a time past means at once)."""
    delay_seconds: Annotated[float, Meta(gt=0, le=31_622_400)] | None = None
    """A delayed task: no agent gets it before this many seconds from now (instead of not_before)."""
    concurrency_key: Key | None = None
    """At most the limit of the key's pattern (/api/v1/limits/concurrency, CONCURRENCY_LIMITS) of
    tasks with this key run at once across the fleet (e.g. a repository, a customer)."""
    rate_limit_key: Key | None = None
    """The task takes ``units`` tokens of this key's bucket (/api/v1/limits/rate, RATE_LIMITS)."""
    units: Annotated[int, Meta(ge=1, le=10_000)] = 1
    affinity_key: Key | None = None
    """Tasks with the same key go to the agent that last ran it (a warm cache, a checked-out repository)."""
    affinity: AffinityMode = "soft"
    """soft: that agent is preferred; hard: only that agent (the task waits while it is busy) until it
    is no longer active, then the key moves to the next agent that takes the task."""
    labels: dict[Label, LabelValue] = {}
    """Labels the agent must have, with these values (e.g. {"gpu": "h100", "region": "eu"})."""
    label_rules: list[LabelRule] = []
    """Conditions on the agent's labels: op eq, ne, in (a list), gt/lt/gte/lte (numbers), exists;
    mode require (or no candidate) or prefer (ranks higher by weight)."""


class TaskAssignResponse(msgspec.Struct, kw_only=True):
    task_id: str
    status: Literal["assigned", "queued", "pending", "scheduled"]
    """``scheduled``: a delayed task, routed at ``not_before_ts``."""
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
    success: bool = False
    """An agent was assigned (status assigned)."""
    timestamp: str = ""
    """When this answer was given (ISO-8601 UTC)."""
    not_before_ts: float | None = None
    """A delayed task: when it may start (Unix seconds)."""


class AssignmentOut(msgspec.Struct, kw_only=True):
    agent_id: str
    attempt: int
    seq: int
    ts: float
    strategy: str
    score: float
    breakdown: dict[str, float]
    rejected: list[RejectedCandidate]
    explanation: str


class TaskOut(msgspec.Struct, kw_only=True):
    task_id: str
    task_type: str
    status: str
    attempt: int
    priority: str
    agent_id: str | None
    required_capabilities: list[str]
    submitted_ts: float
    assigned_ts: float | None
    started_ts: float | None
    finished_ts: float | None
    queued_reason: str
    queued_detail: str
    routing_strategy: str | None
    """The strategy the task asked for (None: the router's DEFAULT_ROUTING_STRATEGY)."""
    expected_quality_threshold: float
    last_error: str
    failure_type: str
    progress: float
    result: Any
    quality: float | None
    workflow_id: str | None
    assignments: list[AssignmentOut]
    not_before_ts: float | None = None
    """No agent gets the current attempt before this: a delayed task's start (its status is then
    ``scheduled``), or a retry's backoff."""
    schedule_id: str | None = None
    """The schedule that submitted it."""
    step_id: str | None = None
    """The task's id within its workflow (``workflow_id``), when it is a workflow step."""
    name: str = ""
    submitted_seq: int = 0
    """Stream sequence of its submission: the order of ``GET /api/v1/tasks``."""

    eligible_ts: float | None = None
    """While queued by a rate limit: when its key's bucket holds its units again (tasks ahead with
    the same key may take them first)."""
    concurrency_key: str | None = None
    rate_limit_key: str | None = None
    units: int = 1
    affinity_key: str | None = None
    affinity: str = "soft"
    labels: dict[str, str] = {}
    label_rules: list[LabelRule] = []


class TaskSummary(msgspec.Struct):
    """A task as ``GET /api/v1/tasks`` lists it (``GET /api/v1/tasks/{task_id}`` for the rest).

    Positional, in the order the query model's columns are read (``TASK_SUMMARY_FIELDS``): a page
    is built without a dict per row."""

    task_id: str
    submitted_seq: int
    task_type: str
    name: str
    priority: str
    status: str
    attempt: int
    agent_id: str | None
    workflow_id: str | None
    step_id: str | None
    submitted_ts: float
    assigned_ts: float | None
    started_ts: float | None
    finished_ts: float | None
    quality: float | None
    failure_type: str
    queued_reason: str


class TaskPage(msgspec.Struct, kw_only=True):
    items: list[TaskSummary]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page (older submissions); null on the last page."""


class CancelRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: str = "cancelled by request"


class CancelResponse(msgspec.Struct, kw_only=True):
    task_id: str
    status: str
    seq: int


class EventOut(msgspec.Struct, kw_only=True):
    seq: int
    subject: str
    type: str
    ts: float
    event: dict[str, Any]


class EventPage(msgspec.Struct, kw_only=True):
    items: list[EventOut]
    next_cursor: str | None
    """Pass as ``cursor`` for the next events; null when the log held no more when read."""


# --- health ---------------------------------------------------------------------------------------


class HealthResponse(msgspec.Struct, kw_only=True):
    status: Literal["ok", "degraded"]
    nats: dict[str, Any]
    services: dict[str, list[dict[str, Any]]]
    missing_services: list[str]
    projection_seq: int
    agents: dict[str, int]
    tasks: dict[str, int]
    running: bool = False
    """Every service has an instance that is ready, and NATS is reachable."""
    components: dict[str, str] = {}
    """The specification's components, each ``healthy``, ``starting`` or ``missing`` from the
    services that do its work (see ``COMPONENTS`` in ``services/gateway/health.py``)."""
    uptime_seconds: float = 0.0
    """Since the oldest instance now answering started."""
    integration_mode: str = ""
    timestamp: str = ""
    """When this answer was given (ISO-8601 UTC)."""
