"""An assignment's explanation worded once per rival: the same decision, word for word, as before.

``route_task`` words the reason a rival lost once (the runner-up is usually among the rivals shown)
and ranks the free candidates in one pass when no placement preference orders them.
``_route_task_before`` is the code it replaced,
kept here as the reference: on generated fleets both give the same decision, explanation,
breakdown and rejected candidates.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import services.router.decide as decide
from services.router.decide import (
    _NO_PLACEMENT,
    MAX_REJECTED_SHOWN,
    Assign,
    Hold,
    _held,
    _rank_key,
    _why_not_chosen,
    _with_note,
    route_task,
)
from services.router.explain import breakdown, explanation
from services.router.ties import Tie, spread_ties
from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.affinity import placement_preference, preference_note
from shared.domain.routing.eligibility import Eligibility
from shared.domain.routing.performance import reference_duration
from shared.domain.routing.policy import STRATEGIES, RoutingConfig, effective_weights, strategy_of
from shared.domain.routing.scoring import Scored, TaskScorer
from shared.domain.routing.view import RouterState
from shared.events import (
    AgentRegistered,
    BreakerHalfOpened,
    CognitiveStyle,
    OrchestrationMode,
    Persona,
    Priority,
    RejectedCandidate,
    RoutingStrategy,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskProfile,
    TaskSubmitted,
)
from tests.unit.router_world import Log


def _route_task_before(
    state: RouterState, task: TaskView, now: float = 0.0, config: RoutingConfig | None = None
) -> Assign | Hold:
    """``route_task`` as it was: every rival sorted, the runner-up's reason worded twice."""
    config = config or RoutingConfig()
    strategy = strategy_of(task, config)
    weights = effective_weights(strategy, config.mode, task.spec, state.adaptive)
    threshold = task.spec.expected_quality_threshold
    reference = reference_duration(state.performance, task)
    ineligible: list[RejectedCandidate] = []
    below_threshold: list[RejectedCandidate] = []
    qualified: list[tuple[AgentView, Scored]] = []
    below: list[Scored] = []
    eligibility = Eligibility(state, task)
    eligible: list[AgentView] = []
    for agent in state.fleet.agents.values():
        reason = eligibility.why_not(agent)
        if reason is not None:
            if agent.status != "deregistered":
                ineligible.append(RejectedCandidate(agent_id=agent.agent_id, score=0.0, reason=reason))
            continue
        eligible.append(agent)
    if threshold <= 0.0 and all(agent.free <= 0 for agent in eligible):
        return _held(state, task, len(eligible), [], threshold)
    scorer = TaskScorer(state.performance, state.breakers, task, weights, now, reference)
    for agent in eligible:
        scored = scorer.score(agent)
        if scored.prediction.quality < threshold:
            below.append(scored)
            below_threshold.append(
                RejectedCandidate(
                    agent_id=agent.agent_id,
                    score=round(scored.score, 4),
                    reason=f"predicted quality {scored.prediction.quality:.2f} below the task's "
                    f"threshold {threshold:.2f}",
                )
            )
            continue
        qualified.append((agent, scored))
    free = [(agent, scored) for agent, scored in qualified if agent.free > 0]
    if not free:
        return _held(state, task, len(qualified), below, threshold)
    placements = (
        {agent.agent_id: placement_preference(state, task, agent) for agent, _s in free}
        if task.spec.label_rules or task.spec.affinity_key
        else _NO_PLACEMENT
    )
    free.sort(key=lambda pair: _rank_key(strategy, task, pair[0], pair[1], placements[pair[0].agent_id]))
    placed = placements[free[0][0].agent_id]
    alike = next(
        (i for i, (agent, _s) in enumerate(free) if placements[agent.agent_id] != placed),
        len(free),
    )
    head = free[:alike]
    tie: Tie | None = spread_ties(strategy, task, head, weights, config)
    free[:alike] = head
    chosen, best = free[0]
    runner_up: tuple[Scored, str] | None = None
    if len(free) > 1:
        agent, scored = free[1]
        runner_up = (scored, _why_not_chosen(strategy, task, chosen, best, agent, scored, weights, tie))
    rivals = sorted(
        [(agent, scored) for agent, scored in free[1:]] + [(a, s) for a, s in qualified if a.free <= 0],
        key=lambda pair: (-pair[1].score, pair[0].agent_id),
    )
    scored_rejections = [
        RejectedCandidate(
            agent_id=agent.agent_id,
            score=round(scored.score, 4),
            reason=_why_not_chosen(strategy, task, chosen, best, agent, scored, weights, tie)
            if agent.free > 0
            else f"at capacity ({agent.load}/{agent.capacity})",
        )
        for agent, scored in rivals[:MAX_REJECTED_SHOWN]
    ]
    shown = (
        scored_rejections
        + sorted(below_threshold, key=lambda r: (-r.score, r.agent_id))
        + sorted(ineligible, key=lambda r: r.agent_id)
    )
    return Assign(
        task_id=task.task_id,
        attempt=task.attempt,
        agent_id=chosen.agent_id,
        session=chosen.session,
        strategy=strategy,
        score=round(best.score, 4),
        breakdown=breakdown(best, weights, tie),
        rejected=shown[:MAX_REJECTED_SHOWN],
        explanation=_with_note(
            explanation(strategy, config.mode, chosen, best, task, runner_up, tie),
            preference_note(state, task, chosen),
        ),
    )


STYLES: tuple[CognitiveStyle, ...] = ("analytical", "creative", "pragmatic", "collaborative", "meticulous")
MODES: tuple[OrchestrationMode, ...] = (
    "standard",
    "high_performance",
    "fault_tolerant",
    "energy_efficient",
    "emergency",
)
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "critical")

agent_spec = st.tuples(
    st.floats(0.1, 1.0),  # proficiency on the task type
    st.integers(1, 4),  # capacity
    st.integers(0, 4),  # tasks in flight (at most the capacity)
    st.sampled_from(STYLES),
    st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), max_size=6),  # outcomes (None: failed)
    st.booleans(),  # breaker half-open
)


def _fleet(agents: list[tuple[float, int, int, CognitiveStyle, list[float | None], bool]]) -> Log:
    log = Log()
    for index, (proficiency, capacity, load, style, outcomes, half_open) in enumerate(agents):
        agent_id = f"a{index}"
        log.add(
            AgentRegistered(
                agent_id=agent_id,
                capabilities={"review": round(proficiency, 3), "python": 0.8},
                capacity=capacity,
                persona=Persona(cognitive_style=style),
            )
        )
        for number, quality in enumerate(outcomes):
            task_id = f"done-{agent_id}-{number}"
            log.add(
                TaskSubmitted(task_id=task_id, task_type="review"),
                TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1),
            )
            if quality is None:
                log.add(TaskAttemptFailed(task_id=task_id, agent_id=agent_id, attempt=1, error="boom"))
            else:
                log.add(
                    TaskCompleted(task_id=task_id, agent_id=agent_id, attempt=1, quality=round(quality, 3))
                )
        for number in range(min(load, capacity)):
            task_id = f"busy-{agent_id}-{number}"
            log.add(
                TaskSubmitted(task_id=task_id, task_type="review"),
                TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1),
            )
        if half_open:
            log.add(BreakerHalfOpened(agent_id=agent_id))
    return log


@settings(max_examples=300, deadline=None)
@given(
    agents=st.lists(agent_spec, min_size=1, max_size=9),
    strategy=st.sampled_from(sorted(STRATEGIES)),
    mode=st.sampled_from(MODES),
    priority=st.sampled_from(PRIORITIES),
    style=st.one_of(st.none(), st.sampled_from(STYLES)),
    threshold=st.sampled_from([0.0, 0.0, 0.3, 0.6]),
    preferred=st.one_of(st.none(), st.integers(0, 8)),
)
def test_an_assignment_says_word_for_word_what_it_said_before(
    agents: list[tuple[float, int, int, CognitiveStyle, list[float | None], bool]],
    strategy: RoutingStrategy,
    mode: OrchestrationMode,
    priority: Priority,
    style: CognitiveStyle | None,
    threshold: float,
    preferred: int | None,
) -> None:
    log = _fleet(agents)
    spec = TaskSubmitted(
        task_id="t",
        task_type="review",
        priority=priority,
        routing_strategy=strategy,
        expected_quality_threshold=threshold,
        profile=TaskProfile(preferred_cognitive_style=style),
    )
    task = TaskView(spec=spec, preferred_agent_id=f"a{preferred}" if preferred is not None else None)
    config = RoutingConfig(mode=mode)
    assert route_task(log.state, task, 50.0, config) == _route_task_before(log.state, task, 50.0, config)


def test_a_rivals_reason_is_worded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner-up is among the rivals shown: its reason is worded once, not twice."""
    log = _fleet([(0.9, 2, 0, "analytical", [], False), (0.5, 2, 0, "analytical", [], False)])
    worded: list[str] = []
    original = decide._why_not_chosen

    def counting(*args: Any, **kwargs: Any) -> str:
        result = original(*args, **kwargs)
        worded.append(result)
        return result

    monkeypatch.setattr(decide, "_why_not_chosen", counting)
    task = TaskView(spec=TaskSubmitted(task_id="t", task_type="review", routing_strategy="capability_first"))
    decision = route_task(log.state, task, 50.0)
    assert isinstance(decision, Assign) and decision.agent_id == "a0"
    assert len(worded) == 1
    assert decision.rejected[0].reason == worded[0]
