"""The score of one candidate agent for one task, factor by factor, every factor in [0, 1]. Pure.

    fit          = w_cap x capability + w_persona x persona + w_perf x performance + w_time x timeliness
    availability = (1 - load_weight x utilisation) x breaker factor
    score        = fit x availability

Availability multiplies rather than adds so that load can only cost a bounded share of the
score: with a load weight of 0.03 a busier agent is preferred to an idle one as long as its fit
is within 3%, which keeps work on the best agents and spreads it among equals.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from shared.domain.breakers import BreakersState
from shared.domain.fleet import AgentView, TaskView
from shared.domain.perthread import PerThread
from shared.domain.routing.performance import (
    Outlook,
    PerformanceState,
    Prediction,
    outlook,
    predict_with,
    reference_duration,
)
from shared.domain.routing.persona import compatibility
from shared.domain.routing.policy import Weights
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
        "_memo",
        "_needed",
        "_now",
        "_outlook",
        "_performance",
        "_profile",
        "_task",
        "_weights",
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
        self._performance = performance
        self._breakers = breakers.breakers
        self._task = task
        self._weights = weights
        self._now = now
        self._needed = [task.spec.task_type, *task.spec.required_capabilities]
        self._profile = task.spec.profile
        self._outlook: Outlook = outlook(performance, task, reference_s)
        spec = task.spec
        self._memo = (memo if memo is not None else shared_scores()).scores_for(
            performance,
            now,
            (
                weights,
                reference_s,
                spec.task_type,
                tuple(spec.required_capabilities),
                spec.profile,
                spec.deadline_ts,
            ),
        )

    def score(self, agent: AgentView) -> Scored:
        """Every factor of `agent` for the task, and the score they make (``score_candidate``)."""
        breaker_state = self._breakers.get(agent.agent_id)
        half_open = breaker_state is not None and breaker_state.status == "half_open"
        known = self._memo.get(agent.agent_id)
        load = len(agent.in_flight)
        if (
            known is not None
            and known.capabilities is agent.capabilities
            and known.persona is agent.persona
            and known.capacity == agent.capacity
            and known.half_open == half_open
        ):
            if known.load == load:
                return known.scored
            scored = self._reloaded(known.scored, agent)
        else:
            scored = self._score(agent, half_open)
        self._memo[agent.agent_id] = _Known(
            agent.capabilities, agent.persona, load, agent.capacity, half_open, scored
        )
        return scored

    def _reloaded(self, scored: Scored, agent: AgentView) -> Scored:
        """`scored` (of the agent on the same view at another load) with its load now: only the
        load, the availability and the score read the load (the rest is the same numbers)."""
        load = _clamp(1.0 - agent.utilisation)
        availability = (1.0 - self._weights.load * (1.0 - load)) * scored.breaker
        return msgspec.structs.replace(
            scored, load=load, availability=availability, score=scored.fit * availability
        )

    def _score(self, agent: AgentView, half_open: bool) -> Scored:
        weights = self._weights
        capability = _capability(agent, self._needed)
        persona = compatibility(agent.persona, self._profile)
        declared = DECLARED_CAPABILITY_SHARE * capability + (1.0 - DECLARED_CAPABILITY_SHARE) * persona
        prediction = predict_with(self._performance, self._outlook, agent.agent_id, declared)
        performance_factor = _clamp(prediction.quality + weights.risk * prediction.uncertainty)
        timeliness = timeliness_score(self._task, prediction, self._outlook.reference_s, self._now)
        known = weights.capability * capability + weights.persona * persona
        fit = known + weights.performance * performance_factor + weights.timeliness * timeliness
        fit = fit if fit < 1.0 else 1.0  # min(1.0, fit)
        expected_fit = known + weights.performance * prediction.quality + weights.timeliness * timeliness
        expected_fit = expected_fit if expected_fit < 1.0 else 1.0
        load = _clamp(1.0 - agent.utilisation)  # beyond 1 after a restart with less capacity
        breaker = weights.half_open_factor if half_open else 1.0
        availability = (1.0 - weights.load * (1.0 - load)) * breaker
        return Scored(
            agent_id=agent.agent_id,
            capability=capability,
            persona=persona,
            prediction=prediction,
            performance=performance_factor,
            timeliness=timeliness,
            fit=fit,
            expected_fit=expected_fit,
            expected_fit_sd=weights.performance * prediction.aged_uncertainty,
            load=load,
            breaker=breaker,
            availability=availability,
            score=fit * availability,
        )


class _Known(NamedTuple):
    """An agent's score for a kind of task, and what of the agent it was worked out on."""

    capabilities: dict[str, float]
    persona: Persona
    load: int
    capacity: int
    half_open: bool
    scored: Scored


class ScoreMemo:
    """Scores already worked out, for tasks that score alike, while nothing else they read changes.

    A plan decides many tasks on the same view at the same instant, most of them alike (the same
    type, needs, profile and weights), and between two of its decisions only the load of the agent
    just given work changes: scoring every agent again for each task is most of a decision's CPU.

    A score reads the agent (its capabilities and persona, replaced whole when it registers again;
    its load and capacity; whether its breaker is half-open), the task's kind (the memo's key),
    the weights and the reference duration (in the key too), `now` (deadlines) and the learned
    performance. The memo keeps one instant of one performance state: it is emptied when `now`
    changes, when another state is scored, or when the state learned an outcome (``learn``, its
    only change, counts ``outcomes``). An agent's entry is used only while what it was worked out
    on is the same (the same objects, the same numbers), so the scores are exactly those computed
    afresh; when only its load differs (the agent just given work in a plan), the factors the load
    does not touch are kept and its availability and score worked out again.
    """

    def __init__(self, max_kinds: int = 256) -> None:
        self.max_kinds = max_kinds
        self._performance: PerformanceState | None = None
        """Held (not only its id) so that another state can never be taken for it."""
        self._outcomes = -1
        self._now = float("nan")
        self._kinds: dict[tuple[object, ...], dict[str, _Known]] = {}

    def scores_for(
        self, performance: PerformanceState, now: float, kind: tuple[object, ...]
    ) -> dict[str, _Known]:
        """The scores known for tasks of `kind` on `performance` at `now` (agent id -> score)."""
        if performance is not self._performance or performance.outcomes != self._outcomes or now != self._now:
            self._performance = performance
            self._outcomes = performance.outcomes
            self._now = now
            self._kinds.clear()
        known = self._kinds.get(kind)
        if known is None:
            if len(self._kinds) >= self.max_kinds:
                self._kinds.clear()
            known = self._kinds[kind] = {}
        return known

    def clear(self) -> None:
        self._performance = None
        self._kinds.clear()


shared_scores = PerThread(ScoreMemo)
"""The memo every ``TaskScorer`` of this thread uses unless given its own."""
