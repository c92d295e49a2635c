"""The default strategy spreads work over agents the posterior cannot tell apart, and keeps it on one
that is clearly better while it has room; explained, and re-run with the confidence it used."""

from __future__ import annotations

from typing import get_args

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.router.decide import Assign, route_task
from services.router.rerun import recorded_config
from services.router.ties import merit
from shared.domain.routing.policy import RoutingConfig, effective_weights
from shared.domain.routing.scoring import score_candidate
from shared.domain.routing.separation import DEFAULT_CONFIDENCE, probability_better, separate
from shared.events import (
    AgentRegistered,
    CognitiveStyle,
    OrchestrationMode,
    Priority,
    TaskAssigned,
    TaskProfile,
    TaskSubmitted,
)
from tests.unit.router_world import Log

STYLES: tuple[CognitiveStyle | None, ...] = (None, *get_args(CognitiveStyle))


def submit(log: Log, *, priority: Priority = "normal", profile: TaskProfile | None = None) -> str:
    task_id = f"probe-{log.seq}"
    log.add(
        TaskSubmitted(
            task_id=task_id, task_type="review", priority=priority, profile=profile or TaskProfile()
        )
    )
    return task_id


def decide(
    log: Log,
    *,
    mode: OrchestrationMode = "standard",
    confidence: float = DEFAULT_CONFIDENCE,
    priority: Priority = "normal",
    profile: TaskProfile | None = None,
    keep: bool = True,
) -> Assign:
    """Route one new task with the default strategy; with `keep`, record the assignment."""
    task_id = submit(log, priority=priority, profile=profile)
    config = RoutingConfig(mode=mode, confidence=confidence)
    decision = route_task(log.state, log.state.fleet.tasks[task_id], 0.0, config)
    assert isinstance(decision, Assign), decision
    if keep:
        log.add(
            TaskAssigned(agent_id=decision.agent_id, task_id=task_id, attempt=1, breakdown=decision.breakdown)
        )
    return decision


def fleet(names: list[str], capacity: int, histories: dict[str, list[float | None]]) -> Log:
    """Agents alike in all they declare; their outcomes on review interleaved, one round at a time."""
    log = Log(
        *[AgentRegistered(agent_id=name, capabilities={"review": 0.8}, capacity=capacity) for name in names]
    )
    rounds = max((len(h) for h in histories.values()), default=0)
    for index in range(rounds):
        for name in names:
            history = histories.get(name, [])
            if index < len(history):
                log.outcomes(name, "review", [history[index]], prefix=f"h{index}")
    return log


def p_better(log: Log, a: str, b: str) -> float:
    task_id = submit(log)
    task = log.state.fleet.tasks[task_id]
    weights = effective_weights("adaptive", "standard", task.spec, log.state.adaptive)
    agents = log.state.fleet.agents
    state = log.state
    scored_a = score_candidate(state.performance, state.breakers, agents[a], task, weights, 0.0)
    scored_b = score_candidate(state.performance, state.breakers, agents[b], task, weights, 0.0)
    return probability_better(merit(scored_a), merit(scored_b))


def separated(log: Log, confidence: float) -> list[str]:
    """The contenders the router's test finds among every agent of `log` for a new review task."""
    task = log.state.fleet.tasks[submit(log)]
    weights = effective_weights("adaptive", "standard", task.spec, log.state.adaptive)
    state = log.state
    merits = [
        merit(score_candidate(state.performance, state.breakers, agent, task, weights, 0.0))
        for agent in state.fleet.agents.values()
    ]
    return separate(merits, confidence).contenders


def test_equal_agents_with_different_noisy_outcomes_share_the_work_and_the_breakdown_says_why() -> None:
    log = fleet(
        ["lucky", "plain"],
        capacity=4,
        histories={"lucky": [0.84, 0.82, 0.83, 0.81], "plain": [0.79, 0.80, 0.78, 0.80]},
    )
    first = decide(log)
    second = decide(log)
    assert {first.agent_id, second.agent_id} == {"lucky", "plain"}, "one each, not both to the luckier"
    by_load = second if second.breakdown["tie_broken_by_load"] == 1.0 else first
    assert by_load.breakdown["tie_broken_by_load"] == 1.0
    assert by_load.breakdown["tied_candidates"] == 2.0
    assert by_load.breakdown["tie_confidence"] == DEFAULT_CONFIDENCE
    assert 0.5 < by_load.breakdown["leader_better_probability"] < DEFAULT_CONFIDENCE
    assert "Tie broken by load" in by_load.explanation
    assert "busier (1/4 vs 0/4 in flight)" in by_load.rejected[0].reason


def test_a_clearly_better_agent_keeps_the_work_while_it_has_room() -> None:
    log = fleet(["good", "poor"], capacity=3, histories={"good": [0.9] * 12, "poor": [0.6] * 12})
    chosen = [decide(log) for _ in range(4)]
    assert [d.agent_id for d in chosen] == ["good", "good", "good", "poor"], "poor only once good is full"
    assert chosen[1].breakdown["tied_candidates"] == 1.0 and chosen[1].breakdown["tie_broken_by_load"] == 0.0
    assert "The evidence ranks it first" in chosen[1].explanation
    assert "good is better with probability 1.00 (>= 0.80)" in chosen[1].rejected[0].reason


def test_the_confidence_decides_how_sure_the_router_must_be_before_it_concentrates() -> None:
    log = fleet(["a", "b"], capacity=4, histories={"a": [0.83] * 8, "b": [0.80] * 8})
    log.add(submit_assigned(log, "a"))
    probability = p_better(log, "a", "b")
    assert 0.8 < probability < 0.95, probability
    assert decide(log, confidence=0.8, keep=False).agent_id == "a", "better at 0.8: wins though busier"
    relaxed = decide(log, confidence=0.95, keep=False)
    assert relaxed.agent_id == "b" and relaxed.breakdown["tie_confidence"] == 0.95


def submit_assigned(log: Log, agent_id: str) -> TaskAssigned:
    task_id = submit(log)
    return TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1)


def test_cautious_decisions_keep_the_best_score_and_record_no_tie() -> None:
    log = fleet(["lucky", "plain"], capacity=4, histories={"lucky": [0.84] * 4, "plain": [0.80] * 4})
    for _ in range(2):
        careful = decide(log, mode="fault_tolerant")
        assert "tie_confidence" not in careful.breakdown and "Tie" not in careful.explanation
        critical = decide(log, priority="critical")
        assert "tie_confidence" not in critical.breakdown


def rounds_until_a_contender_again(unlucky: list[float], limit: int) -> int | None:
    """Outcomes of two agents at 0.8 until one set aside after `unlucky` is a contender again."""
    log = fleet(["a", "b", "unlucky"], capacity=50, histories={"unlucky": unlucky})
    log.outcomes("a", "review", [0.8] * 5, prefix="early").outcomes("b", "review", [0.8] * 5, prefix="early")
    assert decide(log, keep=False).breakdown["tied_candidates"] == 2.0, "set aside: clearly worse now"
    for round_ in range(limit):
        log.outcomes("a" if round_ % 2 else "b", "review", [0.8], prefix=f"later{round_}")
        if decide(log, keep=False).breakdown["tied_candidates"] == 3.0:
            return round_
    return None


def test_an_agent_set_aside_on_early_bad_luck_is_tried_again_once_the_others_have_moved_on() -> None:
    close = rounds_until_a_contender_again([0.70, 0.72, 0.71], limit=1000)
    assert close is not None and close > 50, "tried again, neither at once nor never"
    assert rounds_until_a_contender_again([0.60, 0.62, 0.61], limit=1000) is None, "far behind: later"


def test_a_re_run_uses_the_confidence_the_assignment_recorded() -> None:
    recorded = TaskAssigned(
        agent_id="a", task_id="t", attempt=1, strategy="adaptive", breakdown={"tie_confidence": 0.93}
    )
    assert recorded_config(recorded, ()).confidence == 0.93
    assert (
        recorded_config(TaskAssigned(agent_id="a", task_id="t", attempt=1), ()).confidence
        == DEFAULT_CONFIDENCE
    )


histories = st.lists(st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    agents=st.integers(min_value=2, max_value=8),
    capacity=st.integers(min_value=1, max_value=4),
    history=histories,
    tasks=st.integers(min_value=1, max_value=32),
    mode=st.sampled_from(["standard", "high_performance"]),
    style=st.sampled_from(STYLES),
)
def test_agents_with_identical_histories_are_given_work_evenly(
    agents: int,
    capacity: int,
    history: list[float | None],
    tasks: int,
    mode: OrchestrationMode,
    style: CognitiveStyle | None,
) -> None:
    names = [f"a{i}" for i in range(agents)]
    log = fleet(names, capacity, {name: history for name in names})
    profile = TaskProfile(preferred_cognitive_style=style)
    for _ in range(min(tasks, agents * capacity)):
        decide(log, mode=mode, profile=profile)
        loads = [log.state.fleet.agents[name].load for name in names]
        assert max(loads) - min(loads) <= 1, loads


@settings(max_examples=60, deadline=None)
@given(
    better=st.floats(min_value=0.5, max_value=1.0),
    gap=st.floats(min_value=0.02, max_value=0.5),
    outcomes=st.integers(min_value=3, max_value=20),
    capacity=st.integers(min_value=2, max_value=4),
    rivals=st.integers(min_value=1, max_value=3),
    confidence=st.sampled_from([0.7, DEFAULT_CONFIDENCE, 0.9, 0.95]),
)
def test_an_agent_clearly_better_than_the_others_gets_more_of_the_work(
    better: float, gap: float, outcomes: int, capacity: int, rivals: int, confidence: float
) -> None:
    worse = [f"worse{i}" for i in range(rivals)]
    log = fleet(
        ["best", *worse],
        capacity,
        {"best": [better] * outcomes, **{name: [better - gap] * outcomes for name in worse}},
    )
    assume(separated(log, confidence) == ["best"])
    given_to = [decide(log, confidence=confidence).agent_id for _ in range(capacity + rivals)]
    assert given_to[:capacity] == ["best"] * capacity, "the better one, while it has room"
    assert all(given_to.count("best") > given_to.count(name) for name in worse)
