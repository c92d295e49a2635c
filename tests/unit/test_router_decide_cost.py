"""What a decision no longer works out again, and that the answers are the ones worked out afresh.

The router remembers, between decisions, the weights of a kind of task (until the adaptive state
learns an outcome), the split of a set of candidates (whatever order they come in), the part of a
score the load does not change, and the rounded weights of a breakdown; it looks over the fleet for
room only when a queued task asks. Each is checked against the computation it replaces, over
random event sequences, and a plan made with every memo warm against one made with every memo
emptied.
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import services.router.decide as decide
import services.router.explain as explain
import services.router.ties as ties
import shared.domain.routing.separation as separation
from services.router.decide import Assign, Hold, plan
from shared.domain.fleet import TaskView
from shared.domain.routing.adaptive import AdaptiveState
from shared.domain.routing.policy import (
    STRATEGIES,
    RoutingConfig,
    WeightsMemo,
    _effective_weights,
    canonical,
    effective_weights,
    shared_weights,
)
from shared.domain.routing.scoring import ScoreMemo, TaskScorer, shared_scores
from shared.domain.routing.separation import Merit, Separation, separate, standard_normal_cdf
from shared.events import (
    AgentDeregistered,
    AgentRegistered,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    OrchestrationMode,
    Persona,
    Priority,
    RoutingStrategy,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskProfile,
    TaskQueued,
    TaskSubmitted,
)
from tests.unit.router_world import Log

MODES: tuple[OrchestrationMode, ...] = ("standard", "high_performance", "fault_tolerant", "emergency")
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "critical")
AGENTS = ("a0", "a1", "a2", "a3")


# --- the normal distribution ----------------------------------------------------------------------


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-40.0, max_value=40.0))
def test_the_normal_cdf_is_normaldists_to_the_bit(x: float) -> None:
    assert standard_normal_cdf(x) == NormalDist().cdf(x)


# --- the split of the candidates ----------------------------------------------------------------


def _probability_better_before(a: Merit, b: Merit) -> float:
    """``probability_better`` as it was (``NormalDist().cdf``)."""
    spread = math.hypot(a.sd, b.sd)
    gap = a.mean - b.mean
    if spread <= 0.0:
        return 1.0 if gap > 0 else 0.0 if gap < 0 else 0.5
    return NormalDist().cdf(gap / spread)


def _separate_before(merits: list[Merit], confidence: float) -> Separation:
    """``separate`` as it was (every call split its candidates in the order given, ranked inside)."""
    ranked = sorted(merits, key=lambda m: (-m.mean, m.agent_id))
    family = separation.family_confidence(confidence, len(ranked))
    if separation.alike(ranked, family):
        return Separation(
            contenders=[m.agent_id for m in ranked], alike=True, family_confidence=family, beaten_by={}
        )
    z = NormalDist().inv_cdf(confidence)
    kept: list[str] = []
    beaten: dict[str, tuple[str, float]] = {}
    for index, candidate in enumerate(ranked):
        for above in ranked[:index]:
            gap = above.mean - candidate.mean
            if gap > 0.0 and gap >= z * math.hypot(above.sd, candidate.sd):
                beaten[candidate.agent_id] = (above.agent_id, _probability_better_before(above, candidate))
                break
        else:
            kept.append(candidate.agent_id)
    return Separation(contenders=kept, alike=False, family_confidence=family, beaten_by=beaten)


merits_strategy = st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 0.3)), min_size=1, max_size=12).map(
    lambda pairs: [Merit(agent_id=f"m{i}", mean=mean, sd=sd) for i, (mean, sd) in enumerate(pairs)]
)


@settings(max_examples=200, deadline=None)
@given(merits=merits_strategy, seed=st.integers(0, 1000), confidence=st.sampled_from([0.6, 0.8, 0.95]))
def test_candidates_split_in_any_order_are_split_as_before(
    merits: list[Merit], seed: int, confidence: float
) -> None:
    shuffled = list(merits)
    random.Random(seed).shuffle(shuffled)
    assert separate(shuffled, confidence) == _separate_before(merits, confidence)
    assert separate(merits, confidence) == _separate_before(merits, confidence)


def test_the_same_candidates_in_another_order_are_not_split_again() -> None:
    merits = [Merit(agent_id=f"m{i}", mean=0.5 + 0.01 * i, sd=0.05) for i in range(8)]
    first = separate(merits, 0.8)
    assert separate(list(reversed(merits)), 0.8) is first


# --- the weights ----------------------------------------------------------------------------------


def test_the_weights_of_a_task_of_the_same_kind_are_not_worked_out_again() -> None:
    adaptive = AdaptiveState()
    one = TaskSubmitted(task_id="one", task_type="review", priority="high")
    other = TaskSubmitted(task_id="other", task_type="build", priority="high")
    assert effective_weights("adaptive", "standard", one, adaptive) is effective_weights(
        "adaptive", "standard", other, adaptive
    )


def test_a_learned_outcome_or_another_state_makes_the_weights_worked_out_again() -> None:
    memo = WeightsMemo()
    adaptive = AdaptiveState()
    remembered = memo.weights_for(adaptive)
    remembered[("adaptive", "standard", False, "normal")] = _effective_weights(
        "adaptive", "standard", TaskSubmitted(task_id="t", task_type="x"), adaptive
    )
    assert memo.weights_for(adaptive) is remembered and remembered
    adaptive.losses["capability"] = 1.0
    adaptive.outcomes += 1
    assert not memo.weights_for(adaptive)  # an outcome learned
    memo.weights_for(adaptive)[("adaptive", "standard", False, "normal")] = _effective_weights(
        "adaptive", "standard", TaskSubmitted(task_id="t", task_type="x"), adaptive
    )
    assert not memo.weights_for(AdaptiveState(losses={"capability": 1.0}, outcomes=1))  # another state


def _fleet() -> Log:
    return Log(
        *(
            AgentRegistered(
                agent_id=agent_id,
                capabilities={"review": 0.4 + 0.15 * index, "python": 0.9},
                persona=Persona(cognitive_style="analytical" if index % 2 else "creative"),
                capacity=2 + index % 2,
            )
            for index, agent_id in enumerate(AGENTS)
        )
    )


step = st.one_of(
    st.tuples(st.just("assign"), st.sampled_from(AGENTS), st.floats(0.0, 1.0)),
    st.tuples(st.just("complete"), st.sampled_from(AGENTS), st.floats(0.0, 1.0)),
    st.tuples(st.just("fail"), st.sampled_from(AGENTS), st.just(0.0)),
    st.tuples(st.just("register"), st.sampled_from(AGENTS), st.floats(0.1, 1.0)),
    st.tuples(st.just("half_open"), st.sampled_from(AGENTS), st.just(0.0)),
    st.tuples(st.just("open"), st.sampled_from(AGENTS), st.just(0.0)),
    st.tuples(st.just("close"), st.sampled_from(AGENTS), st.just(0.0)),
    st.tuples(st.just("leave"), st.sampled_from(AGENTS), st.just(0.0)),
    st.tuples(st.just("submit"), st.sampled_from(sorted(STRATEGIES)), st.floats(0.0, 1.0)),
    st.tuples(st.just("tick"), st.just(""), st.just(0.0)),
)


class _World:
    """A log driven by steps: the tasks each agent holds, and the time."""

    def __init__(self) -> None:
        self.log = _fleet()
        self.held: dict[str, list[str]] = {agent_id: [] for agent_id in AGENTS}
        self.now = 100.0

    def take(self, number: int, kind: str, name: str, value: float) -> None:
        log = self.log
        if kind == "assign":
            task_id = f"w{number}"
            log.add(
                TaskSubmitted(
                    task_id=task_id,
                    task_type="review",
                    profile=TaskProfile(preferred_cognitive_style="creative" if value > 0.5 else None),
                ),
                TaskAssigned(
                    agent_id=name,
                    task_id=task_id,
                    attempt=1,
                    # what the adaptive weights learn from (without it an outcome teaches nothing)
                    breakdown={"capability": 0.5, "persona": 0.5, "predicted_quality": round(value, 3)},
                ),
            )
            self.held[name].append(task_id)
        elif kind in ("complete", "fail") and self.held[name]:
            task_id = self.held[name].pop(0)
            if kind == "complete":
                log.add(
                    TaskCompleted(
                        task_id=task_id,
                        agent_id=name,
                        attempt=1,
                        quality=round(value, 3),
                        duration_s=1.0 + value,
                    )
                )
            else:
                log.add(TaskAttemptFailed(task_id=task_id, agent_id=name, attempt=1, error="boom"))
        elif kind == "register":
            log.add(
                AgentRegistered(
                    agent_id=name, capabilities={"review": round(value, 2), "python": 0.5}, capacity=3
                )
            )
        elif kind == "half_open":
            log.add(BreakerHalfOpened(agent_id=name, probes_allowed=2))
        elif kind == "open":
            log.add(BreakerOpened(agent_id=name))
        elif kind == "close":
            log.add(BreakerClosed(agent_id=name))
        elif kind == "leave":
            log.add(AgentDeregistered(agent_id=name))
        elif kind == "submit":
            log.add(
                TaskSubmitted(
                    task_id=f"q{number}",
                    task_type="review",
                    routing_strategy=name if value < 0.5 else None,  # type: ignore[arg-type]
                    priority=PRIORITIES[int(value * 3.99)],
                    deadline_ts=self.now + 5.0 if value > 0.7 else None,
                    expected_quality_threshold=0.5 if value < 0.1 else 0.0,
                    required_capabilities=["python"] if value > 0.5 else [],
                )
            )
        elif kind == "tick":
            self.now += 1.0


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(step, max_size=30))
def test_remembered_weights_are_the_weights_worked_out_afresh(steps: list[tuple[str, str, float]]) -> None:
    world = _World()
    for number, (kind, name, value) in enumerate(steps):
        world.take(number, kind, name, value)
        adaptive = world.log.state.adaptive
        for strategy in ("adaptive", "performance_optimized", "hybrid_intelligence"):
            for mode in MODES:
                for priority in PRIORITIES:
                    for deadline in (None, 200.0):
                        task = TaskSubmitted(
                            task_id="t", task_type="review", priority=priority, deadline_ts=deadline
                        )
                        got = effective_weights(strategy, mode, task, adaptive)  # type: ignore[arg-type]
                        assert got == _effective_weights(canonical(strategy), mode, task, adaptive)  # type: ignore[arg-type]


# --- the scores -----------------------------------------------------------------------------------


def test_a_score_at_another_load_keeps_what_the_load_does_not_change() -> None:
    log = _fleet()
    memo = ScoreMemo()
    task = TaskView(spec=TaskSubmitted(task_id="t", task_type="review"))
    state = log.state
    weights = effective_weights("adaptive", "standard", task.spec, state.adaptive)
    agent = state.fleet.agents["a1"]
    first = TaskScorer(state.performance, state.breakers, task, weights, 1.0, memo=memo).score(agent)
    log.add(
        TaskSubmitted(task_id="w", task_type="review"), TaskAssigned(agent_id="a1", task_id="w", attempt=1)
    )
    again = TaskScorer(state.performance, state.breakers, task, weights, 1.0, memo=memo).score(agent)
    assert again.prediction is first.prediction and again.load < first.load
    assert again == TaskScorer(state.performance, state.breakers, task, weights, 1.0, memo=ScoreMemo()).score(
        agent
    )


# --- whole decisions ------------------------------------------------------------------------------


def _forget_everything() -> None:
    shared_scores().clear()
    shared_weights().weights_for(AdaptiveState())  # another state: what it held is forgotten
    separation._separate.cache_clear()
    explain._weights_shown.cache_clear()
    ties.shared_splits().clear()


LEARNS_BETWEEN_PLANS = [
    ("submit", "adaptive", 0.3),
    ("assign", "a1", 0.5),
    ("complete", "a1", 0.9),  # the adaptive weights learn: a plan after it weighs afresh
    ("submit", "adaptive", 0.3),
    ("assign", "a2", 0.5),
    ("half_open", "a2", 0.0),
    ("assign", "a2", 0.5),  # a score at another load
]


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(step, max_size=30),
    mode=st.sampled_from(MODES),
    strategy=st.sampled_from(sorted(STRATEGIES)),
)
@example(steps=LEARNS_BETWEEN_PLANS, mode="standard", strategy="adaptive")
@example(steps=LEARNS_BETWEEN_PLANS, mode="emergency", strategy="performance_optimized")
def test_a_plan_with_every_memo_warm_is_the_plan_made_afresh(
    steps: list[tuple[str, str, float]], mode: OrchestrationMode, strategy: RoutingStrategy
) -> None:
    world = _World()
    config = RoutingConfig(mode=mode, default_strategy=strategy)
    _forget_everything()
    for number, (kind, name, value) in enumerate(steps):
        world.take(number, kind, name, value)
        state = world.log.state
        warm = plan(state, world.now, config, after_seq=world.log.seq)
        _forget_everything()
        assert plan(state, world.now, config, after_seq=world.log.seq) == warm
        for planned in warm:  # what was decided happens: the next plan sees other loads
            if isinstance(planned.decision, Assign) and number % 3 == 0:
                world.log.add(
                    TaskAssigned(
                        agent_id=planned.decision.agent_id,
                        task_id=planned.decision.task_id,
                        attempt=planned.decision.attempt,
                        breakdown=planned.decision.breakdown,
                    )
                )
                world.held[planned.decision.agent_id].append(planned.decision.task_id)


# --- looking for room -----------------------------------------------------------------------------


def test_new_tasks_are_decided_without_looking_over_the_fleet_for_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _fleet().add(TaskSubmitted(task_id="new", task_type="review"))

    def looked() -> bool:
        raise AssertionError("looked over the fleet for room for a task never queued")

    monkeypatch.setattr(decide, "_any_room", lambda state: looked())
    assert [p.decision.task_id for p in plan(log.state, 1.0)] == ["new"]


def test_a_queued_task_is_passed_over_while_no_agent_has_room() -> None:
    log = Log(AgentRegistered(agent_id="a", capabilities={"review": 1.0}, capacity=1))
    log.add(
        TaskSubmitted(task_id="busy", task_type="review"),
        TaskAssigned(agent_id="a", task_id="busy", attempt=1),
    )
    log.add(TaskSubmitted(task_id="waits", task_type="review"))
    [held] = plan(log.state, 1.0)
    assert isinstance(held.decision, Hold)
    log.add(TaskQueued(task_id="waits", attempt=1, reason=held.decision.reason))
    assert plan(log.state, 2.0) == []
    log.add(TaskCompleted(task_id="busy", agent_id="a", attempt=1))
    assert [p.decision.task_id for p in plan(log.state, 3.0)] == ["waits"]
