"""Routing decisions made more cheaply are the decisions made before, byte for byte.

``tests/unit/old_router`` holds the routing computation as it was (scoring, the split of the
candidates, the tie rule, the explanation and the rivals): on random fleets, with outcomes learned
between decisions (every memo warm as in a running router) and without, the new code must give the
same decisions, breakdowns, rivals, reasons and explanations, and the same scores factor by factor.
"""

from __future__ import annotations

import math

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

import services.router.ties as ties
import shared.domain.routing.separation as separation
import tests.unit.old_router.decide as old_decide
import tests.unit.old_router.scoring as old_scoring
import tests.unit.old_router.separation as old_separation
import tests.unit.old_router.ties as old_ties
from services.router.decide import Assign, Expire, Hold, plan, route_task
from shared.domain.fleet import TaskView
from shared.domain.routing.performance import reference_duration
from shared.domain.routing.policy import STRATEGIES, RoutingConfig, effective_weights, strategy_of
from shared.domain.routing.scoring import ScoreMemo, TaskScorer
from shared.events import (
    AgentRegistered,
    BreakerClosed,
    BreakerHalfOpened,
    CognitiveStyle,
    LabelRule,
    OrchestrationMode,
    Persona,
    Priority,
    RoutingStrategy,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskFailed,
    TaskProfile,
    TaskQueued,
    TaskSubmitted,
)
from tests.unit.router_world import Log

STYLES: tuple[CognitiveStyle, ...] = ("analytical", "creative", "pragmatic", "collaborative", "meticulous")
MODES: tuple[OrchestrationMode, ...] = ("standard", "high_performance", "fault_tolerant", "emergency")
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "critical")
TYPES = ("review", "build")

agent_spec = st.tuples(
    st.floats(0.1, 1.0),  # proficiency on review
    st.one_of(st.none(), st.floats(0.1, 1.0)),  # on build (None: not offered)
    st.integers(1, 10),  # capacity
    st.integers(0, 10),  # tasks in flight (at most the capacity)
    st.sampled_from(STYLES),
    st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), max_size=5),  # outcomes (None: failed)
    st.booleans(),  # breaker half-open
)
AgentSpec = tuple[float, float | None, int, int, CognitiveStyle, list[float | None], bool]

task_spec = st.tuples(
    st.sampled_from(TYPES),
    st.sampled_from(sorted(STRATEGIES)),
    st.sampled_from(PRIORITIES),
    st.one_of(st.none(), st.sampled_from(STYLES)),
    st.sampled_from([0.0, 0.0, 0.0, 0.3, 0.6]),  # quality threshold
    st.one_of(st.none(), st.integers(0, 11)),  # preferred agent of a retry
    st.one_of(st.none(), st.floats(1.0, 200.0)),  # deadline
    st.one_of(st.none(), st.floats(0.5, 30.0)),  # estimated duration
    st.sampled_from(["none", "none", "label", "prefer", "soft", "hard"]),  # labels and affinity
)
TaskSpec = tuple[
    str, RoutingStrategy, Priority, CognitiveStyle | None, float, int | None, float | None, float | None, str
]


def _fleet(agents: list[AgentSpec]) -> Log:
    log = Log()
    for index, (review, build, capacity, load, style, outcomes, half_open) in enumerate(agents):
        agent_id = f"a{index}"
        capabilities = {"review": round(review, 3), "python": 0.8}
        if build is not None:
            capabilities["build"] = round(build, 3)
        log.add(
            AgentRegistered(
                agent_id=agent_id,
                capabilities=capabilities,
                capacity=capacity,
                persona=Persona(cognitive_style=style, creativity=round(review, 2)),
                labels={"zone": "ab"[index % 2]},
            )
        )
        for number, quality in enumerate(outcomes):
            task_id = f"done-{agent_id}-{number}"
            task_type = TYPES[number % 2] if build is not None else "review"
            log.add(
                TaskSubmitted(task_id=task_id, task_type=task_type),
                TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1),
            )
            if quality is None:
                log.add(TaskAttemptFailed(task_id=task_id, agent_id=agent_id, attempt=1, error="boom"))
            else:
                log.add(
                    TaskCompleted(
                        task_id=task_id,
                        agent_id=agent_id,
                        attempt=1,
                        quality=round(quality, 3),
                        duration_s=1.0 + number,
                    )
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


def _task(spec: TaskSpec, task_id: str = "t") -> TaskView:
    task_type, strategy, priority, style, threshold, preferred, deadline, estimated, placement = spec
    return TaskView(
        spec=TaskSubmitted(
            labels={"zone": "a"} if placement == "label" else {},
            label_rules=[LabelRule(label="zone", value="b", mode="prefer", weight=2.0)]
            if placement == "prefer"
            else [],
            affinity_key="repo" if placement in ("soft", "hard") else None,
            affinity="hard" if placement == "hard" else "soft",
            task_id=task_id,
            task_type=task_type,
            priority=priority,
            routing_strategy=strategy,
            expected_quality_threshold=threshold,
            profile=TaskProfile(preferred_cognitive_style=style, creativity_requirements=0.4),
            deadline_ts=deadline,
            estimated_duration_s=estimated,
        ),
        preferred_agent_id=f"a{preferred}" if preferred is not None else None,
    )


def _bytes(decision: object) -> bytes:
    return msgspec.json.encode(decision)


@settings(max_examples=300, deadline=None)
@given(
    agents=st.lists(agent_spec, min_size=1, max_size=12),
    task=task_spec,
    mode=st.sampled_from(MODES),
    now=st.sampled_from([0.0, 50.0, 150.0]),
)
def test_a_decision_is_byte_for_byte_the_one_made_before(
    agents: list[AgentSpec], task: TaskSpec, mode: OrchestrationMode, now: float
) -> None:
    log = _fleet(agents)
    view = _task(task)
    config = RoutingConfig(mode=mode)
    before = old_decide.route_task(log.state, view, now, config)
    assert _bytes(route_task(log.state, view, now, config)) == _bytes(before)
    # Again, on the memos the first decision left (a router decides on warm memos).
    assert _bytes(route_task(log.state, view, now, config)) == _bytes(before)


step = st.one_of(
    st.tuples(st.just("submit"), task_spec),
    st.tuples(st.just("complete"), st.integers(0, 1000), st.one_of(st.none(), st.floats(0.0, 1.0))),
    st.tuples(st.just("breaker"), st.integers(0, 11), st.booleans()),
)


@settings(max_examples=120, deadline=None)
@given(
    agents=st.lists(agent_spec, min_size=2, max_size=12),
    steps=st.lists(step, min_size=1, max_size=25),
    mode=st.sampled_from(MODES),
)
def test_plans_with_outcomes_learned_between_them_are_the_plans_made_before(
    agents: list[AgentSpec], steps: list[tuple[object, ...]], mode: OrchestrationMode
) -> None:
    """A stream of submissions, outcomes and breaker changes, a plan after each (as the router
    decides after a wake): every plan is the one the old code makes on the same view."""
    log = _fleet(agents)
    config = RoutingConfig(mode=mode)
    running: list[tuple[str, str, int]] = []
    for number, item in enumerate(steps):
        now = float(number)
        kind = item[0]
        if kind == "submit":
            spec = _task(item[1], f"s{number}").spec  # type: ignore[arg-type]
            log.add(spec)
        elif kind == "complete" and running:
            task_id, agent_id, attempt = running.pop(int(item[1]) % len(running))  # type: ignore[call-overload]
            quality = item[2]
            if quality is None:
                log.add(TaskAttemptFailed(task_id=task_id, agent_id=agent_id, attempt=attempt, error="boom"))
            else:
                log.add(
                    TaskCompleted(
                        task_id=task_id,
                        agent_id=agent_id,
                        attempt=attempt,
                        quality=round(quality, 3),  # type: ignore[call-overload]
                    )
                )
        elif kind == "breaker":
            agent_id = f"a{int(item[1]) % len(agents)}"  # type: ignore[call-overload]
            log.add(BreakerHalfOpened(agent_id=agent_id) if item[2] else BreakerClosed(agent_id=agent_id))
        before = old_decide.plan(log.state, now, config)
        after = plan(log.state, now, config)
        assert _bytes(after) == _bytes(before)
        for planned in after:
            decision = planned.decision
            if isinstance(decision, Hold):
                log.add(
                    TaskQueued(
                        task_id=decision.task_id,
                        attempt=decision.attempt,
                        reason=decision.reason,
                        detail=decision.detail,
                    )
                )
            elif isinstance(decision, Expire):
                log.add(TaskFailed(task_id=decision.task_id, attempt=decision.attempt, error=decision.error))
            elif isinstance(decision, Assign):
                log.add(
                    TaskAssigned(
                        agent_id=decision.agent_id,
                        task_id=decision.task_id,
                        attempt=decision.attempt,
                        explanation=decision.explanation,
                    )
                )
                running.append((decision.task_id, decision.agent_id, decision.attempt))


@settings(max_examples=200, deadline=None)
@given(
    agents=st.lists(agent_spec, min_size=1, max_size=12),
    task=task_spec,
    mode=st.sampled_from(MODES),
    now=st.sampled_from([0.0, 50.0, 150.0]),
)
def test_every_factor_of_a_score_is_the_one_worked_out_before(
    agents: list[AgentSpec], task: TaskSpec, mode: OrchestrationMode, now: float
) -> None:
    """The fused scoring (prediction, timeliness, aged uncertainty and merit in one pass) gives the
    very floats ``predict_from`` and the old ``_score`` gave, and the merit ``ties.merit`` gave."""
    log = _fleet(agents)
    state = log.state
    view = _task(task)
    config = RoutingConfig(mode=mode)
    weights = effective_weights(strategy_of(view, config), mode, view.spec, state.adaptive)
    reference = reference_duration(state.performance, view)
    new = TaskScorer(state.performance, state.breakers, view, weights, now, reference, memo=ScoreMemo())
    old = old_scoring.TaskScorer(
        state.performance, state.breakers, view, weights, now, reference, memo=old_scoring.ScoreMemo()
    )
    fleet = list(state.fleet.agents.values())
    for agent, scored in zip(fleet, new.score_many(fleet), strict=True):
        before = old.score(agent)
        assert msgspec.json.encode(scored) == msgspec.json.encode(before)
        assert _same(new.merits[agent.agent_id], old_ties.merit(before))
        assert _same(ties.merit(scored), old_ties.merit(before))
        assert repr(new.score(agent)) == repr(before)  # (one at a time, from the memo)


def _same(a: msgspec.Struct, b: msgspec.Struct) -> bool:
    """Equal field by field, NaN equal to NaN and -0.0 told from 0.0 (the bytes of the floats)."""
    return msgspec.json.encode(msgspec.structs.asdict(a)) == msgspec.json.encode(msgspec.structs.asdict(b))


def test_a_candidate_s_merit_is_made_with_its_score() -> None:
    """The tie rule reads the merit the scorer made with the score: no second pass over the
    candidates to make merits, and a score worked out again at another load keeps the very same
    merit object (so the split of the candidates is known to be the same)."""
    log = _fleet(
        [(0.9, None, 4, 0, "analytical", [0.8, 0.7], False), (0.6, None, 4, 1, "creative", [], True)]
    )
    state = log.state
    view = _task(("review", "adaptive", "normal", None, 0.0, None, None, None, "none"))
    weights = effective_weights("adaptive", "standard", view.spec, state.adaptive)
    memo = ScoreMemo()
    scorer = TaskScorer(state.performance, state.breakers, view, weights, 0.0, memo=memo)
    agent = state.fleet.agents["a1"]
    [scored] = scorer.score_many([agent])
    merit = scorer.merits["a1"]
    assert merit == ties.merit(scored)
    busier = msgspec.structs.replace(agent, in_flight={**agent.in_flight, "x": 1})
    second = TaskScorer(state.performance, state.breakers, view, weights, 0.0, memo=memo)
    [again] = second.score_many([busier])
    assert again.load != scored.load and second.merits["a1"] is merit


merit_st = st.builds(
    separation.Merit,
    agent_id=st.sampled_from([f"a{i}" for i in range(8)]),
    mean=st.floats(-1.0, 2.0) | st.sampled_from([0.0, -0.0, 0.5, float("nan")]),
    sd=st.floats(0.0, 0.5) | st.sampled_from([0.0, -0.0, 1e-12, float("nan")]),
)


@settings(max_examples=400, deadline=None)
@given(
    merits=st.lists(merit_st, max_size=8),  # (an agent id twice too: sorted as before)
    confidence=st.sampled_from([0.6, 0.8, 0.95]),
)
def test_the_split_of_candidates_is_the_one_made_before(
    merits: list[separation.Merit], confidence: float
) -> None:
    """``separate`` ranks without a key function and ``alike`` sums lists: the same answers."""
    old = [old_separation.Merit(agent_id=m.agent_id, mean=m.mean, sd=m.sd) for m in merits]
    assert separation.alike(merits, confidence) == old_separation.alike(old, confidence)
    assert _bytes(separation.separate(merits, confidence)) == _bytes(old_separation.separate(old, confidence))


def test_nan_free_sums_are_finite() -> None:
    """(A sanity check of the generator above: it reaches the non-alike branch.)"""
    merits = [
        separation.Merit(agent_id="a", mean=0.9, sd=0.001),
        separation.Merit(agent_id="b", mean=0.1, sd=0.001),
    ]
    split = separation.separate(merits, 0.8)
    assert not split.alike and split.contenders == ["a"] and math.isfinite(split.beaten_by["b"][1])
