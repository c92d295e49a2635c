"""The event catalogue: every state change in Hive, as one msgspec tagged union.

Rules (the README's Development section, "Conventions"): events are frozen, keyword-only Structs
tagged ``<aggregate>.<event_type>``; a field is added with a default, never repurposed; a breaking
change bumps ``v`` and registers an upcaster in ``UPCASTERS`` so old payloads stay decodable. The
subject of an event is ``hive.evt.<aggregate>.<aggregate_id>.<event_type>``, derived from its tag
and id field; a report on a task (``TaskReport``) adds the agent it speaks for:
``hive.evt.task.<task_id>.<event_type>.<agent_id>``, and a notice to an agent about a task
(``TaskNotice``) the task it is about: ``hive.evt.agent.<agent_id>.<event_type>.<task_id>``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta, field

from shared.errors import HiveError
from shared.ids import ID_PATTERN, new_id
from shared.nesting import MAX_NESTING, openers, value_nests_deeper
from shared.subjects import EVENTS_PREFIX, event_subject, notice_subject_v2, report_subject

# --- shared value types -------------------------------------------------------------------------

Id = Annotated[str, Meta(pattern=ID_PATTERN, description="letters, digits, '_' or '-', 1-64 chars")]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Meta(ge=0.0)]
Capability = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_.:-]+$")]

CognitiveStyle = Literal["analytical", "creative", "pragmatic", "collaborative", "meticulous"]
# Vocabularies only grow: a value stored once must decode forever. The specification's names that
# mean what a Hive name means are either mapped where they are used (routing strategies in
# shared/domain/routing/policy.py, execution modes and goals in services/workflow/policy.py,
# templates in shared/domain/workflow_spec.py) or normalised at the gateway (``medium`` priority,
# failure types such as ``task_execution_error``): the README's "The specification's names in Hive".
RoutingStrategy = Literal[
    "persona_cognitive_match",
    "performance_optimized",
    "load_balanced",
    "capability_first",
    "round_robin",
    "adaptive",
    "performance_weighted_persona",
    "hybrid_intelligence",
    "contextual_adaptive",
    "learning_optimized",
    "specialization_focused",
    "performance_first",
    "priority_aware",
    "persona_optimized",
]
OrchestrationMode = Literal["standard", "high_performance", "fault_tolerant", "energy_efficient", "emergency"]
Priority = Literal["low", "normal", "high", "critical"]
PRIORITY_RANK: Final[dict[str, int]] = {"low": 0, "normal": 1, "high": 2, "critical": 3}
FailureType = Literal[
    "agent_unresponsive",
    "task_timeout",
    "agent_error",
    "resource_exhaustion",
    "network_partition",
    "rebalanced",
    "agent_restarted",
    "deadline_exceeded",
    "performance_degradation",
    "dependency_failure",
    "security_violation",
    "system_overload",
    "agent_stalled",
]
Severity = Literal["info", "low", "medium", "high", "critical"]
RecoveryStrategy = Literal[
    "reassign",
    "retry_with_backoff",
    "quarantine_agent",
    "request_restart",
    "escalate",
    "record_only",
    "immediate_reassignment",
    "graceful_reassignment",
    "circuit_breaker",
    "degraded_service",
    "emergency_shutdown",
    "load_shedding",
    "failover_cluster",
]
ExecutionMode = Literal["sequential", "parallel", "adaptive", "mixed", "optimized", "fault_tolerant"]
OptimizationGoal = Literal[
    "minimize_time",
    "maximize_quality",
    "balance_all",
    "minimize_cost",
    "minimize_risk",
    "maximize_throughput",
]
WorkflowTemplate = Literal[
    "linear_pipeline",
    "parallel_fanout",
    "fan_in",
    "map_reduce",
    "custom",
    "scatter_gather",
    "branching_decision",
    "iterative_refinement",
    "hierarchical_decomposition",
    "parallel_execution",
    "conditional_workflow",
]
LoadBalancingStrategy = Literal[
    "adaptive_hybrid",
    "least_connections",
    "round_robin",
    "weighted_round_robin",
    "capability_aware",
    "performance_based",
]
ResourceAllocation = Literal[
    "optimized", "greedy", "balanced", "priority_based", "performance_weighted", "adaptive_learning"
]
StepCondition = Literal["on_success", "on_failure", "always"]
CatchUp = Literal["none", "last", "all"]
"""What a schedule does with the slots that passed while no workflow service instance could fire
them: skip them all, fire the most recent once, or fire each (the most recent ``max_catch_up``)."""
ScheduleTarget = Literal["task", "workflow"]

# What the HTTP API accepts beyond the stored vocabularies; the gateway turns each into a stored
# value before anything is appended. The failure report takes the specification's enum spellings
# (its Python enums' names, ``AGENT_UNRESPONSIVE``, ``HIGH``) as well as their values.
FAILURE_TYPE_ALIASES: Final[dict[str, FailureType]] = {
    "task_execution_error": "agent_error",
    "communication_failure": "network_partition",
}
PRIORITY_ALIASES: Final[dict[str, Priority]] = {"medium": "normal"}
PriorityIn = Literal[Priority, "medium"]
FailureTypeIn = Literal[
    FailureType,
    "task_execution_error",
    "communication_failure",
    "AGENT_UNRESPONSIVE",
    "TASK_TIMEOUT",
    "AGENT_ERROR",
    "RESOURCE_EXHAUSTION",
    "NETWORK_PARTITION",
    "REBALANCED",
    "AGENT_RESTARTED",
    "DEADLINE_EXCEEDED",
    "PERFORMANCE_DEGRADATION",
    "DEPENDENCY_FAILURE",
    "SECURITY_VIOLATION",
    "SYSTEM_OVERLOAD",
    "AGENT_STALLED",
    "TASK_EXECUTION_ERROR",
    "COMMUNICATION_FAILURE",
]
SeverityIn = Literal[
    Severity,
    "INFO",
    "LOW",
    "MEDIUM",
    "HIGH",
    "CRITICAL",
]
RecoveryStrategyIn = Literal[
    RecoveryStrategy,
    "REASSIGN",
    "RETRY_WITH_BACKOFF",
    "QUARANTINE_AGENT",
    "REQUEST_RESTART",
    "ESCALATE",
    "RECORD_ONLY",
    "IMMEDIATE_REASSIGNMENT",
    "GRACEFUL_REASSIGNMENT",
    "CIRCUIT_BREAKER",
    "DEGRADED_SERVICE",
    "EMERGENCY_SHUTDOWN",
    "LOAD_SHEDDING",
    "FAILOVER_CLUSTER",
]

AlertStatus = Literal["firing", "resolved"]
ConcurrencyStrategy = Literal["queue", "cancel_newest", "cancel_oldest"]
"""What the router does with a task whose concurrency key is at its limit: it waits (keys take
turns), it is cancelled, or the key's oldest running task is cancelled to make room for it."""
AffinityMode = Literal["soft", "hard"]
LabelOp = Literal["eq", "ne", "in", "gt", "lt", "gte", "lte", "exists"]
LabelMode = Literal["require", "prefer"]
Key = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[^\s*?\[\]]+$",
        description="1-128 characters, no spaces or *?[]",
    ),
]
"""A concurrency, rate-limit or affinity key (a repository, a customer, an API)."""
KeyPattern = Annotated[
    str,
    Meta(
        min_length=1, max_length=128, pattern=r"^\S+$", description="a key or a glob (*, ?, [...]), no spaces"
    ),
]
Label = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/-]+$")]
LabelValue = Annotated[str, Meta(max_length=200)]


class Persona(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's cognitive profile."""

    cognitive_style: CognitiveStyle = "pragmatic"
    creativity: Unit = 0.5
    analytical_depth: Unit = 0.5
    collaboration: Unit = 0.5


class TaskProfile(msgspec.Struct, frozen=True, kw_only=True):
    """What a task asks of an agent's persona; None means no preference."""

    preferred_cognitive_style: CognitiveStyle | None = None
    creativity_requirements: Unit = 0.5
    analytical_depth: Unit = 0.5
    collaboration_intensity: Unit = 0.5


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a failed attempt is retried: exponential backoff, then a terminal failure."""

    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 3
    initial_backoff_s: NonNegative = 0.2
    backoff_multiplier: Annotated[float, Meta(ge=1.0, le=10.0)] = 2.0
    max_backoff_s: NonNegative = 30.0


class RejectedCandidate(msgspec.Struct, frozen=True, kw_only=True):
    """An agent the router considered and did not choose, and why."""

    agent_id: str
    score: float = 0.0
    reason: str


class LabelRule(msgspec.Struct, frozen=True, kw_only=True):
    """A condition on an agent's label: required (agents failing it are not candidates) or preferred
    (agents meeting it rank higher by ``weight``). ``in`` takes a list; ``gt``/``lt``/``gte``/``lte``
    compare numbers; ``exists`` needs no value (``label_rule_problem`` says what is wrong)."""

    label: Label
    op: LabelOp = "eq"
    value: LabelValue | float | list[LabelValue] | None = None
    mode: LabelMode = "require"
    weight: Annotated[float, Meta(ge=0, le=100, description="rank gained by meeting a preferred rule")] = 1.0
    # (The description keeps this Meta apart from an equal one written with floats elsewhere:
    # typing caches Annotated by equality, and 100 == 100.0 would make the schema import-order bound.)


class WorkflowStep(msgspec.Struct, frozen=True, kw_only=True):
    """One task of a workflow DAG, as submitted."""

    step_id: Id
    task_type: Capability
    name: str = ""
    description: str = ""
    dependencies: list[Id] = []
    required_capabilities: list[Capability] = []
    estimated_duration_minutes: NonNegative = 1.0
    parallelizable: bool = True
    retry: RetryPolicy = RetryPolicy()
    timeout_s: Annotated[float, Meta(gt=0)] = 300.0
    condition: StepCondition = "on_success"
    priority: Priority = "normal"
    profile: TaskProfile = TaskProfile()
    payload: dict[str, Any] = {}
    concurrency_key: Key | None = None
    """At most the limit of the key's pattern of tasks with this key run at once, across the fleet."""
    rate_limit_key: Key | None = None
    """The step's task takes ``units`` tokens of this key's bucket."""
    units: Annotated[int, Meta(ge=1, le=10_000)] = 1
    affinity_key: Key | None = None
    """Tasks with the same key prefer (``soft``) or must have (``hard``) the agent that last ran it."""
    affinity: AffinityMode = "soft"
    labels: dict[Label, LabelValue] = {}
    """Labels an agent must have with these values (``label_rules`` for comparators and preferences)."""
    label_rules: list[LabelRule] = []


class ScheduledTask(msgspec.Struct, frozen=True, kw_only=True):
    """What a schedule submits at each slot: a task as ``task.submitted`` holds it, less its id and
    times (the deadline is relative: ``deadline_s`` after the firing)."""

    task_type: Capability
    name: str = ""
    description: str = ""
    priority: Priority = "normal"
    required_capabilities: list[Capability] = []
    profile: TaskProfile = TaskProfile()
    routing_strategy: RoutingStrategy | None = None
    expected_quality_threshold: Unit = 0.0
    payload: dict[str, Any] = {}
    timeout_s: Annotated[float, Meta(gt=0)] = 300.0
    retry: RetryPolicy = RetryPolicy()
    deadline_s: Annotated[float, Meta(gt=0)] | None = None
    estimated_duration_s: NonNegative | None = None
    quality_wait_s: NonNegative | None = None
    resource_constraints: dict[str, str] = {}
    concurrency_key: Key | None = None
    """At most the limit of the key's pattern (``system.concurrency_limit_set``, CONCURRENCY_LIMITS)
    of tasks with this key run at once, across the fleet."""
    rate_limit_key: Key | None = None
    """Each attempt takes ``units`` tokens of the key's bucket (``system.rate_limit_set``, RATE_LIMITS)."""
    units: Annotated[int, Meta(ge=1, le=10_000)] = 1
    affinity_key: Key | None = None
    """Tasks with the same key prefer (``soft``) or must have (``hard``) the agent that last ran it."""
    affinity: AffinityMode = "soft"
    labels: dict[Label, LabelValue] = {}
    """Labels an agent must have with these values (``label_rules`` for comparators and preferences)."""
    label_rules: list[LabelRule] = []


class ScheduledWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """What a schedule submits at each slot: a workflow as ``workflow.submitted`` holds it, less its id."""

    name: str = ""
    description: str = ""
    execution_mode: ExecutionMode = "adaptive"
    optimization_goal: OptimizationGoal = "balance_all"
    template: WorkflowTemplate = "custom"
    steps: list[WorkflowStep] = []
    resource_allocation: ResourceAllocation = "optimized"
    max_concurrent_tasks: Annotated[int, Meta(ge=1)] | None = None
    quality_threshold: Unit = 0.0
    failure_tolerance: Unit = 0.0
    max_duration_s: Annotated[float, Meta(gt=0)] | None = None
    context: dict[str, Any] = {}


# --- base ---------------------------------------------------------------------------------------


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event carries. ``id`` is also the ``Nats-Msg-Id`` so retries de-duplicate."""

    id: str = field(default_factory=new_id)
    ts: float = field(default_factory=time.time)
    v: int = 1
    correlation_id: str = ""
    causation_id: str = ""

    AGGREGATE: ClassVar[str] = ""

    @property
    def aggregate_id(self) -> str:
        raise NotImplementedError

    @classmethod
    def type_name(cls) -> str:
        tag = cls.__struct_config__.tag
        assert isinstance(tag, str)
        return tag

    @classmethod
    def event_type(cls) -> str:
        return cls.type_name().split(".", 1)[1]

    @property
    def subject(self) -> str:
        return event_subject(self.AGGREGATE, self.aggregate_id, self.event_type())


class AgentEvent(Event, frozen=True, kw_only=True):
    agent_id: Id
    AGGREGATE: ClassVar[str] = "agent"

    @property
    def aggregate_id(self) -> str:
        return self.agent_id


class TaskEvent(Event, frozen=True, kw_only=True):
    task_id: Id
    AGGREGATE: ClassVar[str] = "task"

    @property
    def aggregate_id(self) -> str:
        return self.task_id


class WorkflowEvent(Event, frozen=True, kw_only=True):
    workflow_id: Id
    AGGREGATE: ClassVar[str] = "workflow"

    @property
    def aggregate_id(self) -> str:
        return self.workflow_id


class BreakerEvent(Event, frozen=True, kw_only=True):
    """Circuit breaker of one agent; the aggregate id is the agent id."""

    agent_id: Id
    AGGREGATE: ClassVar[str] = "breaker"

    @property
    def aggregate_id(self) -> str:
        return self.agent_id


class SystemEvent(Event, frozen=True, kw_only=True):
    """Fleet-wide facts; ``scope`` names the instance (an incident id, a capability, ...)."""

    scope: Id
    AGGREGATE: ClassVar[str] = "system"

    @property
    def aggregate_id(self) -> str:
        return self.scope


# --- agent --------------------------------------------------------------------------------------


class AgentRegistered(AgentEvent, frozen=True, kw_only=True, tag="agent.registered"):
    """An agent (re)joins. A new ``session`` means a new process: old in-flight work is gone."""

    v: int = 2
    name: str = ""
    capabilities: dict[Capability, Unit] = {}
    persona: Persona = Persona()
    capacity: Annotated[int, Meta(ge=1, le=10_000)] = 1
    session: str = ""
    metadata: dict[str, str] = {}
    labels: dict[Label, LabelValue] = {}
    """What tasks' ``labels`` and ``label_rules`` are matched against."""


class AgentDraining(AgentEvent, frozen=True, kw_only=True, tag="agent.draining"):
    """The agent finishes what it holds and takes nothing new."""

    session: str = ""


class AgentDeregistered(AgentEvent, frozen=True, kw_only=True, tag="agent.deregistered"):
    session: str = ""
    reason: str = ""


class AgentUnresponsive(AgentEvent, frozen=True, kw_only=True, tag="agent.unresponsive"):
    """No heartbeat for too long, or its connection closed: the attempts it held are reassigned."""

    session: str = ""
    last_seen_ts: float = 0.0
    missed_heartbeats: int = 0
    reason: str = ""
    in_flight: dict[str, int] = {}
    """task id -> attempt the agent held when it was declared unresponsive (what recovery requeues)."""


class AgentStalled(AgentEvent, frozen=True, kw_only=True, tag="agent.stalled"):
    """The agent beats but does not take its assignments: an assignment the log holds for its
    session stayed unreceived, by its own heartbeats, for longer than the bound. It gets no new work
    until its beats show it received this event (``agent.recovered``); the attempts it never
    received are reassigned."""

    session: str = ""
    received_seq: int = 0
    """The last inbox sequence the agent said it took (its heartbeat's ``received_seq``)."""
    pending_seq: int = 0
    """The assignment it had not received (the agent's last one when the wait began)."""
    behind_since_ts: float = 0.0
    """When recovery first saw that assignment pending (its own clock)."""
    waited_s: float = 0.0
    reason: str = ""
    unreceived: dict[str, int] = {}
    """task id -> attempt the agent holds but never received (not started): what recovery moves."""


class AgentRecovered(AgentEvent, frozen=True, kw_only=True, tag="agent.recovered"):
    """Heartbeats are back, a quarantine is over or a stalled agent caught up: it may take work again."""

    session: str = ""
    reason: str = ""


class AgentQuarantined(AgentEvent, frozen=True, kw_only=True, tag="agent.quarantined"):
    """No new work until ``until_ts`` (recovery then appends ``agent.recovered``)."""

    reason: str = ""
    until_ts: float = 0.0
    incident_id: str = ""


class AgentRestartRequested(AgentEvent, frozen=True, kw_only=True, tag="agent.restart_requested"):
    """The agent should restart (the SDK re-registers under a new session); its work was reassigned."""

    reason: str = ""
    session: str = ""
    """The session to restart; a newer session of the agent ignores the request."""
    incident_id: str = ""


class TaskNotice(AgentEvent, frozen=True, kw_only=True):
    """What Hive tells an agent about one attempt of a task (its assignment, a request to stop it).

    Version 3 lives on ``hive.evt.agent.<agent_id>.<event_type>``, the task only in the body: on
    the agent's aggregate (its appends are serialised per agent, guarded by the agent's last
    sequence, which the server finds by walking the agent's subjects: one per notice type, however
    many tasks the agent had). Version 2 (a sixth token naming the task) and version 1 (five tokens)
    are read where they were stored; a version that contradicts its subject is refused
    (``stored_on``). A task's story finds them by its life window (``shared/story.py``).
    """

    v: int = 3
    task_id: Id
    attempt: int


class TaskAssigned(TaskNotice, frozen=True, kw_only=True, tag="agent.task_assigned"):
    """The router gives attempt ``attempt`` of a task to an agent.

    Lives on the agent aggregate so that appends are serialised per agent (capacity is never
    exceeded) and so the agent receives its assignments from one subject. ``task_seq`` is the last
    sequence of the task aggregate the router saw: the agent appends ``task.started`` against it.
    """

    task_id: Id
    attempt: int
    task_seq: int = 0
    session: str = ""
    """The agent session the router saw; a new session of the agent ignores older assignments."""
    task_type: str = ""
    payload: dict[str, Any] = {}
    timeout_s: float = 300.0
    strategy: str = ""
    score: float = 0.0
    breakdown: dict[str, float] = {}
    rejected: list[RejectedCandidate] = []
    explanation: str = ""
    decided_at_seq: int = 0
    """The stream sequence the router's view had applied when it decided (0: not recorded): with
    it, the decision can be re-run on exactly the state it saw."""
    decided_at_ts: float = 0.0
    """The clock the decision read (deadlines weigh in the score)."""
    mode: str = ""
    """ORCHESTRATION_MODE of the router that decided."""
    assumed: list[str] = []
    """Agents of the router's own earlier assignments that its view had not applied yet when it
    decided, in the order it made them: the decision counted them as given (re-running it applies
    them to the view at ``decided_at_seq``: ``services/router/overlay.py``)."""
    decided_by: str = ""
    """The router instance that decided (empty: recorded before instances were named). A tie
    taken in that instance's own order (``tie_in_own_order`` in the breakdown) is re-run in it."""
    passed_over: list[str] = []
    """Contenders the tie passed over because other router instances had just given them work
    (``tie_avoided_rival_agent`` in the breakdown): what no other event says, so a re-run can count
    them as that decision did."""


class TaskCancelRequested(TaskNotice, frozen=True, kw_only=True, tag="agent.task_cancel_requested"):
    """Tells an agent to stop working on a task it holds."""

    task_id: Id
    attempt: int
    reason: str = ""


# --- task ---------------------------------------------------------------------------------------


class TaskSubmitted(TaskEvent, frozen=True, kw_only=True, tag="task.submitted"):
    task_type: Capability
    name: str = ""
    description: str = ""
    priority: Priority = "normal"
    required_capabilities: list[Capability] = []
    profile: TaskProfile = TaskProfile()
    routing_strategy: RoutingStrategy | None = None
    expected_quality_threshold: Unit = 0.0
    payload: dict[str, Any] = {}
    timeout_s: Annotated[float, Meta(gt=0)] = 300.0
    retry: RetryPolicy = RetryPolicy()
    deadline_ts: float | None = None
    estimated_duration_s: NonNegative | None = None
    workflow_id: str | None = None
    step_id: str | None = None
    submitted_by: str = ""
    quality_wait_s: NonNegative | None = None
    """How long the task, without a deadline, waits for an agent predicted to reach its quality
    threshold before it goes to the best available one (None: the router's QUALITY_WAIT_S)."""
    resource_constraints: dict[str, str] = {}
    """Values an agent's registration ``metadata`` must hold to take the task (key: value)."""
    not_before_ts: float | None = None
    """A delayed task: no agent gets it before this time (None: at once)."""
    schedule_id: str | None = None
    """The schedule that submitted it (``system.schedule_fired`` names the slot)."""
    concurrency_key: Key | None = None
    """At most the limit of the key's pattern (``system.concurrency_limit_set``, CONCURRENCY_LIMITS)
    of tasks with this key run at once, across the fleet."""
    rate_limit_key: Key | None = None
    """Each attempt takes ``units`` tokens of the key's bucket (``system.rate_limit_set``, RATE_LIMITS)."""
    units: Annotated[int, Meta(ge=1, le=10_000)] = 1
    affinity_key: Key | None = None
    """Tasks with the same key prefer (``soft``) or must have (``hard``) the agent that last ran it."""
    affinity: AffinityMode = "soft"
    labels: dict[Label, LabelValue] = {}
    """Labels an agent must have with these values (``label_rules`` for comparators and preferences)."""
    label_rules: list[LabelRule] = []


class TaskQueued(TaskEvent, frozen=True, kw_only=True, tag="task.queued"):
    """No agent fits now; the task waits and is assigned as soon as one frees up."""

    attempt: int
    reason: str
    detail: str = ""
    eligible_ts: float | None = None
    """The earliest time the task may start, when the router knows it (a rate limit's next tokens)."""


class TaskReport(TaskEvent, frozen=True, kw_only=True):
    """A report on one attempt of a task, by the agent holding it (recovery appends
    ``attempt_failed`` on its behalf: timeouts, lost agents).

    Version 2 lives on ``hive.evt.task.<task_id>.<event_type>.<agent_id>``: an agent's NATS user may
    publish reports only on subjects ending in its own id, and a body naming another agent than its
    subject is refused by every reader, so ``agent_id`` is who the server let speak, not a claim.
    Version 1 (appended before, on the five-token subject) is read as it was stored. Whatever the
    version, projections apply a report only from the agent holding that attempt
    (``shared/domain/fleet.py``: ``report_from_holder``).
    """

    v: int = 2
    agent_id: str
    attempt: int

    @property
    def subject(self) -> str:
        return report_subject(self.task_id, self.event_type(), self.agent_id)


class TaskStarted(TaskReport, frozen=True, kw_only=True, tag="task.started"):
    agent_id: Id
    attempt: int
    session: str = ""


class TaskProgress(TaskReport, frozen=True, kw_only=True, tag="task.progress"):
    agent_id: Id
    attempt: int
    percent: Annotated[float, Meta(ge=0, le=100)] = 0.0
    message: str = ""


class TaskCompleted(TaskReport, frozen=True, kw_only=True, tag="task.completed"):
    agent_id: Id
    attempt: int
    result: Any = None
    duration_s: float = 0.0
    quality: Unit | None = None


class TaskAttemptFailed(TaskReport, frozen=True, kw_only=True, tag="task.attempt_failed"):
    """One attempt failed; the retry policy decides between a requeue and a terminal failure."""

    agent_id: str = ""
    attempt: int
    error: str = ""
    failure_type: FailureType = "agent_error"
    retryable: bool = True
    duration_s: float = 0.0


class TaskRequeued(TaskEvent, frozen=True, kw_only=True, tag="task.requeued"):
    """A new attempt: the previous one is superseded (its results are refused)."""

    attempt: int
    previous_agent_id: str = ""
    reason: str = ""
    not_before_ts: float = 0.0
    preferred_agent_id: str | None = None
    excluded_agent_ids: list[str] = []


class TaskFailed(TaskEvent, frozen=True, kw_only=True, tag="task.failed"):
    """Terminal: the task failed after its retries."""

    attempt: int
    error: str = ""
    failure_type: FailureType = "agent_error"


class TaskCancelled(TaskEvent, frozen=True, kw_only=True, tag="task.cancelled"):
    """Terminal: the task was cancelled."""

    reason: str = ""
    agent_id: str = ""
    attempt: int = 0


# --- workflow -----------------------------------------------------------------------------------


class WorkflowSubmitted(WorkflowEvent, frozen=True, kw_only=True, tag="workflow.submitted"):
    name: str = ""
    description: str = ""
    execution_mode: ExecutionMode = "adaptive"
    optimization_goal: OptimizationGoal = "balance_all"
    template: WorkflowTemplate = "custom"
    steps: list[WorkflowStep] = []
    resource_allocation: ResourceAllocation = "optimized"
    """How agents are given to its tasks (``optimized``: as the goal says)."""
    max_concurrent_tasks: Annotated[int, Meta(ge=1)] | None = None
    """At most this many of its tasks in flight at once (None: as the execution mode allows)."""
    quality_threshold: Unit = 0.0
    """Every task's ``expected_quality_threshold``."""
    failure_tolerance: Unit = 0.0
    """Share of its tasks that may fail, unhandled, with the workflow still completed."""
    max_duration_s: Annotated[float, Meta(gt=0)] | None = None
    """Its tasks' deadline: this long after the workflow started."""
    context: dict[str, Any] = {}
    """Handed to the agent of each of its tasks as ``payload.context``."""
    schedule_id: str | None = None
    """The schedule that submitted it (``system.schedule_fired`` names the slot)."""


class WorkflowStarted(WorkflowEvent, frozen=True, kw_only=True, tag="workflow.started"):
    """The workflow got one of the MAX_CONCURRENT_WORKFLOWS slots: its steps may now be dispatched.

    Appended against the last ``hive.evt.workflow.*.started`` of all workflows, so racing workflow
    service instances cannot hand out more slots than there are.
    """

    running: int = 0
    """Workflows running once this one started (this one included), as the deciding instance saw."""


class WorkflowStepAdded(WorkflowEvent, frozen=True, kw_only=True, tag="workflow.step_added"):
    step: WorkflowStep


class WorkflowStepDispatched(WorkflowEvent, frozen=True, kw_only=True, tag="workflow.step_dispatched"):
    step_id: Id
    task_id: Id


class WorkflowStepSkipped(WorkflowEvent, frozen=True, kw_only=True, tag="workflow.step_skipped"):
    step_id: Id
    reason: str = ""


class WorkflowStepCancelled(WorkflowEvent, frozen=True, kw_only=True, tag="workflow.step_cancelled"):
    step_id: Id
    reason: str = ""


class WorkflowCompleted(WorkflowEvent, frozen=True, kw_only=True, tag="workflow.completed"):
    summary: dict[str, int] = {}
    outcomes: dict[str, str] = {}
    """step id -> how it ended, so the workflow's own events tell its whole story."""


class WorkflowFailed(WorkflowEvent, frozen=True, kw_only=True, tag="workflow.failed"):
    reason: str = ""
    summary: dict[str, int] = {}
    outcomes: dict[str, str] = {}


class WorkflowCancelled(WorkflowEvent, frozen=True, kw_only=True, tag="workflow.cancelled"):
    reason: str = ""


# --- breaker ------------------------------------------------------------------------------------


class BreakerOpened(BreakerEvent, frozen=True, kw_only=True, tag="breaker.opened"):
    failure_rate: float = 0.0
    calls: int = 0
    reason: str = ""
    retry_after_ts: float = 0.0


class BreakerHalfOpened(BreakerEvent, frozen=True, kw_only=True, tag="breaker.half_opened"):
    probes_allowed: int = 1


class BreakerClosed(BreakerEvent, frozen=True, kw_only=True, tag="breaker.closed"):
    reason: str = ""


class BreakerReset(BreakerEvent, frozen=True, kw_only=True, tag="breaker.reset"):
    """Manual reset by an operator: back to closed with an empty window."""

    requested_by: str = ""


# --- system -------------------------------------------------------------------------------------


class FailureReported(SystemEvent, frozen=True, kw_only=True, tag="system.failure_reported"):
    """An operator or a service reports a failure; ``scope`` is the incident id."""

    failure_type: FailureType
    severity: Severity = "medium"
    agent_id: str | None = None
    task_id: str | None = None
    detail: str = ""
    strategy: RecoveryStrategy | None = None
    """The strategy asked for (None: the table's for the type and severity)."""
    workflow_id: str | None = None
    """The failure concerns this workflow: the attempts in question are its tasks in flight."""
    session: str | None = None
    """The agent session the failure was seen in: if the agent restarted since, its new session is
    left alone."""
    occurred_ts: float | None = None
    """When the failure happened, as the reporter says (``ts`` is when it was reported)."""
    context: dict[str, Any] = {}


class RecoveryActionTaken(SystemEvent, frozen=True, kw_only=True, tag="system.recovery_action"):
    """What recovery did about an incident; ``scope`` is the incident id."""

    strategy: str
    agent_id: str | None = None
    task_ids: list[str] = []
    detail: str = ""
    failure_type: str = ""
    severity: str = ""
    actions: list[str] = []
    """What was done, in order (e.g. quarantine_agent, reassign, alert)."""
    escalated: bool = False
    """True when a human must look at the incident."""


class ScaleRecommended(SystemEvent, frozen=True, kw_only=True, tag="system.scale_recommended"):
    """The balancer's advice for one task type (``capability``); appended only when it changes.

    ``scope`` is derived from the capability (``scale-<capability>``, made a valid id).
    """

    capability: str
    current_agents: int = 0
    additional_agents: int = 0
    arrival_rate_per_s: float = 0.0
    queue_depth: int = 0
    reason: str = ""
    current_slots: int = 0
    """Capacity of the active agents offering the capability (breaker not open)."""
    needed_slots: float = 0.0
    """Slots that would keep up with the arrivals at the target utilisation and drain the queue."""
    mean_duration_s: float = 0.0
    """Duration of one task of this type the advice assumed."""


class RebalanceRequested(SystemEvent, frozen=True, kw_only=True, tag="system.rebalance_requested"):
    """An operator asks the balancer to look now (``POST .../load-balancing/optimize``).

    ``scope`` is the request id; the balancer answers with ``system.load_rebalanced`` on the same scope.
    """

    dry_run: bool = False
    max_moves: int = 100
    unstarted_after_s: float | None = None
    """Move attempts not started after this long (None: the balancer's REBALANCE_AFTER_S)."""
    requested_by: str = ""
    strategy: LoadBalancingStrategy = "adaptive_hybrid"
    """How a move's target is chosen among the agents that could take it."""


class LoadRebalanced(SystemEvent, frozen=True, kw_only=True, tag="system.load_rebalanced"):
    """What the balancer moved (or, for a dry run, would move), and the load's evenness around it.

    Each move: ``task_id``, ``from_agent_id``, ``to_agent_id``, ``attempt`` (the new one), ``waited_s``
    (how long the attempt had waited unstarted), ``quality_from`` / ``quality_to`` (predicted).
    """

    moves: list[dict[str, str]] = []
    efficiency_before: float = 0.0
    efficiency_after: float = 0.0
    dry_run: bool = False
    trigger: str = ""
    """``auto`` (the balancer's own tick) or ``request`` (an optimize request)."""
    notes: list[str] = []
    """Why work that waits was left where it is (no capable idle agent, quality, ...)."""


class PerformanceAlert(SystemEvent, frozen=True, kw_only=True, tag="system.performance_alert"):
    """A performance target stopped being met (``firing``) or is met again (``resolved``).

    ``scope`` is ``target-<metric>``; appended by the gateway's monitor only when the state changes
    (ENABLE_PERFORMANCE_ALERTS), so the log holds one firing and one resolved per episode.
    """

    metric: str
    status: AlertStatus
    measured: float | None = None
    target: float = 0.0
    comparison: str = ""
    """``<`` (an upper bound) or ``>=`` (a lower bound)."""
    unit: str = ""
    variable: str = ""
    """The environment variable that sets the target."""
    window_s: float = 0.0
    samples: int = 0
    detail: str = ""


class ScheduleEvent(SystemEvent, frozen=True, kw_only=True):
    """An event of one schedule; ``scope`` is ``sched-<schedule id>`` (``schedule_scope``), so a
    schedule's id never meets an incident's or a request's on the system aggregate."""

    @property
    def schedule_id(self) -> str:
        return self.scope.removeprefix(SCHEDULE_SCOPE_PREFIX)


SCHEDULE_SCOPE_PREFIX: Final = "sched-"


def schedule_scope(schedule_id: str) -> str:
    """The system aggregate id of a schedule."""
    return f"{SCHEDULE_SCOPE_PREFIX}{schedule_id}"


class ScheduleCreated(ScheduleEvent, frozen=True, kw_only=True, tag="system.schedule_created"):
    """A schedule: when (a cron expression or a fixed interval, UTC) and what (a task or a workflow).

    Its slots are the times the expression or the interval names after its creation (and at or
    after ``start_ts``); the workflow service fires each once (``system.schedule_fired``).
    """

    name: str = ""
    description: str = ""
    cron: str = ""
    """Five fields, UTC (minute hour day-of-month month day-of-week); empty with an interval."""
    interval_s: Annotated[float, Meta(gt=0)] | None = None
    """Slots every this many seconds, counted from ``start_ts`` (else from the Unix epoch)."""
    start_ts: float | None = None
    """No slot before this time; with an interval, the first slot."""
    catch_up: CatchUp = "last"
    max_catch_up: Annotated[int, Meta(ge=1)] = 100
    """With ``catch_up`` ``all``: at most this many missed slots fire (the most recent ones)."""
    misfire_grace_s: NonNegative = 60.0
    """With ``catch_up`` ``none``: a slot fires up to this long after its time, later it is missed."""
    target: ScheduleTarget = "task"
    task: ScheduledTask | None = None
    workflow: ScheduledWorkflow | None = None
    created_by: str = ""


class SchedulePaused(ScheduleEvent, frozen=True, kw_only=True, tag="system.schedule_paused"):
    """No slot fires until resumed; the slots of the pause are skipped, whatever ``catch_up`` says."""

    reason: str = ""


class ScheduleResumed(ScheduleEvent, frozen=True, kw_only=True, tag="system.schedule_resumed"):
    """Slots after this time fire again."""

    reason: str = ""


class ScheduleDeleted(ScheduleEvent, frozen=True, kw_only=True, tag="system.schedule_deleted"):
    """No slot fires again; a target already fired is still submitted. The id is not reused."""

    reason: str = ""


class ScheduleFired(ScheduleEvent, frozen=True, kw_only=True, tag="system.schedule_fired"):
    """One slot fired: its task or workflow (id ``target_id``, derived from the schedule and the
    slot) is submitted right after. Appended against the schedule's last sequence, with the message
    id ``fire:<schedule>:<slot ms>``, so however many instances decide it, it is stored once."""

    slot_ts: float
    target_id: Id
    target: ScheduleTarget = "task"
    late_s: NonNegative = 0.0
    """How long after the slot's time it fired."""


class ScheduleSkipped(ScheduleEvent, frozen=True, kw_only=True, tag="system.schedule_skipped"):
    """Slots that came due while no instance could fire them and that the catch-up policy skips."""

    first_slot_ts: float
    last_slot_ts: float
    slots: int = 1
    """How many (counted up to ``MAX_COUNTED_SLOTS``, 10,000)."""
    reason: str = ""


class ConcurrencyLimitSet(SystemEvent, frozen=True, kw_only=True, tag="system.concurrency_limit_set"):
    """At most ``max_running`` tasks of each key matching ``pattern`` run at once (scope
    ``limit_scope("concurrency", pattern)``); replaces the pattern's earlier limit and CONCURRENCY_LIMITS'."""

    pattern: KeyPattern
    max_running: Annotated[int, Meta(ge=1, le=100_000)]
    strategy: ConcurrencyStrategy = "queue"


class ConcurrencyLimitRemoved(SystemEvent, frozen=True, kw_only=True, tag="system.concurrency_limit_removed"):
    pattern: KeyPattern


class RateLimitSet(SystemEvent, frozen=True, kw_only=True, tag="system.rate_limit_set"):
    """A token bucket per key matching ``pattern``: ``limit`` units per ``period_s``, up to ``burst``
    (default ``limit``) at once."""

    pattern: KeyPattern
    limit: Annotated[int, Meta(ge=1, le=1_000_000)]
    period_s: Annotated[float, Meta(gt=0, le=31_622_400)] = 60.0
    burst: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None


class RateLimitRemoved(SystemEvent, frozen=True, kw_only=True, tag="system.rate_limit_removed"):
    pattern: KeyPattern


class KeySlotClaimed(SystemEvent, frozen=True, kw_only=True, tag="system.key_slot_claimed"):
    """A task attempt takes one of its concurrency key's slots before it is assigned; appended
    against the key's last sequence (scope ``key_scope("concurrency", key)``), so racing routers
    cannot both take the last slot. The slot is free again when the attempt ends or is requeued."""

    key: Key
    task_id: Id
    attempt: int
    max_running: int = 0
    running: int = 0
    """Slots of the key taken before this one, as the router counted them."""


class RateTokensTaken(SystemEvent, frozen=True, kw_only=True, tag="system.rate_tokens_taken"):
    """A task attempt takes ``units`` tokens of its rate-limit key's bucket, appended against the
    key's last sequence (scope ``key_scope("rate", key)``). ``tokens_left`` is the bucket after, at
    ``ts``: the next taker computes its refill from it."""

    key: Key
    task_id: Id
    attempt: int
    units: int = 1
    tokens_left: float = 0.0
    limit: int = 0
    period_s: float = 0.0
    burst: int = 0


LIMIT_SCOPE_PREFIXES: Final[dict[str, str]] = {"concurrency": "climit-", "rate": "rlimit-"}
KEY_SCOPE_PREFIXES: Final[dict[str, str]] = {"concurrency": "ckey-", "rate": "rkey-"}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def limit_scope(kind: Literal["concurrency", "rate"], pattern: str) -> str:
    """The system aggregate id of a limit (patterns may hold any character: their digest)."""
    return f"{LIMIT_SCOPE_PREFIXES[kind]}{_digest(pattern)}"


def key_scope(kind: Literal["concurrency", "rate"], key: str) -> str:
    """The system aggregate id of a key's claims: one per key, so a claim is appended against it."""
    return f"{KEY_SCOPE_PREFIXES[kind]}{_digest(key)}"


AnyEvent: TypeAlias = (
    AgentRegistered
    | AgentDraining
    | AgentDeregistered
    | AgentUnresponsive
    | AgentStalled
    | AgentRecovered
    | AgentQuarantined
    | AgentRestartRequested
    | TaskAssigned
    | TaskCancelRequested
    | TaskSubmitted
    | TaskQueued
    | TaskStarted
    | TaskProgress
    | TaskCompleted
    | TaskAttemptFailed
    | TaskRequeued
    | TaskFailed
    | TaskCancelled
    | WorkflowSubmitted
    | WorkflowStarted
    | WorkflowStepAdded
    | WorkflowStepDispatched
    | WorkflowStepSkipped
    | WorkflowStepCancelled
    | WorkflowCompleted
    | WorkflowFailed
    | WorkflowCancelled
    | BreakerOpened
    | BreakerHalfOpened
    | BreakerClosed
    | BreakerReset
    | FailureReported
    | RecoveryActionTaken
    | ScaleRecommended
    | RebalanceRequested
    | LoadRebalanced
    | PerformanceAlert
    | ScheduleCreated
    | SchedulePaused
    | ScheduleResumed
    | ScheduleDeleted
    | ScheduleFired
    | ScheduleSkipped
    | ConcurrencyLimitSet
    | ConcurrencyLimitRemoved
    | RateLimitSet
    | RateLimitRemoved
    | KeySlotClaimed
    | RateTokensTaken
)

EVENT_TYPES: Final[dict[str, type[Event]]] = {cls.type_name(): cls for cls in AnyEvent.__args__}
TERMINAL_TASK_EVENTS: Final = (TaskCompleted, TaskFailed, TaskCancelled)
TASK_REPORTS: Final = (TaskStarted, TaskProgress, TaskCompleted, TaskAttemptFailed)
TASK_NOTICES: Final = (TaskAssigned, TaskCancelRequested)


# --- encoding, decoding, upcasting --------------------------------------------------------------


class EventDecodeError(HiveError, ValueError):
    """Bytes that are not a valid Hive event; the reason says why."""


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _agent_registered_v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """v1 listed capabilities by name; v2 maps each to a proficiency in [0, 1]."""
    caps = raw.get("capabilities", [])
    if isinstance(caps, list):
        raw["capabilities"] = {str(name): 1.0 for name in caps}
    raw["v"] = 2
    return raw


def _report_v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """v2 reports are appended on a subject naming their agent; the body is unchanged."""
    raw["v"] = 2
    return raw


def _notice_v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """v2 notices are appended on a subject naming their task; the body is unchanged."""
    raw["v"] = 2
    return raw


def _notice_v2_to_v3(raw: dict[str, Any]) -> dict[str, Any]:
    """v3 notices are appended on the agent's subject for their type again; the body is unchanged."""
    raw["v"] = 3
    return raw


UPCASTERS: Final[dict[tuple[str, int], Upcaster]] = {
    ("agent.registered", 1): _agent_registered_v1_to_v2,
    **{(report.type_name(), 1): _report_v1_to_v2 for report in TASK_REPORTS},
    **{(notice.type_name(), 1): _notice_v1_to_v2 for notice in TASK_NOTICES},
    **{(notice.type_name(), 2): _notice_v2_to_v3 for notice in TASK_NOTICES},
}
"""(type, version) -> function turning that version's raw payload into the next version's."""

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
_raw_decoder = msgspec.json.Decoder(dict[str, Any])


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def _default_version(cls: type[Event]) -> int:
    return int(cls.__struct_defaults__[cls.__struct_fields__.index("v")])


_CURRENT_VERSIONS: Final[dict[type[Event], int]] = {
    cls: _default_version(cls) for cls in EVENT_TYPES.values()
}
"""Each event class's current ``v``, looked up once: every event read is checked against it."""


def current_version(type_name: str) -> int:
    return _CURRENT_VERSIONS[EVENT_TYPES[type_name]]


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring a raw payload of an old version up to the current one."""
    type_name = raw.get("type")
    if not isinstance(type_name, str) or type_name not in EVENT_TYPES:
        raise EventDecodeError(f"unknown event type {type_name!r}")
    version = raw.get("v", 1)
    if not isinstance(version, int) or version < 1:
        raise EventDecodeError(f"invalid event version {version!r}")
    target = current_version(type_name)
    while version < target:
        step = UPCASTERS.get((type_name, version))
        if step is None:
            raise EventDecodeError(f"no upcaster for {type_name} v{version}")
        raw = step(raw)
        version = raw["v"]
    return raw


def decode_event(data: bytes) -> AnyEvent:
    """Decode any version of any event, or raise EventDecodeError with the reason.

    Refuses free-form fields nested deeper than ``MAX_NESTING`` (``free_form_fields``), and turns
    the ``RecursionError`` of a document nested deeper than the decoder can go into the same error:
    what one reader cannot decode, no reader decodes.
    """
    try:
        event = _decode(data)
    except RecursionError:
        raise EventDecodeError("nested too deeply to decode") from None
    field = too_deep_field(event, data)
    if field is not None:
        raise EventDecodeError(f"field `{field}` nests deeper than {MAX_NESTING} levels")
    return event


def _decode(data: bytes) -> AnyEvent:
    try:
        event = _decoder.decode(data)
    except msgspec.DecodeError as typed_error:
        try:
            raw = _raw_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise EventDecodeError(f"not a JSON object: {exc}") from exc
        version = raw.get("v", 1)
        if not isinstance(version, int) or version >= _version_or_zero(raw.get("type")):
            raise EventDecodeError(str(typed_error)) from typed_error
        return _convert(upcast(raw))
    if event.v < _CURRENT_VERSIONS[type(event)]:
        return _convert(upcast(_raw_decoder.decode(data)))
    return event


class _StoredVersion(msgspec.Struct):
    v: int = 1


def _subject_form(cls: type[Event]) -> Callable[[Any], str] | None:
    """How `cls`'s ``subject`` is built, written out for its id fields (what the ``subject`` and
    ``aggregate_id`` properties compute through two properties and two class methods); None for a
    class whose ``subject`` or ``aggregate_id`` is not one of the base classes' (then the property
    serves)."""
    event_type = cls.event_type()
    id_field = _ID_FIELDS.get(cls.aggregate_id)
    if id_field is None:
        return None
    if cls.subject is TaskReport.subject:
        prefix, middle = f"{EVENTS_PREFIX}.task.", f".{event_type}."
        return lambda event: f"{prefix}{event.task_id}{middle}{event.agent_id}"
    if cls.subject is not Event.subject:
        return None
    prefix, suffix = f"{EVENTS_PREFIX}.{cls.AGGREGATE}.", f".{event_type}"
    return lambda event: f"{prefix}{getattr(event, id_field)}{suffix}"


_ID_FIELDS: Final[dict[object, str]] = {
    AgentEvent.aggregate_id: "agent_id",
    TaskEvent.aggregate_id: "task_id",
    WorkflowEvent.aggregate_id: "workflow_id",
    BreakerEvent.aggregate_id: "agent_id",
    SystemEvent.aggregate_id: "scope",
}
"""The field each base class's ``aggregate_id`` property returns."""
_SUBJECT_FORMS: Final[dict[type[Event], Callable[[Any], str]]] = {
    cls: form for cls in EVENT_TYPES.values() if (form := _subject_form(cls)) is not None
}
"""Each event class's ``subject``, as a function cheaper than the property (every event read is
checked against the subject it was stored on); tests/unit/test_read_path.py compares the two."""


def subject_of(event: Event) -> str:
    """``event.subject``, for less (``_SUBJECT_FORMS``): every append reads it more than once."""
    form = _SUBJECT_FORMS.get(type(event))
    return form(event) if form is not None else event.subject


def stored_on(event: Event, subject: str, data: bytes) -> bool:
    """Whether `subject` is where `event` (decoded from `data`) belongs: its own subject, as the
    version stored in `data` put it. A report stored as version 1 sits on five tokens; a notice on
    five as version 1 or 3, on six (naming its task) as version 2, and nowhere else."""
    form = _SUBJECT_FORMS.get(type(event))
    own = (form(event) if form is not None else event.subject) == subject
    if isinstance(event, TaskNotice):
        if own:
            return stored_version(data) != 2
        v2 = notice_subject_v2(event.agent_id, event.event_type(), event.task_id)
        return subject == v2 and stored_version(data) == 2
    if own:
        return True
    if not isinstance(event, TaskReport):
        return False
    if subject != event_subject(event.AGGREGATE, event.aggregate_id, event.event_type()):
        return False
    return stored_version(data) == 1


_CANONICAL_HEAD: Final = re.compile(rb'\{"type":"[^"\\]*","id":"[^"\\]*","ts":[-+.0-9eE]+,"v":([0-9]+)[,}]')
"""The head of an event as Hive encodes it (type, id, ts, then ``v``): its version, read without
decoding the rest (a notice read is checked against its subject: every service reads them)."""


def stored_version(data: bytes) -> int:
    """The ``v`` an event was stored with (1 if it says none; 0 if `data` is no JSON object)."""
    head = _CANONICAL_HEAD.match(data)
    if head is not None:
        return int(head.group(1))
    try:
        return msgspec.json.decode(data, type=_StoredVersion).v
    except msgspec.DecodeError:
        return 0


_WITH_FREE_FORM = (
    TaskSubmitted,
    TaskAssigned,
    TaskCompleted,
    WorkflowSubmitted,
    WorkflowStepAdded,
    FailureReported,
    ScheduleCreated,
)
_HAS_FREE_FORM: Final[dict[type[Event], bool]] = {
    cls: issubclass(cls, _WITH_FREE_FORM) for cls in EVENT_TYPES.values()
}
"""``isinstance(event, _WITH_FREE_FORM)`` of each event class, looked up rather than tested."""


def too_deep_field(event: Event, data: bytes) -> str | None:
    """The first free-form field of `event` (encoded as `data`) nested deeper than ``MAX_NESTING``.

    Quick for almost every event: a field that holds no container nests one level at most, and no
    field nests deeper than its whole message has brackets. The first is looked at first: counting
    the brackets reads every byte (about 2 µs per KB, twice: 4.7 µs for a 2.3 KB assignment, at
    every append and every reader's decoding of one), looking at a small payload or result's values
    a fraction of a µs.
    """
    free_form = _HAS_FREE_FORM.get(type(event))
    if free_form is None:
        free_form = isinstance(event, _WITH_FREE_FORM)
    if not free_form or _shallow_fields(event) or openers(data) <= MAX_NESTING:
        return None
    for name, value in free_form_fields(event):
        if value_nests_deeper(value, MAX_NESTING):
            return name
    return None


def free_form_too_deep(value: Any, data: bytes) -> bool:
    """Whether one free-form value decoded from `data` nests deeper than ``MAX_NESTING``: what
    ``too_deep_field`` judges of each such field, for a reader that decodes only some fields."""
    return not _shallow(value) and openers(data) > MAX_NESTING and value_nests_deeper(value, MAX_NESTING)


_SHALLOW_LOOK: Final = 16
"""The most values ``_shallow`` looks at: a larger container is left to the bracket count."""
_CONTAINERS: Final = (dict, list, tuple)
"""What ``nesting_of`` counts as a level (and their subclasses)."""


def _shallow(value: Any) -> bool:
    """Whether `value` surely nests one level at most: a scalar, or a plain dict, list or tuple of
    at most ``_SHALLOW_LOOK`` values none of which is a container. False when unsure."""
    kind = type(value)
    if kind is dict:
        if len(value) > _SHALLOW_LOOK:
            return False
        values: Any = value.values()
    elif kind is list or kind is tuple:
        if len(value) > _SHALLOW_LOOK:
            return False
        values = value
    else:
        return not isinstance(value, _CONTAINERS)
    for item in values:  # noqa: SIM110 - a loop: no generator per event read or appended
        if isinstance(item, _CONTAINERS):
            return False
    return True


def _shallow_fields(event: Event) -> bool:
    """Whether every free-form field of `event` surely nests one level at most (``_shallow``)."""
    if type(event) is TaskSubmitted or type(event) is TaskAssigned:
        return _shallow(event.payload)
    if type(event) is TaskCompleted:
        return _shallow(event.result)
    return all(_shallow(value) for _name, value in free_form_fields(event))


def free_form_fields(event: Event) -> Iterator[tuple[str, Any]]:
    """The fields of `event` whose shape the schema leaves open (payloads, results), by name.

    Every other field has a fixed shape, so only these can nest without bound; a test keeps this
    list equal to the catalogue's open fields.
    """
    if isinstance(event, TaskSubmitted | TaskAssigned):
        yield "payload", event.payload
    elif isinstance(event, TaskCompleted):
        yield "result", event.result
    elif isinstance(event, WorkflowSubmitted):
        yield "context", event.context
        for index, step in enumerate(event.steps):
            yield f"steps[{index}].payload", step.payload
    elif isinstance(event, WorkflowStepAdded):
        yield "step.payload", event.step.payload
    elif isinstance(event, FailureReported):
        yield "context", event.context
    elif isinstance(event, ScheduleCreated):
        if event.task is not None:
            yield "task.payload", event.task.payload
        if event.workflow is not None:
            yield "workflow.context", event.workflow.context
            for index, step in enumerate(event.workflow.steps):
                yield f"workflow.steps[{index}].payload", step.payload


def _version_or_zero(type_name: object) -> int:
    if isinstance(type_name, str) and type_name in EVENT_TYPES:
        return current_version(type_name)
    return 0


def _convert(raw: dict[str, Any]) -> AnyEvent:
    try:
        event: AnyEvent = msgspec.convert(raw, AnyEvent)
        return event
    except msgspec.ValidationError as exc:
        raise EventDecodeError(str(exc)) from exc
