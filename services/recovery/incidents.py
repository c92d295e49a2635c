"""Incidents, pure: a failure (reported, or an agent gone silent) -> the steps its strategy takes.

``plan_incident`` reads the fleet as it is now and returns what to append; the shell appends it
with optimistic concurrency and, on a conflict, catches up and plans again. Steps already taken
then fall out of the plan by themselves (a requeued attempt is no longer current), which is what
makes a redelivered incident harmless.
"""

from __future__ import annotations

import msgspec

from services.recovery.decide import GiveUp, Requeue, after_lost_attempt
from shared.domain.breaker_policy import BreakerPolicy, Probe, Trip
from shared.domain.breakers import BreakersState
from shared.domain.fleet import IN_FLIGHT, FleetState, TaskView
from shared.domain.starts import START_REPORTED_WITHIN_S, may_run_unreported
from shared.domain.strategies import Plan
from shared.events import FailureType, Severity


class Incident(msgspec.Struct, frozen=True, kw_only=True):
    incident_id: str
    failure_type: FailureType
    severity: Severity
    ts: float
    agent_id: str | None = None
    task_id: str | None = None
    detail: str = ""
    attempts: dict[str, int] | None = None
    """The attempts in question when known up front (what a silent agent held), else found."""
    unstarted_only: bool = False
    """Only those still unstarted when the plan is made (what a stalled agent never received: one
    it started meanwhile was received after all, and stays)."""
    workflow_id: str | None = None
    session: str | None = None
    """The agent session the failure was seen in (None: whichever is current)."""


class FailAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """Fail the attempt with the incident's type; the retry policy then decides (backoff or give up)."""

    task_id: str
    attempt: int
    agent_id: str
    failure_type: FailureType
    error: str


class StopWork(msgspec.Struct, frozen=True, kw_only=True):
    """Tell the holder to stop an attempt it no longer owns."""

    agent_id: str
    task_id: str
    attempt: int
    reason: str


TaskStep = Requeue | GiveUp | FailAttempt


class IncidentSteps(msgspec.Struct, frozen=True, kw_only=True):
    plan: Plan
    agent_id: str | None
    quarantine_until_ts: float | None = None
    restart_session: str | None = None
    breaker: Trip | Probe | None = None
    """What to do to the agent's circuit breaker (open it, or make it half-open), if anything."""
    task_steps: list[TaskStep] = []
    stops: list[StopWork] = []
    notes: list[str] = []

    @property
    def task_ids(self) -> list[str]:
        return [step.task_id for step in self.task_steps]


def attempts_in_question(fleet: FleetState, incident: Incident) -> tuple[list[TaskView], list[str]]:
    """Current in-flight attempts the incident is about, and notes on what was left alone."""
    notes: list[str] = []
    if incident.attempts is not None:
        wanted = incident.attempts
    elif incident.task_id is not None:
        task = fleet.tasks.get(incident.task_id)
        if task is None or task.status not in IN_FLIGHT:
            status = task.status if task is not None else "unknown"
            notes.append(f"task {incident.task_id} is {status}, not running: nothing to move")
            return [], notes
        if incident.agent_id is not None and task.agent_id != incident.agent_id:
            notes.append(f"task {incident.task_id} is held by {task.agent_id}, not {incident.agent_id}")
            return [], notes
        wanted = {task.task_id: task.attempt}
    elif incident.workflow_id is not None:
        wanted = {
            task.task_id: task.attempt
            for task in fleet.tasks.values()
            if task.spec.workflow_id == incident.workflow_id
            and task.status in IN_FLIGHT
            and (incident.agent_id is None or task.agent_id == incident.agent_id)
        }
        if not wanted:
            notes.append(f"workflow {incident.workflow_id} has no task in flight: nothing to move")
    elif incident.agent_id is not None and incident.agent_id in fleet.agents:
        wanted = fleet.agents[incident.agent_id].in_flight
    else:
        wanted = {}
    found = []
    for task_id, attempt in sorted(wanted.items()):
        task = fleet.tasks.get(task_id)
        if task is None or task.attempt != attempt or task.status not in IN_FLIGHT:
            continue
        if incident.unstarted_only and task.status != "assigned":
            notes.append(f"task {task_id} was started meanwhile: left with its agent")
            continue
        found.append(task)
    return found, notes


def _unstarted(task: TaskView, incident: Incident) -> bool:
    """Not started: never received (a stalled agent's), or too old to be running with its start
    report deferred (``shared/domain/starts.py``)."""
    if task.status != "assigned":
        return False
    return incident.unstarted_only or not may_run_unreported(task.assigned_ts, incident.ts)


def _breaker_step(
    plan: Plan, incident: Incident, breakers: BreakersState, policy: BreakerPolicy
) -> tuple[Trip | Probe | None, str]:
    """The breaker transition the plan asks for, or None and why not."""
    wanted = "open_breaker" if "open_breaker" in plan.actions else "half_open_breaker"
    current = breakers.breakers.get(incident.agent_id or "")
    status = current.status if current is not None else "closed"
    if status == "open" or (wanted == "half_open_breaker" and status == "half_open"):
        return None, f"circuit breaker already {status.replace('_', '-')}"
    if wanted == "open_breaker":
        return (
            Trip(
                failure_rate=current.failure_rate if current is not None else 0.0,
                calls=0,
                reason=f"{plan.strategy} after {incident.failure_type} ({incident.severity})",
                retry_after_ts=incident.ts + policy.open_s,
            ),
            "",
        )
    return Probe(probes_allowed=policy.half_open_probes), ""


def plan_incident(
    fleet: FleetState,
    incident: Incident,
    plan: Plan,
    quarantine_s: float,
    breakers: BreakersState | None = None,
    breaker_policy: BreakerPolicy | None = None,
) -> IncidentSteps:
    tasks, notes = attempts_in_question(fleet, incident)
    agent_id = incident.agent_id
    if agent_id is None and tasks:
        agent_id = tasks[0].agent_id
    agent = fleet.agents.get(agent_id or "")
    usable = agent is not None and agent.status != "deregistered"
    if agent_id is not None and not usable:
        notes.append(f"agent {agent_id} is not registered: no action on the agent")
    if agent is not None and usable and incident.session is not None and incident.session != agent.session:
        notes.append(
            f"agent {agent_id} restarted since the failure (session {incident.session} is gone, "
            f"{agent.session} is current): its current session is left alone"
        )
        return IncidentSteps(plan=plan, agent_id=agent_id, notes=notes)
    actions = set(plan.actions)
    policy = breaker_policy or BreakerPolicy()
    breaker: Trip | Probe | None = None
    if usable and actions & {"open_breaker", "half_open_breaker"}:
        if policy.enabled:
            breaker, why_not = _breaker_step(plan, incident, breakers or BreakersState(), policy)
            if why_not:
                notes.append(why_not)
        else:  # a breaker would be closed again at once: keep the agent out the other way
            actions.add("quarantine")
            notes.append("circuit breakers are disabled (ENABLE_CIRCUIT_BREAKERS): quarantined instead")
    quarantine_until = incident.ts + quarantine_s if usable and "quarantine" in actions else None
    restart = agent.session if agent is not None and usable and "restart" in actions else None
    steps: list[TaskStep] = []
    stops: list[StopWork] = []
    for task in tasks:
        if "reassign" in actions or ("reassign_unstarted" in actions and _unstarted(task, incident)):
            steps.append(after_lost_attempt(task, incident.failure_type))
        elif "reassign_unstarted" in actions and task.status == "assigned" and "retry" not in actions:
            notes.append(
                f"task {task.task_id} was assigned under {START_REPORTED_WITHIN_S:g} s ago: it may be "
                "running with its start report deferred, left with its agent"
            )
            continue
        elif "retry" in actions:
            steps.append(
                FailAttempt(
                    task_id=task.task_id,
                    attempt=task.attempt,
                    agent_id=task.agent_id or "",
                    failure_type=incident.failure_type,
                    error=incident.detail or f"{incident.failure_type} ({incident.severity})",
                )
            )
        else:
            continue
        if task.agent_id:
            stops.append(
                StopWork(
                    agent_id=task.agent_id,
                    task_id=task.task_id,
                    attempt=task.attempt,
                    reason=f"{plan.strategy} after {incident.failure_type}",
                )
            )
    return IncidentSteps(
        plan=plan,
        agent_id=agent_id,
        quarantine_until_ts=quarantine_until,
        restart_session=restart,
        breaker=breaker if agent_id is not None else None,
        task_steps=steps,
        stops=stops,
        notes=notes,
    )
