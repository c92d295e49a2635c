"""Which candidates the learned posterior can tell apart at a confidence, and which it cannot. Pure.

A candidate's *merit* for a task is its fit with the performance factor at the posterior mean (no
risk shift), times its breaker factor; its standard deviation is the performance weight times the
prediction's, widened by the drift since the agent's last outcome on the type (capability, persona
and timeliness are known exactly; see ``Scored.expected_fit``). Agents' posteriors are
independent, so ``P(a better than b) = Phi((mean_a - mean_b) / sqrt(sd_a^2 + sd_b^2))``.

Two steps, so that equal agents are not told apart by their noise:

1. **Do the candidates differ at all?** Cochran's Q, ``sum((mean - weighted mean)^2 / sd^2)``,
   against the chi-square quantile with k - 1 degrees of freedom at the *family* confidence
   ``1 - 2 x (1 - confidence) / (k - 1)`` (the k - 1 comparisons with the best made at once; two
   candidates: the pairwise test itself). When it does not reject, every candidate is a
   contender. Picking the best of twenty equal agents and comparing the others with it would
   otherwise find "differences" among them nearly every time, and an agent ruled out stops
   getting the outcomes that would clear it (the drift above brings it back, but late).
2. **Pairwise.** When they do differ, a candidate is out when another is better than it with at
   least ``confidence``; the rest are the contenders.

The router gives the task to the least loaded contender (``services/router/ties.py``): an agent
that is clearly better is alone among them and wins while it has room.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from statistics import NormalDist
from typing import Final

import msgspec

DEFAULT_CONFIDENCE: Final = 0.8
"""P(better) at which one agent is preferred to a less loaded one (ROUTING_CONFIDENCE): four to
one that it is better. Higher spreads more work over agents not yet told apart (more of it to
ones that turn out worse); lower concentrates sooner. Equal agents are kept together by step 1."""

_NORMAL: Final = NormalDist()
_SQRT2: Final = math.sqrt(2.0)
_TINY_SD: Final = 1e-9


class Merit(msgspec.Struct, frozen=True, kw_only=True):
    """A candidate's expected merit and its posterior standard deviation."""

    agent_id: str
    mean: float
    sd: float


class Separation(msgspec.Struct, frozen=True, kw_only=True):
    """The candidates the posterior cannot rank at a confidence, and why each other one is out."""

    contenders: list[str]
    """Agent ids of the candidates no other beats at the confidence, best mean first."""
    alike: bool
    """Step 1 found no difference among the candidates: all of them are contenders."""
    family_confidence: float
    """The confidence step 1 tested at."""
    beaten_by: dict[str, tuple[str, float]]
    """Agent id -> (an agent better than it at the confidence, the probability that it is)."""


def probability_better(a: Merit, b: Merit) -> float:
    """P(a's merit > b's merit) under independent Gaussian posteriors."""
    spread = math.hypot(a.sd, b.sd)
    gap = a.mean - b.mean
    if spread <= 0.0:
        return 1.0 if gap > 0 else 0.0 if gap < 0 else 0.5
    return standard_normal_cdf(gap / spread)


def standard_normal_cdf(x: float) -> float:
    """``NormalDist().cdf(x)``, the same arithmetic without the method's checks and its mean and
    spread of 0 and 1 (``x - 0.0`` and ``1.0 x sqrt 2`` change no bit): it runs for every rival shown."""
    return 0.5 * (1.0 + math.erf(x / _SQRT2))


def check_confidence(confidence: float) -> float:
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be above 0.5 and below 1, got {confidence}")
    return confidence


@lru_cache(maxsize=256)
def chi_square_quantile(probability: float, freedom: int) -> float:
    """The chi-square quantile: exact for 1 degree of freedom, else Wilson-Hilferty (within ~1%)."""
    if freedom == 1:
        return _NORMAL.inv_cdf((1.0 + probability) / 2.0) ** 2
    k = float(freedom)
    z = _NORMAL.inv_cdf(probability)
    return k * (1.0 - 2.0 / (9.0 * k) + z * math.sqrt(2.0 / (9.0 * k))) ** 3


@lru_cache(maxsize=16)
def _quantile(confidence: float) -> float:
    """The standard normal quantile at `confidence` (one per configured confidence: worked out once)."""
    return _NORMAL.inv_cdf(confidence)


def family_confidence(confidence: float, candidates: int) -> float:
    """The confidence of step 1 for `candidates`: ``1 - 2 x (1 - confidence) / (k - 1)``.

    Q looks for a difference in either direction, "better" in one: ``2 x (1 - confidence)`` is
    the two-sided error of the pairwise test, shared by the k - 1 comparisons (Bonferroni). With
    two candidates step 1 is exactly the pairwise test.
    """
    return 1.0 - 2.0 * (1.0 - confidence) / max(1, candidates - 1)


def alike(merits: Sequence[Merit], confidence: float) -> bool:
    """Cochran's Q does not reject "one common merit" at `confidence` (one candidate: trivially)."""
    if len(merits) < 2:
        return True
    # The sums of the same terms in the same order as over generators (``sum`` of a list: fewer
    # frames); ``max(sd, tiny)`` written out (the same value, NaN included: ``max`` keeps its first
    # argument unless the second is greater).
    means = [m.mean for m in merits]
    weights = [1.0 / (_TINY_SD if m.sd < _TINY_SD else m.sd) ** 2 for m in merits]
    total = sum(weights)
    centre = sum([w * mean for w, mean in zip(weights, means, strict=True)]) / total
    q = sum([w * (mean - centre) ** 2 for w, mean in zip(weights, means, strict=True)])
    return q < chi_square_quantile(confidence, len(merits) - 1)


def separate(merits: Sequence[Merit], confidence: float) -> Separation:
    """Split candidates into contenders and those another candidate beats with `confidence`.

    ``P(a > b) >= confidence`` is ``mean_a - mean_b >= z x sqrt(sd_a^2 + sd_b^2)``: only
    candidates with a higher mean can beat one, so each is compared with those above it.

    Remembered for the last candidate sets (a plan splits the same free candidates again and again
    while their evidence does not change): the answer is shared, read it, never change it. The
    candidates are ranked before they are looked up (the answer does not depend on the order they
    come in, and between two decisions of a plan the free candidates change order, not merit).
    """
    check_confidence(confidence)
    # Sorted by ``_by_merit`` without a key function call per candidate: the same keys in front of
    # each, then its position (what a stable sort keeps for equal keys; never the merits compared).
    ranked = sorted([(-m.mean, m.agent_id, index, m) for index, m in enumerate(merits)])
    return _separate(tuple([m for _mean, _id, _index, m in ranked]), confidence)


def _by_merit(merit: Merit) -> tuple[float, str]:
    """Best mean first (agent ids are unique: a total order)."""
    return (-merit.mean, merit.agent_id)


@lru_cache(maxsize=64)
def _separate(ranked: tuple[Merit, ...], confidence: float) -> Separation:
    """``separate`` of candidates already in ``_by_merit`` order."""
    family = family_confidence(confidence, len(ranked))
    if alike(ranked, family):
        return Separation(
            contenders=[m.agent_id for m in ranked], alike=True, family_confidence=family, beaten_by={}
        )
    z = _quantile(confidence)
    kept: list[str] = []
    beaten: dict[str, tuple[str, float]] = {}
    for index, candidate in enumerate(ranked):
        for above in ranked[:index]:
            gap = above.mean - candidate.mean
            if gap > 0.0 and gap >= z * math.hypot(above.sd, candidate.sd):
                beaten[candidate.agent_id] = (above.agent_id, probability_better(above, candidate))
                break
        else:
            kept.append(candidate.agent_id)
    return Separation(contenders=kept, alike=False, family_confidence=family, beaten_by=beaten)
