"""Learned performance: how well each agent does each kind of task, from the outcomes in the log. Pure.

Every accepted result (``task.completed``) and every attempt the agent failed
(``task.attempt_failed``) is counted per agent x task type and per agent x type x the cognitive
style the task preferred. Quality on success is modelled per agent as a sum of Gaussian effects::

    quality(type, style) = agent mean + type effect + style effect + interaction + noise
    agent mean ~ N(declared fit, 0.15^2)   type, style effects ~ N(0, 0.1^2)   interaction ~ N(0, 0.02^2)

(the declared fit is capability + persona: all that is known of a new agent). After each outcome
the type and style effects are refitted (ridge regression, a few warm-started Gauss-Seidel sweeps
over the agent's type x style means), so what an agent shows on one type informs the others and a
style effect is measured net of the types it came with (the router's own choices would bias plain
averages). A prediction is the posterior mean, times the success probability (a Beta posterior
per agent x type, starting from the fleet's rate for the type); its standard deviation is the sum
of the effects' posterior variances: large for a new agent, a new type or a new style, shrinking
as outcomes accumulate. That is what lets the router explore unproven agents (an optimistic bonus)
or avoid them (a pessimistic one). The state holds sums and effects per agent, type and style,
never per task, and is a pure function of the log: replay gives the same numbers.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

import msgspec

from shared.domain.fleet import FleetState, TaskView, in_flight_attempt
from shared.events import TaskAttemptFailed, TaskCompleted
from shared.recorded import Recorded

AGENT_SD: Final = 0.15
"""Prior spread of an agent's mean quality around its declared fit."""
TYPE_SD: Final = 0.1
"""Prior spread of an agent's type effects (how much better or worse it does one type)."""
STYLE_SD: Final = 0.1
"""Prior spread of an agent's style effects."""
INTERACTION_SD: Final = 0.02
"""Prior spread of what one type x style adds beyond the sum of its type and style effects."""
NOISE_SD: Final = 0.1
"""Prior spread of one reported quality around the agent's mean for its type x style."""

PRIOR_WEIGHT: Final = 2.0
"""Pseudo-outcomes the prior success rate and the prior noise are worth."""

PRIOR_SUCCESS: Final = 0.9
"""Success probability assumed before anyone has run the task type (then: the fleet's rate)."""

FIT_SWEEPS: Final = 3
"""Gauss-Seidel sweeps of the effects after each outcome (warm-started: near converged)."""

DRIFT_VARIANCE: Final = 2e-6
"""How much an agent's quality may drift per outcome other agents report on the type while it has
none (standard deviation 0.014 after 100, 0.045 after 1,000). Only comparisons between agents use
it (``Prediction.aged_uncertainty``): an agent set aside on a few unlucky outcomes is tried again
once the others have moved on, soon if it was close, late if it was far behind."""

NOT_THE_AGENTS_FAULT: Final = frozenset({"rebalanced", "dependency_failure"})
"""Failed attempts that say nothing about the agent: work moved away by the balancer, something the
task depends on failing."""

ANY_STYLE: Final = "any"
"""Style key of tasks that prefer no cognitive style."""


class Cell(msgspec.Struct, kw_only=True, array_like=True):
    """Sufficient statistics of one (agent, context): outcomes, reported qualities, durations."""

    attempts: int = 0
    successes: int = 0
    rated: int = 0
    quality_sum: float = 0.0
    quality_sq: float = 0.0
    timed: int = 0
    duration_sum: float = 0.0

    @property
    def quality_mean(self) -> float:
        return self.quality_sum / self.rated if self.rated else 0.0

    @property
    def duration_mean(self) -> float | None:
        return self.duration_sum / self.timed if self.timed else None


EMPTY: Final = Cell()


class AgentRecord(msgspec.Struct, kw_only=True):
    overall: Cell = msgspec.field(default_factory=Cell)
    by_type: dict[str, Cell] = {}
    by_type_style: dict[str, dict[str, Cell]] = {}
    """type -> style -> outcomes."""
    style_information: dict[str, float] = {}
    """Outcomes that tell a style's effect apart from the type effects (see ``_refit``)."""
    type_effect: dict[str, float] = {}
    style_effect: dict[str, float] = {}
    noise_variance: float = NOISE_SD**2
    """Variance of one reported quality around its type x style mean (pooled, shrunk to the prior)."""
    last_outcome_at: dict[str, int] = {}
    """type -> the fleet's outcome count on the type just after this agent's last one on it."""


class PerformanceState(msgspec.Struct, kw_only=True):
    agents: dict[str, AgentRecord] = {}
    fleet_by_type: dict[str, Cell] = {}
    """Fleet-wide per task type: the prior success rate and duration of agents not tried yet."""
    outcomes: int = 0


class Prediction(msgspec.Struct, frozen=True, kw_only=True):
    """What the router expects if it gives this task to this agent."""

    quality: float
    """Expected quality of the outcome: success probability x quality when it succeeds."""
    uncertainty: float
    """Posterior standard deviation of ``quality``."""
    success_probability: float
    quality_if_success: float
    duration_s: float | None
    observations: int
    """Attempts of this agent on this task type so far."""
    others_since_last: int = 0
    """Outcomes of other agents on this task type since this agent's last one (all of them if it
    has none): how stale what is known of it is."""

    @property
    def aged_uncertainty(self) -> float:
        """``uncertainty`` widened by how far the agent may have drifted since its last outcome on
        the type (``DRIFT_VARIANCE`` per outcome of others): what comparing agents uses."""
        return math.sqrt(self.uncertainty**2 + DRIFT_VARIANCE * self.others_since_last)


def style_key(task: TaskView) -> str:
    return task.spec.profile.preferred_cognitive_style or ANY_STYLE


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt's result that says something about the agent that ran it."""

    agent_id: str
    task: TaskView
    success: bool
    quality: float | None
    duration_s: float


def outcome_of(fleet: FleetState, recorded: Recorded) -> Outcome | None:
    """The outcome `recorded` reports, read against a fleet view that has not applied it yet.

    Stale reports (a superseded attempt, a redelivered result) find no current holder and are
    None, exactly as the fleet view ignores them; so are failures that are not the agent's doing
    (work moved by the balancer, input no retry can fix).
    """
    event = recorded.event
    if isinstance(event, TaskCompleted):
        task = in_flight_attempt(fleet, event.task_id, event.attempt)
        if task is None or task.agent_id != event.agent_id:
            return None
        return Outcome(
            agent_id=event.agent_id,
            task=task,
            success=True,
            quality=event.quality,
            duration_s=event.duration_s,
        )
    if isinstance(event, TaskAttemptFailed):
        task = in_flight_attempt(fleet, event.task_id, event.attempt)
        if task is None or not task.agent_id:
            return None
        if not event.retryable or event.failure_type in NOT_THE_AGENTS_FAULT:
            return None
        return Outcome(
            agent_id=task.agent_id, task=task, success=False, quality=None, duration_s=event.duration_s
        )
    return None


def learn(state: PerformanceState, outcome: Outcome) -> PerformanceState:
    """Count one outcome, then refit the agent's additive quality model.

    Runs for every outcome in every view that learns (router, balancer): the cells are found
    without building spares, and the four are counted alike in one pass."""
    agents = state.agents
    record = agents.get(outcome.agent_id)
    if record is None:
        record = agents[outcome.agent_id] = AgentRecord()
    spec = outcome.task.spec
    task_type = spec.task_type
    style = spec.profile.preferred_cognitive_style or ANY_STYLE
    by_type = record.by_type.get(task_type)
    if by_type is None:
        by_type = record.by_type[task_type] = Cell()
    by_style = record.by_type_style.get(task_type)
    if by_style is None:
        by_style = record.by_type_style[task_type] = {}
    exact = by_style.get(style)
    if exact is None:
        exact = by_style[style] = Cell()
    fleet = state.fleet_by_type.get(task_type)
    if fleet is None:
        fleet = state.fleet_by_type[task_type] = Cell()
    success = outcome.success
    quality = outcome.quality if success else None
    duration_s = outcome.duration_s
    timed = success and duration_s is not None and duration_s > 0
    for cell in (record.overall, by_type, exact, fleet):
        cell.attempts += 1
        if success:
            cell.successes += 1
        if quality is not None:
            cell.rated += 1
            cell.quality_sum += quality
            cell.quality_sq += quality * quality
        if timed:
            cell.timed += 1
            cell.duration_sum += duration_s
    record.last_outcome_at[task_type] = fleet.attempts
    if quality is not None:
        _refit(record)
    state.outcomes += 1
    return state


_NOISE_PRIOR: Final = PRIOR_WEIGHT * NOISE_SD**2
"""The prior's share of the pooled noise (``_refit``): the very float its formula gives."""
_TYPE_PRIOR_VARIANCE: Final = TYPE_SD**2
_STYLE_PRIOR_VARIANCE: Final = STYLE_SD**2


def _refit(record: AgentRecord) -> None:
    """Posterior means of the type and style effects around the agent's mean (ridge, Gauss-Seidel).

    Also how much is known of each style effect: outcomes of a style on a type count only as far
    as the type was also seen with other styles (``n_ts x (1 - n_ts / n_t)``, the effective size
    of a contrast); a style only ever seen on one type cannot be told from that type's effect.

    Runs after every rated outcome, so it is written for cost, with every float worked out by the
    same operations in the same order as the plain formulas (``tests/unit/test_learn_cost.py``
    checks it against them, byte for byte): what does not change between sweeps (each cell's
    distance to the agent's mean, each effect's denominator) is worked out once; effects are
    indexed lists during the sweeps and written back in the order they first appear. Not lazy:
    each refit starts from the effects the last one left (warm start), so skipping one changes
    every later number.
    """
    overall = record.overall
    by_type = record.by_type
    mean = overall.quality_sum / overall.rated if overall.rated else 0.0
    if len(record.by_type_style) == 1:
        ((task_type, cells),) = record.by_type_style.items()
        if len(cells) == 1:
            _refit_one(record, task_type, *next(iter(cells.items())), mean)
            return
    type_index: dict[str, int] = {}
    style_index: dict[str, int] = {}
    type_counts: list[int] = []
    style_counts: list[int] = []
    rows: list[tuple[int, int, int, float]] = []
    """(type index, style index, rated, cell mean - agent mean) per rated cell, in cell order."""
    squares_terms: list[float] = []
    freedom = 0
    information: dict[str, float] = {}
    for task_type, cells in record.by_type_style.items():
        for style, cell in cells.items():
            rated = cell.rated
            if not rated:
                continue
            quality_mean = cell.quality_sum / rated
            squares_terms.append(max(0.0, cell.quality_sq - rated * quality_mean**2))
            freedom += rated - 1
            t = type_index.get(task_type)
            if t is None:
                t = type_index[task_type] = len(type_counts)
                type_counts.append(0)
            type_counts[t] += rated
            s = style_index.get(style)
            if s is None:
                s = style_index[style] = len(style_counts)
                style_counts.append(0)
            style_counts[s] += rated
            share = rated / by_type[task_type].rated
            information[style] = information.get(style, 0.0) + rated * (1.0 - share)
            rows.append((t, s, rated, quality_mean - mean))
    noise = (sum(squares_terms) + _NOISE_PRIOR) / (freedom + PRIOR_WEIGHT)
    record.noise_variance = noise
    record.style_information = information
    type_denominators = [count + noise / _TYPE_PRIOR_VARIANCE for count in type_counts]
    style_denominators = [count + noise / _STYLE_PRIOR_VARIANCE for count in style_counts]
    styles = record.style_effect
    style_values = [styles.get(style, 0.0) for style in style_index]
    type_values = [0.0] * len(type_counts)
    for _sweep in range(FIT_SWEEPS):
        sums = [0.0] * len(type_counts)
        for t, s, rated, distance in rows:
            sums[t] = sums[t] + rated * (distance - style_values[s])
        for t, total in enumerate(sums):
            type_values[t] = total / type_denominators[t]
        sums = [0.0] * len(style_counts)
        for t, s, rated, distance in rows:
            sums[s] = sums[s] + rated * (distance - type_values[t])
        for s, total in enumerate(sums):
            style_values[s] = total / style_denominators[s]
    types = record.type_effect
    for task_type, t in type_index.items():
        types[task_type] = type_values[t]
    for style, s in style_index.items():
        styles[style] = style_values[s]


def _refit_one(record: AgentRecord, task_type: str, style: str, cell: Cell, mean: float) -> None:
    """``_refit`` of an agent with outcomes of one type x style alone (an agent that does one kind
    of work): the same operations, on plain floats."""
    rated = cell.rated
    quality_mean = cell.quality_sum / rated
    squares = sum((max(0.0, cell.quality_sq - rated * quality_mean**2),))
    noise = (squares + _NOISE_PRIOR) / (rated - 1 + PRIOR_WEIGHT)
    record.noise_variance = noise
    record.style_information = {style: 0.0 + rated * (1.0 - rated / record.by_type[task_type].rated)}
    distance = quality_mean - mean
    type_denominator = rated + noise / _TYPE_PRIOR_VARIANCE
    style_denominator = rated + noise / _STYLE_PRIOR_VARIANCE
    style_value = record.style_effect.get(style, 0.0)
    type_value = 0.0
    for _sweep in range(FIT_SWEEPS):
        type_value = (0.0 + rated * (distance - style_value)) / type_denominator
        style_value = (0.0 + rated * (distance - type_value)) / style_denominator
    record.type_effect[task_type] = type_value
    record.style_effect[style] = style_value


NO_RECORD: Final = AgentRecord()
"""What is known of an agent without outcomes (read only)."""


class Outlook(msgspec.Struct, frozen=True, kw_only=True):
    """What a prediction for one task reads that is the same for every agent: worked out once per
    task when a decision predicts every agent of the fleet (``predict_with``)."""

    task_type: str
    style: str
    fleet: Cell
    """The fleet's outcomes on the type."""
    fleet_success: float
    """The fleet's success rate on the type, with the prior: an untried agent's prior."""
    reference_s: float | None


def outlook(state: PerformanceState, task: TaskView, reference_s: float | None = None) -> Outlook:
    """The agent-independent part of predicting `task` (see ``predict``)."""
    task_type = task.spec.task_type
    fleet = state.fleet_by_type.get(task_type, EMPTY)
    return Outlook(
        task_type=task_type,
        style=style_key(task),
        fleet=fleet,
        fleet_success=(fleet.successes + PRIOR_WEIGHT * PRIOR_SUCCESS) / (fleet.attempts + PRIOR_WEIGHT),
        reference_s=reference_s,
    )


def predict(
    state: PerformanceState,
    agent_id: str,
    task: TaskView,
    declared: float,
    reference_s: float | None = None,
) -> Prediction:
    """Posterior expectation of the agent's outcome on `task`; `declared` is the prior quality,
    `reference_s` the duration expected of an agent not timed yet (see ``reference_duration``)."""
    return predict_with(state, outlook(state, task, reference_s), agent_id, declared)


def predict_with(state: PerformanceState, seen: Outlook, agent_id: str, declared: float) -> Prediction:
    """``predict`` with the task's `seen` outlook already worked out (it must be of `state`)."""
    record = state.agents.get(agent_id, NO_RECORD)
    return predict_from(seen, evidence_of(record, seen.task_type, seen.style, declared))


class Evidence(NamedTuple):
    """What a prediction reads of one agent's own outcomes on a type x style, with its declared
    prior: all of it but the fleet's outcomes on the type and the reference duration (``Outlook``).

    It changes only when the agent learns an outcome (``learn`` counts its ``overall.attempts``),
    so a router deciding between outcomes of others keeps it (``ScoreMemo``) and works out only
    ``predict_from``. The counts are copied out, never the cells: ``learn`` changes cells in place.
    """

    quality_if_success: float
    quality_if_success_squared: float
    precision: float
    """Precision of ``quality_if_success`` (1 / its posterior variance)."""
    successes: int
    attempts: int
    attempts_weighted: float
    """``attempts + PRIOR_WEIGHT``."""
    variance_denominator: float
    """``attempts + PRIOR_WEIGHT + 1.0``."""
    duration_sum: float
    timed_weighted: float
    """``timed + PRIOR_WEIGHT``."""
    duration_mean: float | None
    last_outcome_at: int


def evidence_of(record: AgentRecord, task_type: str, style: str, declared: float) -> Evidence:
    """The agent-only part of ``predict_with`` (its `record`, ``NO_RECORD`` if it has none)."""
    overall = record.overall
    by_type = record.by_type.get(task_type, EMPTY)
    by_style = record.by_type_style.get(task_type)
    exact = by_style.get(style, EMPTY) if by_style else EMPTY
    noise = record.noise_variance

    # Posterior of each effect: precision = outcomes / noise + 1 / prior variance.
    mean_precision = overall.rated / noise + 1.0 / AGENT_SD**2
    agent_mean = (overall.quality_sum / noise + declared / AGENT_SD**2) / mean_precision
    additive = agent_mean + record.type_effect.get(task_type, 0.0) + record.style_effect.get(style, 0.0)
    additive_variance = (
        1.0 / mean_precision
        + 1.0 / (by_type.rated / noise + 1.0 / TYPE_SD**2)
        + 1.0 / (record.style_information.get(style, 0.0) / noise + 1.0 / STYLE_SD**2)
        + INTERACTION_SD**2
    )
    # The exact type x style's own outcomes are direct evidence on it: a precision-weighted mean.
    precision = 1.0 / additive_variance + exact.rated / noise
    quality_if_success = min(
        1.0, max(0.0, (additive / additive_variance + exact.quality_sum / noise) / precision)
    )
    attempts = by_type.attempts
    return Evidence(
        quality_if_success=quality_if_success,
        quality_if_success_squared=quality_if_success * quality_if_success,
        precision=precision,
        successes=by_type.successes,
        attempts=attempts,
        attempts_weighted=attempts + PRIOR_WEIGHT,
        variance_denominator=attempts + PRIOR_WEIGHT + 1.0,
        duration_sum=by_type.duration_sum,
        timed_weighted=by_type.timed + PRIOR_WEIGHT,
        duration_mean=by_type.duration_mean,
        last_outcome_at=record.last_outcome_at.get(task_type, 0),
    )


def predict_from(seen: Outlook, evidence: Evidence) -> Prediction:
    """The prediction of an agent with `evidence` for a task with the outlook `seen`: what the
    fleet's outcomes on the type (its success rate, its count) and the reference duration add."""
    success = (evidence.successes + PRIOR_WEIGHT * seen.fleet_success) / evidence.attempts_weighted
    success_variance = success * (1.0 - success) / evidence.variance_denominator
    quality_if_success = evidence.quality_if_success
    uncertainty = math.sqrt(
        evidence.quality_if_success_squared * success_variance + success * success / evidence.precision
    )
    reference_s = seen.reference_s
    if reference_s is None:
        duration = evidence.duration_mean
    else:
        duration = (evidence.duration_sum + PRIOR_WEIGHT * reference_s) / evidence.timed_weighted
    return Prediction(
        quality=min(1.0, max(0.0, success * quality_if_success)),
        uncertainty=uncertainty,
        success_probability=success,
        quality_if_success=quality_if_success,
        duration_s=duration,
        observations=evidence.attempts,
        others_since_last=seen.fleet.attempts - evidence.last_outcome_at,
    )


def reference_duration(state: PerformanceState, task: TaskView) -> float | None:
    """The duration an average agent takes on this task (what the task says, else the fleet mean)."""
    if task.spec.estimated_duration_s is not None:
        return task.spec.estimated_duration_s
    return state.fleet_by_type.get(task.spec.task_type, EMPTY).duration_mean
