"""The score memo: a score it remembers is the score worked out afresh, whatever changed between."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.fleet import TaskView
from shared.domain.routing.policy import effective_weights
from shared.domain.routing.scoring import Scored, ScoreMemo, TaskScorer, _clamp, shared_scores
from shared.events import (
    AgentRegistered,
    BreakerClosed,
    BreakerHalfOpened,
    OrchestrationMode,
    Persona,
    TaskAssigned,
    TaskCompleted,
    TaskProfile,
    TaskSubmitted,
)
from tests.unit.router_world import Log

AGENTS = ("a0", "a1", "a2")
AGENT_PERSONA = Persona()
"""Registered again with the same persona (the same object): only the capabilities say it changed."""
MODES: tuple[OrchestrationMode, ...] = ("standard", "emergency")
TASKS = (
    TaskSubmitted(task_id="t-plain", task_type="review"),
    TaskSubmitted(
        task_id="t-styled", task_type="review", profile=TaskProfile(preferred_cognitive_style="creative")
    ),
    TaskSubmitted(task_id="t-deadline", task_type="review", deadline_ts=105.0, priority="high"),
    TaskSubmitted(task_id="t-needs", task_type="review", required_capabilities=["python"]),
)


def _scores(
    log: Log, task: TaskSubmitted, now: float, memo: ScoreMemo, mode: OrchestrationMode = "standard"
) -> list[Scored]:
    state = log.state
    weights = effective_weights("adaptive", mode, task, state.adaptive)
    scorer = TaskScorer(state.performance, state.breakers, TaskView(spec=task), weights, now, memo=memo)
    return [scorer.score(agent) for agent in state.fleet.agents.values()]


def _fleet() -> Log:
    return Log(
        *(
            AgentRegistered(
                agent_id=agent_id, capabilities={"review": 0.5 + 0.2 * i, "python": 0.9}, capacity=3
            )
            for i, agent_id in enumerate(AGENTS)
        )
    )


step = st.one_of(
    st.tuples(st.just("assign"), st.sampled_from(AGENTS)),
    st.tuples(st.just("complete"), st.sampled_from(AGENTS)),
    st.tuples(st.just("register"), st.sampled_from(AGENTS)),
    st.tuples(st.just("half_open"), st.sampled_from(AGENTS)),
    st.tuples(st.just("close"), st.sampled_from(AGENTS)),
    st.tuples(st.just("tick"), st.just("")),
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(step, max_size=25))
def test_a_remembered_score_is_the_score_worked_out_afresh(steps: list[tuple[str, str]]) -> None:
    log = _fleet()
    memo = ScoreMemo()
    now = 100.0
    held: dict[str, list[str]] = {agent_id: [] for agent_id in AGENTS}
    for number, (kind, agent_id) in enumerate(steps):
        if kind == "assign":
            task_id = f"w{number}"
            log.add(TaskSubmitted(task_id=task_id, task_type="review"))
            log.add(TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1))
            held[agent_id].append(task_id)
        elif kind == "complete" and held[agent_id]:
            task_id = held[agent_id].pop(0)
            log.add(TaskCompleted(task_id=task_id, agent_id=agent_id, attempt=1, quality=0.3, duration_s=2.0))
        elif kind == "register":  # the same agent again, with other capabilities (and persona)
            persona = Persona(cognitive_style="creative", creativity=0.1 * (number % 10))
            log.add(
                AgentRegistered(
                    agent_id=agent_id,
                    capabilities={"review": 0.1 * (number % 10), "python": 0.5},
                    persona=persona if number % 2 else AGENT_PERSONA,
                    capacity=3,
                )
            )
        elif kind == "half_open":
            log.add(BreakerHalfOpened(agent_id=agent_id, probes_allowed=2))
        elif kind == "close":
            log.add(BreakerClosed(agent_id=agent_id))
        elif kind == "tick":
            now += 1.0
        for task in TASKS:
            for mode in MODES:  # the half-open factor is 1 in standard mode, not in emergency mode
                assert _scores(log, task, now, memo, mode) == _scores(log, task, now, ScoreMemo(), mode)


def test_an_agent_scored_again_on_the_same_view_is_not_worked_out_again() -> None:
    log = _fleet()
    memo = ScoreMemo()
    first = _scores(log, TASKS[0], 100.0, memo)
    again = _scores(log, TaskSubmitted(task_id="other", task_type="review"), 100.0, memo)
    assert all(a is b for a, b in zip(first, again, strict=True))  # a task of the same kind: remembered


def test_what_a_score_reads_changing_makes_it_worked_out_again() -> None:
    log = _fleet()
    memo = ScoreMemo()
    first = _scores(log, TASKS[0], 100.0, memo)
    later = _scores(log, TASKS[0], 101.0, memo)
    assert all(a is b for a, b in zip(first, later, strict=True))  # no deadline: `now` is not read
    deadline = _scores(log, TASKS[2], 100.0, memo)
    assert all(a is not b for a, b in zip(deadline, _scores(log, TASKS[2], 101.0, memo), strict=True))
    log.add(
        TaskSubmitted(task_id="w", task_type="review"), TaskAssigned(agent_id="a1", task_id="w", attempt=1)
    )
    loaded = _scores(log, TASKS[0], 101.0, memo)
    assert loaded[1].load < first[1].load  # a1's load counted, not its remembered score
    log.add(TaskCompleted(task_id="w", agent_id="a1", attempt=1, quality=0.1, duration_s=1.0))
    learned = _scores(log, TASKS[0], 101.0, memo)
    assert learned[1].prediction != loaded[1].prediction  # an outcome learned: scored afresh
    assert learned == _scores(log, TASKS[0], 101.0, ScoreMemo())


def test_the_memo_keeps_a_bounded_number_of_kinds_of_task() -> None:
    log = _fleet()
    memo = ScoreMemo(max_kinds=2)
    for index in range(5):
        _scores(
            log,
            TaskSubmitted(task_id=f"t{index}", task_type="review", estimated_duration_s=index + 1.0),
            1.0,
            memo,
        )
    assert len(memo._kinds) <= 2


@given(st.one_of(st.floats(), st.sampled_from([-0.0, 0.0, 1.0, float("nan"), float("inf"), float("-inf")])))
def test_clamping_is_min_of_one_and_max_of_zero(value: float) -> None:
    expected = min(1.0, max(0.0, value))
    clamped = _clamp(value)
    assert clamped == expected and str(clamped) == str(expected)  # -0.0 and NaN alike


def test_each_thread_scores_with_a_memo_of_its_own() -> None:
    found: list[ScoreMemo] = []
    worker = threading.Thread(target=lambda: found.append(shared_scores()))
    worker.start()
    worker.join(timeout=5)
    assert found and found[0] is not shared_scores() and shared_scores() is shared_scores()
