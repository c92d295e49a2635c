"""The score of one candidate agent for one task, factor by factor, every factor in [0, 1]. Pure.

    fit          = w_cap x capability + w_persona x persona + w_perf x performance + w_time x timeliness
    availability = (1 - load_weight x utilisation) x breaker factor
    score        = fit x availability

Availability multiplies rather than adds so that load can only cost a bounded share of the
score: with a load weight of 0.03 a busier agent is preferred to an idle one as long as its fit
is within 3%, which keeps work on the best agents and spreads it among equals.
"""

from __future__ import annotations

import msgspec

from shared.domain.breakers import BreakersState
from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.performance import PerformanceState, Prediction, predict, reference_duration
from shared.domain.routing.persona import compatibility
from shared.domain.routing.policy import Weights

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
    return min(1.0, max(0.0, value))


def capability_score(agent: AgentView, task: TaskView) -> float:
    """Mean and weakest proficiency over the task type and required capabilities, half each."""
    needed = [task.spec.task_type, *task.spec.required_capabilities]
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
    task when it scores many agents (None: computed here).
    """
    if reference_s is None:
        reference_s = reference_duration(performance, task)
    capability = capability_score(agent, task)
    persona = compatibility(agent.persona, task.spec.profile)
    declared = DECLARED_CAPABILITY_SHARE * capability + (1.0 - DECLARED_CAPABILITY_SHARE) * persona
    prediction = predict(performance, agent.agent_id, task, declared, reference_s)
    performance_factor = min(1.0, max(0.0, prediction.quality + weights.risk * prediction.uncertainty))
    timeliness = timeliness_score(task, prediction, reference_s, now)

    def fit_with(performance_value: float) -> float:
        return min(
            1.0,
            weights.capability * capability
            + weights.persona * persona
            + weights.performance * performance_value
            + weights.timeliness * timeliness,
        )

    fit = fit_with(performance_factor)
    load = min(1.0, max(0.0, 1.0 - agent.utilisation))  # beyond 1 after a restart with less capacity
    breaker_state = breakers.breakers.get(agent.agent_id)
    breaker = weights.half_open_factor if breaker_state and breaker_state.status == "half_open" else 1.0
    availability = (1.0 - weights.load * (1.0 - load)) * breaker
    return Scored(
        agent_id=agent.agent_id,
        capability=capability,
        persona=persona,
        prediction=prediction,
        performance=performance_factor,
        timeliness=timeliness,
        fit=fit,
        expected_fit=fit_with(prediction.quality),
        expected_fit_sd=weights.performance * prediction.aged_uncertainty,
        load=load,
        breaker=breaker,
        availability=availability,
        score=fit * availability,
    )
