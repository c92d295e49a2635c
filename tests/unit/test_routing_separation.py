"""Separation: which candidates the posterior can tell apart at a confidence (pure statistics)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.routing.separation import (
    Merit,
    alike,
    chi_square_quantile,
    family_confidence,
    probability_better,
    separate,
)


def merit(agent_id: str, mean: float, sd: float = 0.01) -> Merit:
    return Merit(agent_id=agent_id, mean=mean, sd=sd)


def test_the_probability_one_agent_is_better_is_read_from_both_posteriors() -> None:
    a, b = merit("a", 0.80, 0.03), merit("b", 0.75, 0.04)
    assert abs(probability_better(a, b) - 0.8413) < 1e-4, "a gap of one standard deviation of the difference"
    assert abs(probability_better(a, b) + probability_better(b, a) - 1.0) < 1e-12
    assert probability_better(merit("x", 0.5, 0.0), merit("y", 0.4, 0.0)) == 1.0
    assert probability_better(merit("x", 0.5, 0.0), merit("y", 0.5, 0.0)) == 0.5


def test_a_clearly_worse_candidate_is_out_and_names_who_beats_it() -> None:
    found = separate([merit("good", 0.90), merit("close", 0.895), merit("poor", 0.60)], 0.8)
    assert found.contenders == ["good", "close"]
    assert not found.alike
    beater, probability = found.beaten_by["poor"]
    assert beater == "good" and probability > 0.99


def test_with_two_candidates_the_confidence_is_the_line_between_better_and_not_told_apart() -> None:
    sd = 0.05 / math.sqrt(2)  # the difference has a standard deviation of 0.05
    above = separate([merit("a", 0.80 + 0.05 * 0.85, sd), merit("b", 0.80, sd)], 0.8)
    below = separate([merit("a", 0.80 + 0.05 * 0.83, sd), merit("b", 0.80, sd)], 0.8)
    assert above.contenders == ["a"], "P(better) = Phi(0.85) = 0.802 >= 0.8"
    assert below.contenders == ["a", "b"], "P(better) = Phi(0.83) = 0.797 < 0.8"
    assert family_confidence(0.8, 2) == pytest.approx(0.6)
    assert chi_square_quantile(0.6, 1) == pytest.approx(0.8416**2, rel=1e-3)


def test_twenty_equal_agents_stay_together_although_their_best_looks_better_than_their_worst() -> None:
    # Posterior means spread as noise spreads them: 2.5 standard deviations from top to bottom.
    merits = [merit(f"a{i}", 0.80 + 0.02 * (i - 9.5) / 9.5 * 0.5, 0.008) for i in range(20)]
    assert probability_better(merits[-1], merits[0]) > 0.95, "pairwise, the extremes look different"
    found = separate(merits, 0.8)
    assert found.alike and len(found.contenders) == 20


def test_the_chi_square_quantile_is_close_to_the_tables() -> None:
    assert chi_square_quantile(0.95, 1) == pytest.approx(3.841, rel=1e-3)
    assert chi_square_quantile(0.95, 10) == pytest.approx(18.307, rel=0.01)
    assert chi_square_quantile(0.99, 19) == pytest.approx(36.191, rel=0.01)


def test_a_confidence_outside_one_half_to_one_is_refused() -> None:
    for bad in (0.5, 1.0, 0.2, 1.5):
        with pytest.raises(ValueError, match=r"confidence must be above 0\.5 and below 1"):
            separate([merit("a", 0.5), merit("b", 0.4)], bad)


means = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
sds = st.floats(min_value=0.0, max_value=0.3, allow_nan=False)


@given(
    st.lists(st.tuples(means, sds), min_size=1, max_size=12),
    st.floats(min_value=0.51, max_value=0.99),
)
def test_the_best_mean_is_always_a_contender_and_every_other_is_placed_once(
    pairs: list[tuple[float, float]], confidence: float
) -> None:
    merits = [merit(f"a{i}", mean, sd) for i, (mean, sd) in enumerate(pairs)]
    found = separate(merits, confidence)
    by_id = {m.agent_id: m for m in merits}
    assert by_id[found.contenders[0]].mean == max(m.mean for m in merits)
    assert sorted(found.contenders + list(found.beaten_by)) == sorted(m.agent_id for m in merits)
    for loser, (winner, probability) in found.beaten_by.items():
        assert winner in {m.agent_id for m in merits} and winner != loser
        assert probability >= confidence - 1e-9
    if found.alike:
        assert alike(merits, found.family_confidence)
