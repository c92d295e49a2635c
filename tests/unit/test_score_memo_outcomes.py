"""The score memo across outcomes and instants: what it keeps is exact, bit for bit.

The memo keeps, across outcomes of other agents and across instants, each agent's capability,
persona, declared prior and the ``Evidence`` of its own record, and whole scores while the context
they read (weights, reference duration, deadline and `now` for a deadline, the fleet's numbers on
the type) is the same. The oracle below is the scoring as it was before (one ``predict_with``
over the whole state, every factor worked out afresh), kept here verbatim.
"""

from __future__ import annotations

import math

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.domain.breakers import BreakersState
from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.performance import (
    AGENT_SD,
    EMPTY,
    INTERACTION_SD,
    NO_RECORD,
    PRIOR_WEIGHT,
    STYLE_SD,
    TYPE_SD,
    Outlook,
    PerformanceState,
    Prediction,
    outlook,
    predict_with,
    reference_duration,
)
from shared.domain.routing.persona import compatibility
from shared.domain.routing.policy import Weights, effective_weights
from shared.domain.routing.scoring import (
    DECLARED_CAPABILITY_SHARE,
    Scored,
    ScoreMemo,
    TaskScorer,
    _capability,
    _clamp,
    timeliness_score,
)
from shared.events import (
    AgentDeregistered,
    AgentRegistered,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    OrchestrationMode,
    Persona,
    RoutingStrategy,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskProfile,
    TaskSubmitted,
)
from tests.unit.router_world import Log

# --- the oracle: predict_with and the score as they were ----------------------------------------------


def _predict_with_before(
    state: PerformanceState, seen: Outlook, agent_id: str, declared: float
) -> Prediction:
    record = state.agents.get(agent_id, NO_RECORD)
    task_type = seen.task_type
    style = seen.style
    overall = record.overall
    by_type = record.by_type.get(task_type, EMPTY)
    by_style = record.by_type_style.get(task_type)
    exact = by_style.get(style, EMPTY) if by_style else EMPTY
    noise = record.noise_variance
    mean_precision = overall.rated / noise + 1.0 / AGENT_SD**2
    agent_mean = (overall.quality_sum / noise + declared / AGENT_SD**2) / mean_precision
    additive = agent_mean + record.type_effect.get(task_type, 0.0) + record.style_effect.get(style, 0.0)
    additive_variance = (
        1.0 / mean_precision
        + 1.0 / (by_type.rated / noise + 1.0 / TYPE_SD**2)
        + 1.0 / (record.style_information.get(style, 0.0) / noise + 1.0 / STYLE_SD**2)
        + INTERACTION_SD**2
    )
    precision = 1.0 / additive_variance + exact.rated / noise
    quality_if_success = min(
        1.0, max(0.0, (additive / additive_variance + exact.quality_sum / noise) / precision)
    )
    success = (by_type.successes + PRIOR_WEIGHT * seen.fleet_success) / (by_type.attempts + PRIOR_WEIGHT)
    success_variance = success * (1.0 - success) / (by_type.attempts + PRIOR_WEIGHT + 1.0)
    uncertainty = math.sqrt(
        quality_if_success * quality_if_success * success_variance + success * success / precision
    )
    reference_s = seen.reference_s
    if reference_s is None:
        duration = by_type.duration_mean
    else:
        duration = (by_type.duration_sum + PRIOR_WEIGHT * reference_s) / (by_type.timed + PRIOR_WEIGHT)
    return Prediction(
        quality=min(1.0, max(0.0, success * quality_if_success)),
        uncertainty=uncertainty,
        success_probability=success,
        quality_if_success=quality_if_success,
        duration_s=duration,
        observations=by_type.attempts,
        others_since_last=seen.fleet.attempts - record.last_outcome_at.get(task_type, 0),
    )


def _score_before(
    performance: PerformanceState,
    breakers: BreakersState,
    agent: AgentView,
    task: TaskView,
    weights: Weights,
    now: float,
) -> Scored:
    reference_s = reference_duration(performance, task)
    seen = outlook(performance, task, reference_s)
    breaker_state = breakers.breakers.get(agent.agent_id)
    half_open = breaker_state is not None and breaker_state.status == "half_open"
    capability = _capability(agent, [task.spec.task_type, *task.spec.required_capabilities])
    persona = compatibility(agent.persona, task.spec.profile)
    declared = DECLARED_CAPABILITY_SHARE * capability + (1.0 - DECLARED_CAPABILITY_SHARE) * persona
    prediction = _predict_with_before(performance, seen, agent.agent_id, declared)
    performance_factor = _clamp(prediction.quality + weights.risk * prediction.uncertainty)
    timeliness = timeliness_score(task, prediction, seen.reference_s, now)
    known = weights.capability * capability + weights.persona * persona
    fit = known + weights.performance * performance_factor + weights.timeliness * timeliness
    fit = fit if fit < 1.0 else 1.0
    expected_fit = known + weights.performance * prediction.quality + weights.timeliness * timeliness
    expected_fit = expected_fit if expected_fit < 1.0 else 1.0
    load = _clamp(1.0 - agent.utilisation)
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


# --- the world ---------------------------------------------------------------------------------------

AGENTS = ("a0", "a1", "a2", "a3")
TYPES = ("review", "code")
STYLES = (None, "creative", "analytical")
SAME_PERSONA = Persona()
KINDS = (
    TaskSubmitted(task_id="k-plain", task_type="review"),
    TaskSubmitted(
        task_id="k-styled", task_type="review", profile=TaskProfile(preferred_cognitive_style="creative")
    ),
    TaskSubmitted(task_id="k-deadline", task_type="review", deadline_ts=101.5, priority="high"),
    TaskSubmitted(task_id="k-late", task_type="code", deadline_ts=130.0, required_capabilities=["python"]),
    TaskSubmitted(task_id="k-estimated", task_type="code", estimated_duration_s=3.0, priority="critical"),
    TaskSubmitted(task_id="k-new-type", task_type="design"),
)
SETTINGS: tuple[tuple[RoutingStrategy, OrchestrationMode], ...] = (
    ("adaptive", "standard"),
    ("adaptive", "emergency"),  # a half-open factor below 1
    ("performance_optimized", "high_performance"),
)


def _fleet() -> Log:
    return Log(
        *(
            AgentRegistered(
                agent_id=agent_id,
                capabilities={"review": 0.4 + 0.15 * i, "code": 0.9 - 0.2 * i, "python": 0.8},
                persona=SAME_PERSONA,
                capacity=3,
            )
            for i, agent_id in enumerate(AGENTS)
        )
    )


agent_ids = st.sampled_from(AGENTS)
step = st.one_of(
    st.tuples(st.just("assign"), agent_ids, st.sampled_from(TYPES), st.sampled_from(STYLES)),
    st.tuples(st.just("complete"), agent_ids, st.one_of(st.none(), st.floats(0.0, 1.0)), st.floats(0.0, 5.0)),
    st.tuples(st.just("fail"), agent_ids, st.booleans(), st.sampled_from(("agent_error", "rebalanced"))),
    st.tuples(st.just("tick"), st.sampled_from((0.0, 0.25, 0.5, 1.0, 3.0))),
    st.tuples(st.just("register"), agent_ids, st.integers(0, 9), st.integers(1, 4)),
    st.tuples(st.just("half_open"), agent_ids),
    st.tuples(st.just("open"), agent_ids),
    st.tuples(st.just("close"), agent_ids),
    st.tuples(st.just("deregister"), agent_ids),
)


def _apply(log: Log, number: int, move: tuple[object, ...], held: dict[str, list[str]]) -> float:
    """Feeds one step to the log; returns how far `now` moves."""
    kind = move[0]
    if kind == "assign":
        _kind, agent_id, task_type, style = move
        assert isinstance(agent_id, str) and isinstance(task_type, str)
        task_id = f"w{number}"
        log.add(
            TaskSubmitted(
                task_id=task_id,
                task_type=task_type,
                profile=TaskProfile(preferred_cognitive_style=style),  # type: ignore[arg-type]
            ),
            TaskAssigned(
                agent_id=agent_id,
                task_id=task_id,
                attempt=1,
                breakdown={"capability": 0.7, "persona": 0.5, "predicted_quality": 0.1 * (number % 10)},
            ),
        )
        held[agent_id].append(task_id)
    elif kind == "complete":
        _kind, agent_id, quality, duration = move
        assert isinstance(agent_id, str) and isinstance(duration, float)
        if held[agent_id]:
            task_id = held[agent_id].pop(0)
            log.add(
                TaskCompleted(
                    task_id=task_id,
                    agent_id=agent_id,
                    attempt=1,
                    quality=quality,  # type: ignore[arg-type]
                    duration_s=duration,
                )
            )
    elif kind == "fail":
        _kind, agent_id, retryable, failure_type = move
        assert isinstance(agent_id, str) and isinstance(retryable, bool)
        if held[agent_id]:
            task_id = held[agent_id].pop(0)
            log.add(
                TaskAttemptFailed(
                    task_id=task_id,
                    agent_id=agent_id,
                    attempt=1,
                    retryable=retryable,
                    failure_type=failure_type,  # type: ignore[arg-type]
                    duration_s=1.5,
                )
            )
    elif kind == "tick":
        step_s = move[1]
        assert isinstance(step_s, float)
        return step_s
    elif kind == "register":  # the same agent again: new capabilities, maybe the same persona
        _kind, agent_id, variant, capacity = move
        assert isinstance(agent_id, str) and isinstance(variant, int) and isinstance(capacity, int)
        persona = Persona(cognitive_style="creative", creativity=0.1 * variant)
        log.add(
            AgentRegistered(
                agent_id=agent_id,
                capabilities={"review": 0.1 * variant, "code": 0.5, "python": 0.05 * variant},
                persona=persona if variant % 2 else SAME_PERSONA,
                capacity=capacity,
            )
        )
    elif kind == "half_open":
        log.add(BreakerHalfOpened(agent_id=str(move[1]), probes_allowed=2))
    elif kind == "open":
        log.add(BreakerOpened(agent_id=str(move[1])))
    elif kind == "close":
        log.add(BreakerClosed(agent_id=str(move[1])))
    elif kind == "deregister":
        agent_id = str(move[1])
        log.add(AgentDeregistered(agent_id=agent_id))
        held[agent_id].clear()
    return 0.0


def _check(log: Log, memo: ScoreMemo, now: float) -> None:
    state = log.state
    for spec in KINDS:
        task = TaskView(spec=spec)
        for strategy, mode in SETTINGS:
            weights = effective_weights(strategy, mode, spec, state.adaptive)
            scorer = TaskScorer(state.performance, state.breakers, task, weights, now, memo=memo)
            for agent in state.fleet.agents.values():
                got = scorer.score(agent)
                want = _score_before(state.performance, state.breakers, agent, task, weights, now)
                assert repr(got) == repr(want)  # every float to the bit (repr tells -0.0 and NaN)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(step, max_size=40), small=st.booleans())
@example(
    steps=[
        ("assign", "a1", "code", None),
        ("complete", "a1", 0.5, 1.0),
        ("assign", "a1", "code", None),
        ("complete", "a1", 0.9, 2.0),  # another type: only a1's record moves for the review kinds
    ],
    small=False,
)
@example(
    steps=[("assign", "a0", "review", None), ("complete", "a0", 0.5, 4.0), ("tick", 0.5), ("tick", 0.5)],
    small=False,
)
def test_every_remembered_score_is_the_old_score_worked_out_afresh(
    steps: list[tuple[object, ...]], small: bool
) -> None:
    log = _fleet()
    # Room for every kind and context checked, or (small) so little that forgetting is exercised.
    memo = ScoreMemo(max_kinds=3, max_contexts=2) if small else ScoreMemo(max_kinds=8, max_contexts=8)
    now = 100.0
    held: dict[str, list[str]] = {agent_id: [] for agent_id in AGENTS}
    _check(log, memo, now)
    for number, move in enumerate(steps):
        now += _apply(log, number, move, held)
        _check(log, memo, now)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(step, max_size=30))
def test_predict_with_is_the_old_prediction(steps: list[tuple[object, ...]]) -> None:
    log = _fleet()
    held: dict[str, list[str]] = {agent_id: [] for agent_id in AGENTS}
    for number, move in enumerate(steps):
        _apply(log, number, move, held)
    performance = log.state.performance
    for spec in KINDS:
        task = TaskView(spec=spec)
        for reference_s in (None, reference_duration(performance, task), 2.5):
            seen = outlook(performance, task, reference_s)
            for agent_id in (*AGENTS, "never-seen"):
                for declared in (0.0, 0.37, 1.0):
                    got = predict_with(performance, seen, agent_id, declared)
                    assert repr(got) == repr(_predict_with_before(performance, seen, agent_id, declared))


# --- what is kept (each fails on the memo that forgot everything at every outcome and instant) -------


def _scores(log: Log, spec: TaskSubmitted, now: float, memo: ScoreMemo) -> dict[str, Scored]:
    state = log.state
    weights = effective_weights("adaptive", "standard", spec, state.adaptive)
    scorer = TaskScorer(state.performance, state.breakers, TaskView(spec=spec), weights, now, memo=memo)
    return {agent.agent_id: scorer.score(agent) for agent in state.fleet.agents.values()}


def test_a_score_without_a_deadline_outlasts_the_instant() -> None:
    log = _fleet()
    memo = ScoreMemo()
    first = _scores(log, KINDS[0], 100.0, memo)
    later = _scores(log, KINDS[0], 100.5, memo)
    assert all(first[a] is later[a] for a in AGENTS)  # timeliness without a deadline reads no clock
    deadline_first = _scores(log, KINDS[2], 100.0, memo)
    deadline_later = _scores(log, KINDS[2], 100.5, memo)
    assert all(deadline_first[a] is not deadline_later[a] for a in AGENTS)
    assert repr(deadline_later) == repr(_scores(log, KINDS[2], 100.5, ScoreMemo()))


def test_an_outcome_on_another_type_leaves_the_other_agents_scores_alone() -> None:
    log = _fleet()
    memo = ScoreMemo()
    first = _scores(log, KINDS[0], 100.0, memo)  # review
    log.add(
        TaskSubmitted(task_id="c", task_type="code"),
        TaskAssigned(agent_id="a1", task_id="c", attempt=1),
        TaskCompleted(task_id="c", agent_id="a1", attempt=1, quality=0.9, duration_s=1.0),
    )
    after = _scores(log, KINDS[0], 100.0, memo)
    assert all(first[a] is after[a] for a in AGENTS if a != "a1")
    assert first["a1"] is not after["a1"]  # its own record (its mean over every type) moved
    assert after == _scores(log, KINDS[0], 100.0, ScoreMemo())


def test_an_outcome_on_the_type_keeps_the_evidence_of_the_agents_that_did_not_report_it() -> None:
    log = _fleet()
    memo = ScoreMemo()
    _scores(log, KINDS[0], 100.0, memo)
    kind = memo._kinds[("review", (), KINDS[0].profile)]
    before = dict(kind.parts)
    log.add(
        TaskSubmitted(task_id="r", task_type="review"),
        TaskAssigned(agent_id="a2", task_id="r", attempt=1),
        TaskCompleted(task_id="r", agent_id="a2", attempt=1, quality=0.2, duration_s=4.0),
    )
    after = _scores(log, KINDS[0], 100.0, memo)
    assert all(kind.parts[a] is before[a] for a in AGENTS if a != "a2")  # not worked out again
    assert kind.parts["a2"] is not before["a2"]
    assert repr(after) == repr(_scores(log, KINDS[0], 100.0, ScoreMemo()))


def test_each_kind_keeps_a_bounded_number_of_contexts() -> None:
    log = _fleet()
    memo = ScoreMemo(max_contexts=2)
    for index in range(5):
        _scores(log, KINDS[2], 100.0 + index, memo)  # a deadline: a context per instant
    assert all(len(kind.contexts) <= 2 for kind in memo._kinds.values())


def test_the_fleets_count_on_the_type_is_compared_even_when_its_success_rate_comes_back() -> None:
    log = _fleet()
    memo = ScoreMemo()
    spec = TaskSubmitted(task_id="k", task_type="review", estimated_duration_s=2.0)  # a fixed reference
    state = log.state
    weights = effective_weights("performance_optimized", "standard", spec, state.adaptive)  # fixed weights

    def scores() -> dict[str, Scored]:
        scorer = TaskScorer(state.performance, state.breakers, TaskView(spec=spec), weights, 100.0, memo=memo)
        return {agent.agent_id: scorer.score(agent) for agent in state.fleet.agents.values()}

    first = scores()
    log.outcomes("a0", "review", [*[0.8] * 9, None])  # 9 successes in 10: the prior's 0.9 again
    assert outlook(state.performance, TaskView(spec=spec)).fleet_success == 0.9
    after = scores()
    assert after["a1"].prediction.others_since_last == 10 != first["a1"].prediction.others_since_last
    for agent in state.fleet.agents.values():
        assert repr(after[agent.agent_id]) == repr(
            _score_before(state.performance, state.breakers, agent, TaskView(spec=spec), weights, 100.0)
        )


def test_a_record_replaced_whole_is_not_taken_for_the_one_it_replaced() -> None:
    """``learn`` never replaces a record, but the memo holds the record it read, not only its count."""
    log = _fleet().outcomes("a1", "review", [0.9])
    memo = ScoreMemo()
    first = _scores(log, KINDS[0], 100.0, memo)
    performance = log.state.performance
    record = performance.agents["a1"]
    performance.agents["a1"] = msgspec.structs.replace(record, type_effect={"review": -0.3})
    after = _scores(log, KINDS[0], 100.0, memo)
    assert after["a1"] != first["a1"]
    assert repr(after) == repr(_scores(log, KINDS[0], 100.0, ScoreMemo()))


def test_contexts_of_an_older_count_of_the_fleets_outcomes_are_dropped() -> None:
    log = _fleet()
    memo = ScoreMemo()
    _scores(log, KINDS[2], 100.0, memo)
    _scores(log, KINDS[2], 100.5, memo)  # the same count, another instant: both kept
    kind = memo._kinds[("review", (), KINDS[2].profile)]
    assert len(kind.contexts) == 2
    log.outcomes("a0", "review", [0.5])
    _scores(log, KINDS[2], 100.5, memo)
    assert len(kind.contexts) == 1  # the count only grows: the older contexts can never be asked for
