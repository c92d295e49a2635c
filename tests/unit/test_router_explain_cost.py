"""What a plan's decisions no longer work out again, and that the answers are the ones worked out
afresh: the merits and the split of the free candidates (``ties.SplitMemo``) and the factor a rival
lost on (``explain.why_not``).
Each is checked against the computation it replaces; a whole plan with every memo warm against one
made with every memo emptied is in ``test_router_decide_cost.py``."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import services.router.ties as ties
from services.router.decide import Assign, plan
from services.router.explain import why_not
from services.router.ties import SplitMemo, merit
from shared.domain.fleet import AgentView
from shared.domain.routing.performance import Prediction
from shared.domain.routing.policy import Weights
from shared.domain.routing.scoring import Scored
from shared.domain.routing.separation import separate
from shared.events import AgentRegistered, TaskAssigned, TaskSubmitted
from tests.unit.router_world import Log

AGENTS = ("a0", "a1", "a2", "a3", "a4")


def _scored(agent_id: str, fit: float, sd: float, breaker: float = 1.0, score: float = 0.5) -> Scored:
    prediction = Prediction(
        quality=fit,
        uncertainty=sd,
        success_probability=1.0,
        quality_if_success=fit,
        duration_s=None,
        observations=1,
    )
    return Scored(
        agent_id=agent_id,
        capability=1.0,
        persona=1.0,
        prediction=prediction,
        performance=fit,
        timeliness=1.0,
        fit=fit,
        expected_fit=fit,
        expected_fit_sd=sd,
        load=1.0,
        breaker=breaker,
        availability=1.0,
        score=score,
    )


# --- the split of the free candidates -------------------------------------------------------------

numbers = st.floats(0.0, 1.0)
candidate_step = st.tuples(
    st.sampled_from(AGENTS),
    st.sampled_from(["same", "reloaded", "afresh", "equal"]),
    numbers,
    numbers,
    st.sampled_from([1.0, 0.5]),
)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(candidate_step, max_size=40),
    picks=st.lists(st.lists(st.sampled_from(AGENTS), min_size=2, max_size=5, unique=True), max_size=40),
    confidences=st.lists(st.sampled_from([0.8, 0.9, 0.95]), min_size=1, max_size=3),
)
def test_remembered_merits_and_splits_are_those_worked_out_afresh(
    steps: list[tuple[str, str, float, float, float]],
    picks: list[list[str]],
    confidences: list[float],
) -> None:
    """Candidates whose scores are the same objects, reloaded at another load (the same numbers
    carried over), worked out afresh to other numbers or to equal ones: the merits and the split are
    always ``merit`` and ``separate`` of them."""
    memo = SplitMemo()
    current = {agent_id: _scored(agent_id, 0.5, 0.1) for agent_id in AGENTS}
    for index, pick in enumerate(picks):
        if index < len(steps):
            agent_id, how, fit, sd, breaker = steps[index]
            old = current[agent_id]
            if how == "reloaded":
                current[agent_id] = msgspec.structs.replace(old, load=0.3, score=old.score * 0.9)
            elif how == "afresh":
                current[agent_id] = _scored(agent_id, fit, sd, breaker)
            elif how == "equal":  # equal numbers, other objects
                current[agent_id] = _scored(
                    agent_id, float(repr(old.expected_fit)), float(repr(old.expected_fit_sd)), old.breaker
                )
        confidence = confidences[index % len(confidences)]
        candidates = [current[agent_id] for agent_id in pick]
        merits = [memo.merit(scored) for scored in candidates]
        assert merits == [merit(scored) for scored in candidates]
        separation, by_agent, tied = memo.separate(merits, confidence)
        assert separation == separate(merits, confidence)
        assert by_agent == {m.agent_id: m for m in merits}
        assert tied == set(separation.contenders)


def test_a_plan_splits_the_same_candidates_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between two decisions of a plan only the load of the agent just given work changes: the
    candidates' merits, and so their split, are not worked out again."""
    log = Log(
        *(
            AgentRegistered(agent_id=agent_id, capabilities={"review": 0.6}, capacity=4)
            for agent_id in AGENTS
        ),
        *(TaskSubmitted(task_id=f"t{index}", task_type="review") for index in range(6)),
    )
    ties.shared_splits().clear()
    calls: list[int] = []
    real = ties.separate

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ties, "separate", counted)
    planned = plan(log.state, 1.0, after_seq=log.seq, limit=6)
    assert len(planned) == 6 and all(isinstance(p.decision, Assign) for p in planned)
    assert len(calls) == 1
    log.add(TaskAssigned(agent_id="a0", task_id="t0", attempt=1))  # a load changes, no merit
    plan(log.state, 1.0, after_seq=log.seq, limit=1)
    assert len(calls) == 1


# --- the factor a rival lost on -------------------------------------------------------------------


def _why_not_before(
    chosen: Scored, other: Scored, other_agent: AgentView, weights: Weights, chosen_agent: AgentView
) -> str:
    """``explain.why_not`` as it was (a dict of the gaps and ``max``)."""
    gaps = {
        "capability": weights.capability * (chosen.capability - other.capability) * chosen.availability,
        "persona": weights.persona * (chosen.persona - other.persona) * chosen.availability,
        "performance": weights.performance * (chosen.performance - other.performance) * chosen.availability,
        "timeliness": weights.timeliness * (chosen.timeliness - other.timeliness) * chosen.availability,
        "availability": other.fit * (chosen.availability - other.availability),
    }
    factor = max(gaps, key=lambda name: (gaps[name], name))
    if factor == "performance":
        detail = (
            f"lower predicted quality ({other.prediction.quality:.2f} vs {chosen.prediction.quality:.2f})"
        )
    elif factor == "capability":
        detail = f"lower capability ({other.capability:.2f} vs {chosen.capability:.2f})"
    elif factor == "persona":
        detail = f"weaker persona fit ({other.persona:.2f} vs {chosen.persona:.2f})"
    elif factor == "timeliness":
        detail = f"less timely ({other.timeliness:.2f} vs {chosen.timeliness:.2f})"
    elif other.breaker < chosen.breaker:
        detail = "circuit breaker half-open"
    else:
        detail = (
            f"busier ({other_agent.load}/{other_agent.capacity} vs "
            f"{chosen_agent.load}/{chosen_agent.capacity} in flight)"
        )
    return f"score {other.score:.3f} < {chosen.score:.3f}: {detail}"


factor = st.sampled_from([0.0, -0.0, 0.25, 0.5, 1.0, math.nan]) | st.floats(-1.0, 2.0)


@st.composite
def scored_values(draw: st.DrawFn, agent_id: str) -> Scored:
    return Scored(
        agent_id=agent_id,
        capability=draw(factor),
        persona=draw(factor),
        prediction=Prediction(
            quality=draw(factor),
            uncertainty=0.1,
            success_probability=1.0,
            quality_if_success=1.0,
            duration_s=None,
            observations=1,
        ),
        performance=draw(factor),
        timeliness=draw(factor),
        fit=draw(factor),
        expected_fit=0.5,
        expected_fit_sd=0.1,
        load=1.0,
        breaker=draw(st.sampled_from([1.0, 0.5])),
        availability=draw(factor),
        score=draw(factor),
    )


@settings(max_examples=400, deadline=None)
@given(
    chosen=scored_values("c"),
    other=scored_values("o"),
    weights=st.builds(
        Weights,
        capability=factor,
        persona=factor,
        performance=factor,
        timeliness=factor,
        load=st.floats(0.0, 1.0),
        risk=st.floats(-1.0, 1.0),
        half_open_factor=st.just(0.5),
    ),
)
def test_the_factor_a_rival_lost_on_is_the_one_found_before(
    chosen: Scored, other: Scored, weights: Weights
) -> None:
    chosen_agent = AgentView(agent_id="c", capacity=3, in_flight={"x": 1})
    other_agent = AgentView(agent_id="o", capacity=2, in_flight={"y": 1, "z": 2})
    assert why_not(chosen, other, other_agent, weights, chosen_agent) == _why_not_before(
        chosen, other, other_agent, weights, chosen_agent
    )
