"""The rivals an assignment shows are the ones the sort by (score, agent id) puts first, worked out
without a key function per rival (``decide.rivals_shown``)."""

from __future__ import annotations

import heapq
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from services.router.decide import MAX_REJECTED_SHOWN, rivals_shown
from shared.domain.fleet import AgentView
from shared.domain.routing.scoring import Scored


class _Agent:
    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id


class _Scored:
    def __init__(self, score: float) -> None:
        self.score = score


Pair = tuple[AgentView, Scored]


def _pairs(scores: list[float], offset: int) -> list[Pair]:
    return [cast(Pair, (_Agent(f"a{offset + i:02d}"), _Scored(s))) for i, s in enumerate(scores)]


def _old_order(pair: Pair) -> tuple[float, str]:
    """What ``route_task`` sorted the rivals by before (``_rival_order``)."""
    return (-pair[1].score, pair[0].agent_id)


SCORES = st.lists(
    st.sampled_from([0.0, -0.0, 0.25, 0.5, 0.5000001, 0.75, 1.0]) | st.floats(-2, 2), max_size=12
)


@given(SCORES, SCORES)
def test_the_rivals_shown_are_those_the_sort_by_score_and_agent_id_puts_first(
    free_scores: list[float], full_scores: list[float]
) -> None:
    free, full = _pairs(free_scores, 0), _pairs(full_scores, 50)
    shown = rivals_shown(free, full)
    old = heapq.nsmallest(MAX_REJECTED_SHOWN, [*free[1:], *full], key=_old_order)
    assert [(agent, scored) for _s, _id, agent, scored in shown] == old
    assert old == sorted([*free[1:], *full], key=_old_order)[:MAX_REJECTED_SHOWN]
    assert all(key == -cast(Any, s).score and name == a.agent_id for key, name, a, s in shown)
