"""The score of one candidate agent for one task, factor by factor, every factor in [0, 1]. Pure.

    fit          = w_cap x capability + w_persona x persona + w_perf x performance + w_time x timeliness
    availability = (1 - load_weight x utilisation) x breaker factor
    score        = fit x availability

Availability multiplies rather than adds so that load can only cost a bounded share of the
score: with a load weight of 0.03 a busier agent is preferred to an idle one as long as its fit
is within 3%, which keeps work on the best agents and spreads it among equals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import msgspec

from shared.domain.breakers import BreakersState
from shared.domain.fleet import AgentView, TaskView
from shared.domain.perthread import PerThread
from shared.domain.routing.performance import (
    DRIFT_VARIANCE,
    NO_RECORD,
    PRIOR_WEIGHT,
    AgentRecord,
    Evidence,
    PerformanceState,
    Prediction,
    evidence_of,
    outlook,
    reference_duration,
)
from shared.domain.routing.persona import compatibility
from shared.domain.routing.policy import Weights
from shared.domain.routing.separation import Merit
from shared.events import Persona

DECLARED_CAPABILITY_SHARE = 0.5
"""The prior quality of an agent without outcomes: this share of capability, the rest persona."""


class Scored(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    capability: float
    persona: float
    prediction: Prediction
    performance: float
    """The performance factor: predicted quality shifted by risk x uncertainty, in [0, 1]."""
    timeliness: float
    fit: float
    expected_fit: float
    """``fit`` with the performance factor at the posterior mean (no risk shift): what the
    evidence says, compared between candidates in ``separation``."""
    expected_fit_sd: float
    """Standard deviation of ``expected_fit``: the performance weight x the prediction's, aged
    (``Prediction.aged_uncertainty``); capability, persona and timeliness are known exactly."""
    load: float
    """1 - utilisation: 1.0 idle, 0.0 full."""
    breaker: float
    availability: float
    score: float


def _clamp(value: float) -> float:
    """``min(1.0, max(0.0, value))`` (NaN to 0.0 as well), without two calls: it runs per agent."""
    value = value if value > 0.0 else 0.0
    return value if value < 1.0 else 1.0


def capability_score(agent: AgentView, task: TaskView) -> float:
    """Mean and weakest proficiency over the task type and required capabilities, half each."""
    return _capability(agent, [task.spec.task_type, *task.spec.required_capabilities])


def _capability(agent: AgentView, needed: list[str]) -> float:
    proficiencies = [agent.capabilities.get(name, 0.0) for name in needed]
    return _clamp(0.5 * sum(proficiencies) / len(proficiencies) + 0.5 * min(proficiencies))


def timeliness_score(task: TaskView, prediction: Prediction, reference_s: float | None, now: float) -> float:
    """With a deadline: the share of the predicted duration that fits before it (capped at 1).

    Without: speed relative to an average agent, ``reference / (reference + predicted)``: 0.5 for
    an average agent, toward 1 for a faster one; 0.5 when nothing is known.
    """
    duration = prediction.duration_s
    deadline = task.spec.deadline_ts
    if deadline is not None:
        left = deadline - now
        if left <= 0:
            return 0.0
        if duration is None or duration <= 0:
            return 1.0
        return _clamp(left / duration)
    if duration is None or reference_s is None or reference_s + duration <= 0:
        return 0.5
    return _clamp(reference_s / (reference_s + duration))


def score_candidate(
    performance: PerformanceState,
    breakers: BreakersState,
    agent: AgentView,
    task: TaskView,
    weights: Weights,
    now: float,
    reference_s: float | None = None,
) -> Scored:
    """Every factor of `agent` for `task`, and the score they make with `weights`.

    `reference_s` is ``reference_duration(performance, task)``, computed by the caller once per
    task when it scores many agents (None: computed here). Scoring many agents for one task:
    ``TaskScorer`` works out what they share once.
    """
    return TaskScorer(performance, breakers, task, weights, now, reference_s).score(agent)


class TaskScorer:
    """Scores agents for one task: what every candidate's score shares (the task's needs, the
    fleet's outcomes on its type, the weights) is worked out once, not once per agent. Read-only
    over the states it is given; made per decision (they change between decisions)."""

    __slots__ = (
        "_breakers",
        "_deadline",
        "_fleet_attempts",
        "_known",
        "_needed",
        "_now",
        "_outlook",
        "_parts",
        "_prior_duration",
        "_prior_success",
        "_profile",
        "_records",
        "_reference_s",
        "_style",
        "_task",
        "_task_type",
        "_weights",
        "merits",
    )

    def __init__(
        self,
        performance: PerformanceState,
        breakers: BreakersState,
        task: TaskView,
        weights: Weights,
        now: float,
        reference_s: float | None = None,
        memo: ScoreMemo | None = None,
    ) -> None:
        """`memo`: where scores already worked out are kept (None: this thread's, ``shared_scores``)."""
        if reference_s is None:
            reference_s = reference_duration(performance, task)
        self._records = performance.agents
        self._breakers = breakers.breakers
        self._task = task
        self._weights = weights
        self._now = now
        spec = task.spec
        self._task_type = spec.task_type
        self._needed = [spec.task_type, *spec.required_capabilities]
        self._profile = spec.profile
        seen = self._outlook = outlook(performance, task, reference_s)
        self._style = seen.style
        deadline = self._deadline = spec.deadline_ts
        # What ``predict_from`` reads of the outlook, the same for every agent (the same products).
        self._reference_s = reference_s
        self._prior_success = PRIOR_WEIGHT * seen.fleet_success
        self._prior_duration = None if reference_s is None else PRIOR_WEIGHT * reference_s
        self._fleet_attempts = seen.fleet.attempts
        self.merits: dict[str, Merit] = {}
        """Agent id -> the merit (``ties.merit``) of the score ``score_many`` last gave it, made with
        the score: the tie rule reads them (the same object while the score reads the same numbers)."""
        self._parts, self._known = (memo if memo is not None else shared_scores()).scores_for(
            performance,
            (spec.task_type, tuple(spec.required_capabilities), spec.profile),
            (
                weights,
                reference_s,
                deadline,
                None if deadline is None else now,  # only a deadline makes a score read `now`
                seen.fleet_success,
                seen.fleet.attempts,
            ),
        )

    def score(self, agent: AgentView) -> Scored:
        """Every factor of `agent` for the task, and the score they make (``score_candidate``)."""
        return self.score_many((agent,))[0]

    def score_many(self, agents: Iterable[AgentView]) -> list[Scored]:
        """``score`` of each of `agents`, in order: a decision scores every eligible agent.

        ``predict_from``, ``timeliness_score``, ``Prediction.aged_uncertainty`` and ``ties.merit``
        are written out, operation for operation (the same floats), with what every agent shares
        (the weights, the outlook) read once: after each outcome on the type every candidate is
        scored again."""
        breakers = self._breakers
        records = self._records
        known_scores = self._known
        merits = self.merits
        parts = self._parts
        weights = self._weights
        w_capability, w_persona = weights.capability, weights.persona
        w_performance, w_timeliness = weights.performance, weights.timeliness
        w_load, w_risk, half_open_factor = weights.load, weights.risk, weights.half_open_factor
        prior_success = self._prior_success
        prior_duration = self._prior_duration
        fleet_attempts = self._fleet_attempts
        reference_s = self._reference_s
        deadline = self._deadline
        scores: list[Scored] = []
        for agent in agents:
            agent_id = agent.agent_id
            breaker_state = breakers.get(agent_id)
            half_open = breaker_state is not None and breaker_state.status == "half_open"
            record = records.get(agent_id, NO_RECORD)
            attempts = record.overall.attempts
            known = known_scores.get(agent_id)
            load = len(agent.in_flight)
            capacity = agent.capacity
            if (
                known is not None
                and known.capabilities is agent.capabilities
                and known.persona is agent.persona
                and known.capacity == capacity
                and known.half_open == half_open
                and known.record is record
                and known.attempts == attempts
            ):
                merit = merits[agent_id] = known.merit
                if known.load == load:
                    scores.append(known.scored)
                    continue
                scored = self._reloaded(known.scored, agent)
            else:
                part = parts.get(agent_id)
                if (
                    part is None
                    or part.record is not record
                    or part.attempts != attempts
                    or part.capabilities is not agent.capabilities
                    or part.persona is not agent.persona
                ):
                    part = self._part(agent, record, attempts)
                capability = part.capability
                persona = part.persona_score
                evidence = part.evidence
                # --- predict_from(self._outlook, evidence) ---
                success = (evidence.successes + prior_success) / evidence.attempts_weighted
                success_variance = success * (1.0 - success) / evidence.variance_denominator
                quality_if_success = evidence.quality_if_success
                uncertainty = math.sqrt(
                    evidence.quality_if_success_squared * success_variance
                    + success * success / evidence.precision
                )
                if prior_duration is None:
                    duration = evidence.duration_mean
                else:
                    duration = (evidence.duration_sum + prior_duration) / evidence.timed_weighted
                quality = success * quality_if_success
                quality = quality if quality > 0.0 else 0.0  # min(1.0, max(0.0, quality))
                quality = quality if quality < 1.0 else 1.0
                others_since_last = fleet_attempts - evidence.last_outcome_at
                prediction = Prediction(
                    quality=quality,
                    uncertainty=uncertainty,
                    success_probability=success,
                    quality_if_success=quality_if_success,
                    duration_s=duration,
                    observations=evidence.attempts,
                    others_since_last=others_since_last,
                )
                # --- the factors ---
                performance_factor = _clamp(quality + w_risk * uncertainty)
                if deadline is not None:
                    timeliness = timeliness_score(self._task, prediction, reference_s, self._now)
                elif duration is None or reference_s is None or reference_s + duration <= 0:
                    timeliness = 0.5
                else:
                    timeliness = _clamp(reference_s / (reference_s + duration))
                declared = w_capability * capability + w_persona * persona
                fit = declared + w_performance * performance_factor + w_timeliness * timeliness
                fit = fit if fit < 1.0 else 1.0  # min(1.0, fit)
                expected_fit = declared + w_performance * quality + w_timeliness * timeliness
                expected_fit = expected_fit if expected_fit < 1.0 else 1.0
                free = _clamp(1.0 - (load / capacity if capacity else 1.0))  # 1 - .utilisation
                breaker = half_open_factor if half_open else 1.0
                availability = (1.0 - w_load * (1.0 - free)) * breaker
                expected_fit_sd = w_performance * math.sqrt(
                    uncertainty**2 + DRIFT_VARIANCE * others_since_last  # .aged_uncertainty
                )
                scored = Scored(
                    agent_id=agent_id,
                    capability=capability,
                    persona=persona,
                    prediction=prediction,
                    performance=performance_factor,
                    timeliness=timeliness,
                    fit=fit,
                    expected_fit=expected_fit,
                    expected_fit_sd=expected_fit_sd,
                    load=free,
                    breaker=breaker,
                    availability=availability,
                    score=fit * availability,
                )
                merit = merits[agent_id] = Merit(  # ties.merit(scored)
                    agent_id=agent_id, mean=expected_fit * breaker, sd=expected_fit_sd * breaker
                )
            # ``_Known(...)`` without the keyword-capable ``__new__`` of a NamedTuple (a decision
            # makes one per candidate after every outcome): the same tuple.
            known_scores[agent_id] = tuple.__new__(
                _Known,
                (
                    agent.capabilities,
                    agent.persona,
                    load,
                    capacity,
                    half_open,
                    record,
                    attempts,
                    scored,
                    merit,
                ),
            )
            scores.append(scored)
        return scores

    def _part(self, agent: AgentView, record: AgentRecord, attempts: int) -> _Part:
        """What of the agent's score the fleet, the weights and the instant leave alone: remembered
        while the agent is not registered again and learns no outcome of its own."""
        part = self._parts.get(agent.agent_id)
        if part is None or part.capabilities is not agent.capabilities or part.persona is not agent.persona:
            capability = _capability(agent, self._needed)
            persona = compatibility(agent.persona, self._profile)
            declared = DECLARED_CAPABILITY_SHARE * capability + (1.0 - DECLARED_CAPABILITY_SHARE) * persona
        elif part.record is not record or part.attempts != attempts:
            capability, persona, declared = part.capability, part.persona_score, part.declared
        else:
            return part
        part = self._parts[agent.agent_id] = _Part(
            agent.capabilities,
            agent.persona,
            capability,
            persona,
            declared,
            record,
            attempts,
            evidence_of(record, self._task_type, self._style, declared),
        )
        return part

    def _reloaded(self, scored: Scored, agent: AgentView) -> Scored:
        """`scored` (of the agent on the same view at another load) with its load now: only the
        load, the availability and the score read the load (the rest is the same numbers)."""
        load = _clamp(1.0 - agent.utilisation)
        availability = (1.0 - self._weights.load * (1.0 - load)) * scored.breaker
        return msgspec.structs.replace(
            scored, load=load, availability=availability, score=scored.fit * availability
        )


class _Part(NamedTuple):
    """An agent's capability, persona and declared prior for a kind of task (while its
    capabilities and persona are the same objects), and the evidence of its own outcomes (while
    its record is the same object at the same count)."""

    capabilities: dict[str, float]
    persona: Persona
    capability: float
    persona_score: float
    declared: float
    record: AgentRecord
    attempts: int
    evidence: Evidence


class _Known(NamedTuple):
    """An agent's score for a kind of task in a context, and what of the agent it was worked out on."""

    capabilities: dict[str, float]
    persona: Persona
    load: int
    capacity: int
    half_open: bool
    record: AgentRecord
    attempts: int
    scored: Scored
    merit: Merit
    """``ties.merit(scored)`` (the same for the score at another load: a merit reads no load)."""


class _Kind:
    """One kind of task's memo: the agents' parts, and their whole scores per context."""

    __slots__ = ("contexts", "parts")

    def __init__(self) -> None:
        self.parts: dict[str, _Part] = {}
        self.contexts: dict[tuple[object, ...], dict[str, _Known]] = {}


class ScoreMemo:
    """Scores already worked out, and the parts of them that outlast a change, exact either way.

    A plan decides many tasks on the same view at the same instant, most of them alike, and
    between two of its decisions only the load of the agent just given work changes; at a low
    rate every decision has an instant of its own and an outcome is learned between almost every
    two. Scoring every agent again for each task was most of a decision's CPU.

    What a score reads, and where the memo keys it:

    * the kind of task (type, required capabilities, profile): the memo's kinds;
    * the agent's capabilities and persona (replaced whole when it registers again), its own
      learned record (``learn``, the state's only change, counts ``overall.attempts`` with every
      outcome of the agent: the record held, its count compared), its load, its capacity and
      whether its breaker is half-open: compared per agent;
    * the context, the same for every agent: the weights, the reference duration, the deadline and
      `now` (read by the timeliness of a task with a deadline, and nothing else), the fleet's
      success rate and outcome count on the type (every outcome on the type moves the count, which
      ages every agent's uncertainty): a whole score is kept per context.

    So a whole score is used again only on the same numbers. An outcome on the type makes a new
    context, but of each agent that did not report it, the part that reads neither the context nor
    the load (capability, persona, declared prior, the ``Evidence`` of its record) is kept and
    only ``predict_from`` and the weighing are worked out again. When only an agent's load
    differs (the agent just given work in a plan), its availability and score are.
    """

    def __init__(self, max_kinds: int = 256, max_contexts: int = 8) -> None:
        self.max_kinds = max_kinds
        self.max_contexts = max_contexts
        self._performance: PerformanceState | None = None
        """Held (not only its id) so that another state can never be taken for it."""
        self._kinds: dict[tuple[object, ...], _Kind] = {}

    def scores_for(
        self, performance: PerformanceState, kind: tuple[object, ...], context: tuple[object, ...]
    ) -> tuple[dict[str, _Part], dict[str, _Known]]:
        """The parts known for tasks of `kind` on `performance`, and the scores known in `context`
        (agent id -> each). `context` ends with the fleet's outcome count on the task's type."""
        if performance is not self._performance:
            self._performance = performance
            self._kinds.clear()
        known = self._kinds.get(kind)
        if known is None:
            if len(self._kinds) >= self.max_kinds:
                self._kinds.clear()
            known = self._kinds[kind] = _Kind()
        contexts = known.contexts
        scores = contexts.get(context)
        if scores is None:
            # Contexts come in the order of the fleet's count on the type, which only grows: once
            # the last one's count is not this one's, none of them can be asked for again.
            if contexts and (
                len(contexts) >= self.max_contexts or next(reversed(contexts))[-1] != context[-1]
            ):
                contexts.clear()
            scores = contexts[context] = {}
        return known.parts, scores

    def clear(self) -> None:
        self._performance = None
        self._kinds.clear()


shared_scores = PerThread(ScoreMemo)
"""The memo every ``TaskScorer`` of this thread uses unless given its own."""
