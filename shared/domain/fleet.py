"""The fleet projection: agents, their in-flight work, tasks and the queue of unassigned tasks.

Pure and deterministic: ``apply_fleet(state, recorded)`` reads nothing but its arguments. Stale or
out-of-order facts (a result for a superseded attempt, an assignment for a task already taken)
change nothing, which is what makes redelivery and racing writers harmless. Used by the router
(decisions), recovery (who holds what), the balancer (load) and the gateway (status).

``task.started`` is optional: a completion or failure accepted from ``assigned`` implies it
(``shared/domain/starts.py``), and sets ``started_ts`` to when the work began.

A report on a task counts only when it comes from the agent holding that attempt
(``report_from_holder``): the one rule every projection follows. Each service's view asks the fleet
before anything applies an event (``admits``), so the fleet, the breakers, performance learning,
the metrics and the workflows credit and blame the same agent, and none of them takes another
agent's word about a task it does not hold.
"""

from __future__ import annotations

import bisect
from typing import Any, Literal

import msgspec

from shared.domain.priority import virtual_time
from shared.domain.starts import implied_start_ts
from shared.events import (
    AgentDeregistered,
    AgentDraining,
    AgentQuarantined,
    AgentRecovered,
    AgentRegistered,
    AgentStalled,
    AgentUnresponsive,
    Persona,
    RejectedCandidate,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskQueued,
    TaskReport,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded

AgentStatus = Literal["active", "draining", "unresponsive", "quarantined", "deregistered", "stalled"]
TaskStatus = Literal[
    "pending", "queued", "assigned", "running", "retrying", "completed", "failed", "cancelled"
]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
WAITING: frozenset[str] = frozenset({"pending", "queued"})
IN_FLIGHT: frozenset[str] = frozenset({"assigned", "running"})

INFRASTRUCTURE_FAILURES: frozenset[str] = frozenset(
    {
        "agent_unresponsive",
        "network_partition",
        "rebalanced",
        "agent_restarted",
        "resource_exhaustion",
        "agent_stalled",
    }
)
"""Failures that say nothing about the task: they do not use up its retry budget."""

QueueKey = tuple[float, int, str]
"""(virtual time, sequence of submission, task id): priority with aging (``shared/domain/priority``),
then the oldest, first."""


class AgentStall(msgspec.Struct, kw_only=True):
    """Why an agent is stalled: the evidence of its ``agent.stalled``."""

    seq: int
    """The stream sequence of the ``agent.stalled`` event: the agent has caught up once its
    heartbeat says it received this far."""
    ts: float
    received_seq: int
    pending_seq: int
    reason: str


class AgentView(msgspec.Struct, kw_only=True):
    agent_id: str
    name: str = ""
    capabilities: dict[str, float] = {}
    persona: Persona = Persona()
    capacity: int = 1
    status: AgentStatus = "active"
    session: str = ""
    in_flight: dict[str, int] = {}
    """task id -> attempt this agent holds."""
    registered_ts: float = 0.0
    last_change_ts: float = 0.0
    quarantined_until_ts: float = 0.0
    assigned_total: int = 0
    completed: int = 0
    failed: int = 0
    last_assigned_seq: int = 0
    metadata: dict[str, str] = {}
    """As registered: what a task's ``resource_constraints`` are matched against."""
    labels: dict[str, str] = {}
    """As registered: what a task's ``labels`` and ``label_rules`` are matched against."""
    registered_seq: int = 0
    """Stream sequence of the current session's registration: its inbox starts after it."""
    stall: AgentStall | None = None
    """While ``stalled``: the evidence; None otherwise."""

    @property
    def load(self) -> int:
        return len(self.in_flight)

    @property
    def free(self) -> int:
        return self.capacity - len(self.in_flight)

    @property
    def utilisation(self) -> float:
        return len(self.in_flight) / self.capacity if self.capacity else 1.0


class AssignmentRecord(msgspec.Struct, kw_only=True):
    """One routing decision as recorded, with its explanation."""

    agent_id: str
    attempt: int
    seq: int
    ts: float
    session: str = ""
    strategy: str = ""
    score: float = 0.0
    breakdown: dict[str, float] = {}
    rejected: list[RejectedCandidate] = []
    explanation: str = ""


class TaskView(msgspec.Struct, kw_only=True):
    spec: TaskSubmitted
    status: TaskStatus = "pending"
    attempt: int = 1
    agent_id: str | None = None
    submitted_seq: int = 0
    submitted_ts: float = 0.0
    assigned_ts: float | None = None
    started_ts: float | None = None
    finished_ts: float | None = None
    not_before_ts: float = 0.0
    """No agent gets the current attempt before this (a delayed task, or a retry's backoff)."""
    preferred_agent_id: str | None = None
    excluded_agent_ids: list[str] = []
    queued_reason: str = ""
    queued_detail: str = ""
    eligible_ts: float | None = None
    """While queued: the earliest time it may start, when the router said (a rate limit)."""
    last_error: str = ""
    failure_type: str = ""
    progress: float = 0.0
    task_failures: int = 0
    """Attempts that failed because of the task itself (errors, timeouts), not the infrastructure."""
    result: Any = None
    quality: float | None = None
    assignments: list[AssignmentRecord] = []

    @property
    def task_id(self) -> str:
        return self.spec.task_id

    @property
    def queue_key(self) -> QueueKey:
        routable = max(self.submitted_ts, self.spec.not_before_ts or 0.0)
        return (virtual_time(self.spec.priority, routable), self.submitted_seq, self.spec.task_id)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class FleetState(msgspec.Struct, kw_only=True):
    agents: dict[str, AgentView] = {}
    tasks: dict[str, TaskView] = {}
    queue: list[QueueKey] = []
    finished: list[str] = []
    """Terminal task ids, oldest first; beyond ``max_finished`` the oldest are forgotten."""
    totals: dict[str, int] = {}
    max_finished: int = 2_000
    """Decisions never need finished tasks; status queries of older ones read the log instead."""


def new_fleet() -> FleetState:
    return FleetState()


# --- helpers --------------------------------------------------------------------------------------


def _count(state: FleetState, key: str) -> None:
    state.totals[key] = state.totals.get(key, 0) + 1


def _enqueue(state: FleetState, task: TaskView) -> None:
    key = task.queue_key
    index = bisect.bisect_left(state.queue, key)
    if index == len(state.queue) or state.queue[index] != key:
        state.queue.insert(index, key)


def _dequeue(state: FleetState, task: TaskView) -> None:
    if not state.queue:  # nothing waits (or a view that keeps no queue): no key to work out
        return
    key = task.queue_key
    index = bisect.bisect_left(state.queue, key)
    if index < len(state.queue) and state.queue[index] == key:
        del state.queue[index]


def _release(state: FleetState, task: TaskView) -> None:
    if task.agent_id is None:
        return
    agent = state.agents.get(task.agent_id)
    if agent is not None and agent.in_flight.get(task.task_id) == task.attempt:
        del agent.in_flight[task.task_id]


def _finish(state: FleetState, task: TaskView, status: TaskStatus, ts: float) -> None:
    _release(state, task)
    if task.status in WAITING:  # only a waiting task is in the queue (most end in flight)
        _dequeue(state, task)
    task.status = status
    task.finished_ts = ts
    _count(state, status)
    state.finished.append(task.task_id)
    if len(state.finished) > state.max_finished + state.max_finished // 10:
        drop = len(state.finished) - state.max_finished
        for old in state.finished[:drop]:
            state.tasks.pop(old, None)
        del state.finished[:drop]


def current_attempt(state: FleetState, task_id: str, attempt: int) -> TaskView | None:
    """The task if `attempt` is its current attempt and it is not finished, else None."""
    task = state.tasks.get(task_id)
    if task is None or task.status in TERMINAL or task.attempt != attempt:
        return None
    return task


def in_flight_attempt(state: FleetState, task_id: str, attempt: int) -> TaskView | None:
    """The task if `attempt` is its current attempt and an agent holds it (assigned or running)."""
    task = current_attempt(state, task_id, attempt)
    return task if task is not None and task.status in IN_FLIGHT else None


def report_from_holder(state: FleetState, report: TaskReport) -> TaskView | None:
    """The task if `report` is about its current attempt, in flight, and names the agent holding it
    (the router assigned it that attempt); else None: the report changes nothing anywhere.

    The agent a report names is the one NATS let publish it (its subject ends in that agent's id,
    which only that agent's user, and recovery, may publish on), so no agent can start, progress,
    complete or fail an attempt it does not hold, nor charge a failure to another agent.
    """
    task = in_flight_attempt(state, report.task_id, report.attempt)
    return task if task is not None and task.agent_id == report.agent_id else None


def admits(state: FleetState, recorded: Recorded) -> bool:
    """Whether a view may apply `recorded`, asked of its fleet before anything applies it: False
    only for a report ``report_from_holder`` refuses."""
    event = recorded.event
    return not isinstance(event, TaskReport) or report_from_holder(state, event) is not None


def correlation_of(state: FleetState, task_id: str) -> str:
    """The correlation id a decision about the task carries: its submission's, else the task id
    (also for a task this view no longer keeps)."""
    task = state.tasks.get(task_id)
    return (task.spec.correlation_id if task is not None else "") or task_id


# --- apply ----------------------------------------------------------------------------------------


def apply_fleet(
    state: FleetState, recorded: Recorded, *, queue: bool = True, assignments: bool = True
) -> FleetState:
    """Apply one event. Cases are tried in order (one class check each): the task events every
    task brings come first, the agents' rarer ones after.

    `queue` False puts nothing in ``queue`` (it stays empty) and `assignments` False keeps no
    ``TaskView.assignments``: for a view whose decisions read neither (the balancer's: it finds
    the waiting tasks by their status, when it decides), so it neither sorts every submission in
    nor copies every routing explanation. Everything else is kept alike."""
    event = recorded.event
    match event:
        case TaskAssigned():
            task = current_attempt(state, event.task_id, event.attempt)
            agent = state.agents.get(event.agent_id)
            if task is None or agent is None or task.status not in WAITING:
                return state
            _dequeue(state, task)
            task.status = "assigned"
            task.agent_id = event.agent_id
            task.assigned_ts = event.ts
            task.queued_reason = ""
            task.queued_detail = ""
            task.eligible_ts = None
            if assignments:
                task.assignments.append(
                    AssignmentRecord(
                        agent_id=event.agent_id,
                        attempt=event.attempt,
                        seq=recorded.seq,
                        ts=event.ts,
                        session=event.session,
                        strategy=event.strategy,
                        score=event.score,
                        breakdown=dict(event.breakdown),
                        rejected=list(event.rejected),
                        explanation=event.explanation,
                    )
                )
            agent.in_flight[event.task_id] = event.attempt
            agent.assigned_total += 1
            agent.last_assigned_seq = recorded.seq
        case TaskSubmitted():
            if event.task_id in state.tasks:
                return state
            task = TaskView(
                spec=event,
                submitted_seq=recorded.seq,
                submitted_ts=event.ts,
                not_before_ts=event.not_before_ts or 0.0,
            )
            state.tasks[event.task_id] = task
            if queue:
                _enqueue(state, task)
            _count(state, "submitted")
        case TaskCompleted():
            task = report_from_holder(state, event)
            if task is not None:
                agent = state.agents.get(event.agent_id)
                if agent is not None:
                    agent.completed += 1
                if task.started_ts is None:  # completed straight from assigned (lazy start)
                    task.started_ts = implied_start_ts(event, task.assigned_ts)
                task.result = event.result
                task.quality = event.quality
                task.progress = 100.0
                _finish(state, task, "completed", event.ts)
        case TaskQueued():
            task = current_attempt(state, event.task_id, event.attempt)
            if task is not None and task.status in WAITING:
                task.status = "queued"
                task.queued_reason = event.reason
                task.queued_detail = event.detail
                task.eligible_ts = event.eligible_ts
        case TaskStarted():
            task = report_from_holder(state, event)
            if task is not None and task.status == "assigned":
                task.status = "running"
                task.started_ts = event.ts
        case TaskProgress():
            task = report_from_holder(state, event)
            if task is not None:
                task.progress = event.percent
        case TaskAttemptFailed():
            task = report_from_holder(state, event)
            if task is not None:
                agent = state.agents.get(event.agent_id)
                if agent is not None:
                    agent.failed += 1
                if task.started_ts is None:
                    task.started_ts = implied_start_ts(event, task.assigned_ts)
                _release(state, task)
                task.status = "retrying"
                task.last_error = event.error
                task.failure_type = event.failure_type
                if event.failure_type not in INFRASTRUCTURE_FAILURES:
                    task.task_failures += 1
        case TaskRequeued():
            task = state.tasks.get(event.task_id)
            if task is None or task.terminal or event.attempt != task.attempt + 1:
                return state
            _release(state, task)
            task.attempt = event.attempt
            task.status = "pending"
            task.agent_id = None
            task.assigned_ts = None
            task.started_ts = None
            task.progress = 0.0
            task.not_before_ts = event.not_before_ts
            task.preferred_agent_id = event.preferred_agent_id
            task.excluded_agent_ids = list(event.excluded_agent_ids)
            if event.reason:
                task.last_error = task.last_error or event.reason
            if queue:
                _enqueue(state, task)
            _count(state, "requeued")
        case TaskFailed():
            task = state.tasks.get(event.task_id)
            if task is not None and not task.terminal:
                task.last_error = event.error or task.last_error
                task.failure_type = event.failure_type
                _finish(state, task, "failed", event.ts)
        case TaskCancelled():
            task = state.tasks.get(event.task_id)
            if task is not None and not task.terminal:
                _finish(state, task, "cancelled", event.ts)
        case AgentRegistered():
            agent = state.agents.get(event.agent_id)
            if agent is None:
                agent = AgentView(agent_id=event.agent_id, registered_ts=event.ts)
                state.agents[event.agent_id] = agent
            agent.name = event.name
            agent.capabilities = dict(event.capabilities)
            agent.persona = event.persona
            agent.capacity = event.capacity
            agent.session = event.session
            agent.metadata = dict(event.metadata)
            agent.labels = dict(event.labels)
            agent.status = "quarantined" if agent.quarantined_until_ts > event.ts else "active"
            agent.last_change_ts = event.ts
            agent.registered_seq = recorded.seq
            agent.stall = None
        case AgentDraining():
            _set_status(state, event.agent_id, "draining", event.ts)
        case AgentDeregistered():
            _set_status(state, event.agent_id, "deregistered", event.ts)
        case AgentUnresponsive():
            agent = state.agents.get(event.agent_id)
            if agent is not None and agent.status != "deregistered":
                agent.status = "unresponsive"
                agent.last_change_ts = event.ts
                agent.stall = None
        case AgentStalled():
            # Only an active agent of the same session: the judgement was made on that state.
            agent = state.agents.get(event.agent_id)
            if agent is not None and agent.status == "active" and event.session == agent.session:
                agent.status = "stalled"
                agent.last_change_ts = event.ts
                agent.stall = AgentStall(
                    seq=recorded.seq,
                    ts=event.ts,
                    received_seq=event.received_seq,
                    pending_seq=event.pending_seq,
                    reason=event.reason,
                )
        case AgentRecovered():
            # Back from silence, a quarantine is over or a stalled agent caught up; a quarantine
            # still running goes on.
            agent = state.agents.get(event.agent_id)
            if agent is not None and agent.status in ("unresponsive", "quarantined", "stalled"):
                agent.status = "quarantined" if agent.quarantined_until_ts > event.ts else "active"
                agent.last_change_ts = event.ts
                agent.stall = None
        case AgentQuarantined():
            agent = state.agents.get(event.agent_id)
            if agent is not None and agent.status != "deregistered":
                agent.status = "quarantined"
                agent.quarantined_until_ts = event.until_ts
                agent.last_change_ts = event.ts
                agent.stall = None
        case _:
            pass
    return state


def _set_status(state: FleetState, agent_id: str, status: AgentStatus, ts: float) -> None:
    agent = state.agents.get(agent_id)
    if agent is not None:
        agent.status = status
        agent.last_change_ts = ts
        agent.stall = None


# --- queries --------------------------------------------------------------------------------------


def waiting_tasks(state: FleetState) -> list[TaskView]:
    """Tasks waiting for an agent, most urgent first."""
    return [state.tasks[key[2]] for key in state.queue if key[2] in state.tasks]


def tasks_held_by(state: FleetState, agent_id: str) -> dict[str, int]:
    agent = state.agents.get(agent_id)
    return dict(agent.in_flight) if agent is not None else {}


FLEET_SPEC: ProjectionSpec[FleetState] = ProjectionSpec(
    name="fleet", state_type=FleetState, initial=FleetState, apply=apply_fleet
)
"""The fleet alone, for folding one aggregate's events (e.g. a task no longer kept in memory)."""
