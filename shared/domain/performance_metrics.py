"""The orchestration figures of ``GET /orchestration/metrics``, computed from the log. Pure.

``apply_metrics(state, fleet, breakers, recorded)`` is fed every event, read against the fleet and
breaker views *before* they apply it; everything is kept in per-second windows of event time
(``windows.py``), so the state never grows with history. ``figures(state, now, window_s)`` reads
the window ending at ``now``:

* **task_assignment_latency_ms**: p99, over the attempts assigned in the window, of the time from
  the attempt becoming routable (its submission, or a delayed task's not_before; for a retry, its
  requeue or the end of its backoff) to its assignment. Attempts held for lack of an agent
  (``task.queued``) are left out: that wait measures capacity, not routing.
* **load_balancing_efficiency**: ``1 - misplaced / in flight`` over the samples of the window
  (``load_balance.py``).
* **routing_accuracy_percent**: first-choice success. Of the first attempts that ended in the
  window with an outcome that speaks about the choice (completed, or failed by the agent:
  retryable and not an infrastructure failure), the share completed with a quality at or above the
  task's ``expected_quality_threshold`` (a completion without a quality meets a threshold of 0).
* **failure_recovery_time_ms**: p95, over the incidents settled in the window, of the time from the
  failure until every attempt it took away runs again elsewhere (``task.started`` of a later
  attempt, or the start a later attempt's completion or failure implies when it ended before
  reporting one: ``shared/domain/starts.py``) or has ended. For an agent declared unresponsive the
  failure time is its last heartbeat (which overstates by up to one heartbeat interval); for a
  stalled agent, when recovery first saw the assignment it never received pending; for a reported
  failure, the report.
* **system_throughput_tasks_per_second**: tasks completed in the window, divided by the time from
  the first of them (or the window's start, if later) to ``now``.
* **workflow_completion_rate**: completed / (completed + failed) among workflows that ended in the
  window (cancelled ones are a decision, not an outcome).

The assignment latencies and recovery durations are also counted since the start of the log in
cumulative histograms (``histogram.py``), which the gateway exports to Prometheus.
"""

from __future__ import annotations

from typing import Final

import msgspec

from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.fleet import (
    INFRASTRUCTURE_FAILURES,
    FleetState,
    admits,
    apply_fleet,
    in_flight_attempt,
)
from shared.domain.histogram import CumulativeHistogram, assignment_histogram, recovery_histogram
from shared.domain.load_balance import LoadWindow, accepted_assignment, sample_assignment
from shared.domain.starts import implied_start_ts
from shared.domain.windows import (
    LatencyWindow,
    WindowSums,
    histogram_count,
    histogram_percentile,
)
from shared.events import (
    AgentStalled,
    AgentUnresponsive,
    FailureReported,
    RecoveryActionTaken,
    ScaleRecommended,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskQueued,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    WorkflowCompleted,
    WorkflowFailed,
)
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded

MAX_TRACKED: Final = 100_000
"""Attempts waiting for their assignment, and open incidents, kept at most (the oldest go first)."""
PERCENTILES: Final = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


# --- failure recovery ---------------------------------------------------------------------------


class OpenIncident(msgspec.Struct, kw_only=True):
    start_ts: float
    tasks: dict[str, int]
    """task id -> the attempt taken away: a later attempt starting settles the task (0: any start)."""


class RecoveryTracker(msgspec.Struct, kw_only=True):
    """Incidents until the work they took away runs again; their durations, per second of settling."""

    open: dict[str, OpenIncident] = {}
    by_task: dict[str, str] = {}
    reported: dict[str, float] = {}
    """Reported failures awaiting recovery's action: incident id -> report time."""
    durations: LatencyWindow = msgspec.field(default_factory=LatencyWindow)
    seconds: CumulativeHistogram = msgspec.field(default_factory=recovery_histogram)
    """Every settled incident's duration since the start of the log (Prometheus)."""


def _open_incident(tracker: RecoveryTracker, key: str, start_ts: float, tasks: dict[str, int]) -> None:
    if not tasks:
        return
    for task_id in tasks:
        older = tracker.by_task.get(task_id)
        if older is not None and older in tracker.open:
            previous = tracker.open[older]
            previous.tasks.pop(task_id, None)
            if not previous.tasks:
                del tracker.open[older]  # its work moved on to this incident: one duration, not two
        tracker.by_task[task_id] = key
    tracker.open[key] = OpenIncident(start_ts=start_ts, tasks=dict(tasks))
    while len(tracker.open) > MAX_TRACKED:
        oldest = next(iter(tracker.open))
        for task_id in tracker.open.pop(oldest).tasks:
            tracker.by_task.pop(task_id, None)


def _taken_attempt(tracker: RecoveryTracker, task_id: str) -> int:
    """The attempt of `task_id` an open incident took away (0: none)."""
    incident = tracker.open.get(tracker.by_task.get(task_id, ""))
    return incident.tasks.get(task_id, 0) if incident is not None else 0


def _settle(tracker: RecoveryTracker, task_id: str, ts: float, attempt: int | None) -> float | None:
    """The task's work runs again (attempt given) or ended (None); returns the incident's duration
    in seconds when that was its last task."""
    key = tracker.by_task.get(task_id)
    incident = tracker.open.get(key or "")
    if key is None or incident is None:
        tracker.by_task.pop(task_id, None)
        return None
    if attempt is not None and attempt <= incident.tasks.get(task_id, 0):
        return None  # the attempt taken away, starting late: not a recovery
    del tracker.by_task[task_id]
    incident.tasks.pop(task_id, None)
    if incident.tasks:
        return None
    del tracker.open[key]
    duration = max(0.0, ts - incident.start_ts)
    tracker.durations.add(ts, duration * 1000)
    tracker.seconds.observe(duration)
    return duration


def track_recovery(tracker: RecoveryTracker, recorded: Recorded) -> float | None:
    """Follow incidents through the log; returns a duration (s) when an incident settles."""
    event = recorded.event
    match event:
        case AgentUnresponsive() if event.in_flight:
            seen = event.last_seen_ts if 0 < event.last_seen_ts <= event.ts else event.ts
            _open_incident(tracker, f"unresponsive:{recorded.seq}", seen, dict(event.in_flight))
        case AgentStalled() if event.unreceived:
            since = event.behind_since_ts if 0 < event.behind_since_ts <= event.ts else event.ts
            _open_incident(tracker, f"stalled:{recorded.seq}", since, dict(event.unreceived))
        case FailureReported():
            tracker.reported[event.scope] = event.ts
            while len(tracker.reported) > MAX_TRACKED:
                del tracker.reported[next(iter(tracker.reported))]
        case RecoveryActionTaken():
            reported_ts = tracker.reported.pop(event.scope, None)
            if reported_ts is not None:
                _open_incident(
                    tracker, f"reported:{event.scope}", reported_ts, dict.fromkeys(event.task_ids, 0)
                )
        case TaskStarted():
            return _settle(tracker, event.task_id, event.ts, event.attempt)
        case TaskCompleted() | TaskAttemptFailed():
            # A later attempt that ended without task.started ran again from its implied start;
            # a completion of any other attempt ends the task's part in the incident.
            began = implied_start_ts(event, None)
            if began is not None and event.attempt > _taken_attempt(tracker, event.task_id):
                return _settle(tracker, event.task_id, began, event.attempt)
            if isinstance(event, TaskCompleted):
                return _settle(tracker, event.task_id, event.ts, None)
        case TaskFailed() | TaskCancelled():
            return _settle(tracker, event.task_id, event.ts, None)
        case _:
            pass
    return None


# --- the metrics state --------------------------------------------------------------------------


class MetricsState(msgspec.Struct, kw_only=True):
    routable: dict[str, tuple[int, float]] = {}
    """task id -> (attempt, when it became routable), until assigned or held."""
    assignment_ms: LatencyWindow = msgspec.field(default_factory=LatencyWindow)
    assignment_s: CumulativeHistogram = msgspec.field(default_factory=assignment_histogram)
    """The same latencies since the start of the log (Prometheus)."""
    load: LoadWindow = msgspec.field(default_factory=LoadWindow)
    first_choice: WindowSums = msgspec.field(default_factory=WindowSums)
    """a: first attempts the first choice got right; b: first attempts judged."""
    recovery: RecoveryTracker = msgspec.field(default_factory=RecoveryTracker)
    completions: WindowSums = msgspec.field(default_factory=WindowSums)
    workflows: WindowSums = msgspec.field(default_factory=WindowSums)
    """a: completed; b: completed or failed."""
    scale: dict[str, ScaleRecommended] = {}
    """The balancer's standing advice per capability."""


def _routable(state: MetricsState, task_id: str, attempt: int, since: float) -> None:
    state.routable.pop(task_id, None)
    state.routable[task_id] = (attempt, since)
    while len(state.routable) > MAX_TRACKED:
        del state.routable[next(iter(state.routable))]


def _judge_first_choice(
    state: MetricsState, fleet: FleetState, event: TaskCompleted | TaskAttemptFailed
) -> None:
    if event.attempt != 1:
        return
    task = in_flight_attempt(fleet, event.task_id, event.attempt)
    if task is None:
        return
    if isinstance(event, TaskCompleted):
        if task.agent_id != event.agent_id:
            return
        threshold = task.spec.expected_quality_threshold
        right = event.quality >= threshold if event.quality is not None else threshold <= 0
        state.first_choice.add(event.ts, 1.0 if right else 0.0)
        return
    if event.retryable and event.failure_type not in INFRASTRUCTURE_FAILURES:
        state.first_choice.add(event.ts, 0.0)


def apply_metrics(
    state: MetricsState, fleet: FleetState, breakers: BreakersState, recorded: Recorded
) -> MetricsState:
    """Fold one event in; `fleet` and `breakers` have not applied it yet."""
    event = recorded.event
    track_recovery(state.recovery, recorded)
    match event:
        case TaskSubmitted():
            if event.task_id not in fleet.tasks:
                _routable(state, event.task_id, 1, max(event.ts, event.not_before_ts or 0.0))
        case TaskRequeued():
            task = fleet.tasks.get(event.task_id)
            if task is not None and not task.terminal and event.attempt == task.attempt + 1:
                _routable(state, event.task_id, event.attempt, max(event.ts, event.not_before_ts))
        case TaskQueued():
            waiting = state.routable.get(event.task_id)
            if waiting is not None and waiting[0] == event.attempt:
                del state.routable[event.task_id]
        case TaskAssigned():
            sample_assignment(state.load, fleet, breakers, recorded)
            if accepted_assignment(fleet, event):
                waiting = state.routable.pop(event.task_id, None)
                if waiting is not None and waiting[0] == event.attempt:
                    latency_s = max(0.0, event.ts - waiting[1])
                    state.assignment_ms.add(event.ts, latency_s * 1000)
                    state.assignment_s.observe(latency_s)
        case TaskCompleted():
            _judge_first_choice(state, fleet, event)
            task = in_flight_attempt(fleet, event.task_id, event.attempt)
            if task is not None and task.agent_id == event.agent_id:
                state.completions.add(event.ts, 1.0)
            state.routable.pop(event.task_id, None)
        case TaskAttemptFailed():
            _judge_first_choice(state, fleet, event)
        case TaskFailed() | TaskCancelled():
            state.routable.pop(event.task_id, None)
        case WorkflowCompleted():
            state.workflows.add(event.ts, 1.0)
        case WorkflowFailed():
            state.workflows.add(event.ts, 0.0)
        case ScaleRecommended():
            state.scale[event.capability] = event
        case _:
            pass
    return state


# --- figures ------------------------------------------------------------------------------------


class Figure(msgspec.Struct, frozen=True, kw_only=True):
    value: float | None
    """None: nothing in the window to measure it on."""
    samples: int


class OrchestrationFigures(msgspec.Struct, frozen=True, kw_only=True):
    window_s: float
    task_assignment_latency_ms: Figure
    load_balancing_efficiency: Figure
    routing_accuracy_percent: Figure
    failure_recovery_time_ms: Figure
    system_throughput_tasks_per_second: Figure
    workflow_completion_rate: Figure
    assignment_latency_ms: dict[str, float | None]
    """p50, p95, p99."""
    recovery_time_ms: dict[str, float | None]
    """p50, p95, max (the bin's upper edge)."""


def _ratio(sums_a: float, sums_b: float, scale: float = 1.0) -> float | None:
    return None if sums_b <= 0 else scale * sums_a / sums_b


def figures(state: MetricsState, now: float, window_s: float) -> OrchestrationFigures:
    """Every figure over the window ``[now - window_s, now]``."""
    since = now - window_s
    latencies = state.assignment_ms.merged(since, now)
    recoveries = state.recovery.durations.merged(since, now)
    efficiency, in_flight = state.load.efficiency(since, now)
    first = state.first_choice.sums(since, now)
    done = state.completions.sums(since, now)
    throughput: float | None = None
    if done.first_ts is not None:
        span = max(1.0, now - max(since, done.first_ts))
        throughput = done.b / span
    flows = state.workflows.sums(since, now)
    return OrchestrationFigures(
        window_s=window_s,
        task_assignment_latency_ms=Figure(
            value=histogram_percentile(latencies, 99), samples=histogram_count(latencies)
        ),
        load_balancing_efficiency=Figure(value=efficiency, samples=in_flight),
        routing_accuracy_percent=Figure(value=_ratio(first.a, first.b, 100.0), samples=int(first.b)),
        failure_recovery_time_ms=Figure(
            value=histogram_percentile(recoveries, 95), samples=histogram_count(recoveries)
        ),
        system_throughput_tasks_per_second=Figure(value=throughput, samples=int(done.b)),
        workflow_completion_rate=Figure(value=_ratio(flows.a, flows.b), samples=int(flows.b)),
        assignment_latency_ms={q: histogram_percentile(latencies, p) for q, p in PERCENTILES.items()},
        recovery_time_ms={
            "p50": histogram_percentile(recoveries, 50),
            "p95": histogram_percentile(recoveries, 95),
            "max": histogram_percentile(recoveries, 100),
        },
    )


class MetricsView(msgspec.Struct, kw_only=True):
    """The metrics with the fleet and breaker views they read: for folding a log on its own."""

    fleet: FleetState = msgspec.field(default_factory=FleetState)
    breakers: BreakersState = msgspec.field(default_factory=BreakersState)
    metrics: MetricsState = msgspec.field(default_factory=MetricsState)


def apply_metrics_view(view: MetricsView, recorded: Recorded) -> MetricsView:
    if not admits(view.fleet, recorded):
        return view
    apply_metrics(view.metrics, view.fleet, view.breakers, recorded)
    apply_fleet(view.fleet, recorded)
    apply_breakers(view.breakers, recorded)
    return view


METRICS_VIEW: ProjectionSpec[MetricsView] = ProjectionSpec(
    name="metrics",
    state_type=MetricsView,
    initial=MetricsView,
    apply=apply_metrics_view,
)
