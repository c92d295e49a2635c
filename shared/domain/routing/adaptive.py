"""The adaptive strategy's weights, learned from outcomes with Hedge (multiplicative weights). Pure.

Three signals predict how well an agent will do a task: its declared capability, its persona
compatibility and the learned performance prediction. Every assignment records the three scores
of the chosen agent; when the attempt ends, each score is compared with the outcome (the quality
reported, 0 for a failure) and its discounted squared error grows. A signal's weight is its
starting weight times ``exp(-LEARNING_RATE x (its loss - the best loss))``, renormalised to
share what is left above a ``FLOOR`` each (so a signal that becomes right again can win back its
weight). In a fleet whose
agents overrate themselves, capability loses weight; once outcomes accumulate, the performance
prediction usually wins, since it is built from those very outcomes.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec

from shared.domain.routing.performance import Outcome

SIGNALS: Final = ("capability", "persona", "performance")
RECORDED_AS: Final = {"capability": "capability", "persona": "persona", "performance": "predicted_quality"}
"""Key of each signal in an assignment's breakdown (performance: the prediction, without risk)."""
LEARNING_RATE: Final = 4.0
DISCOUNT: Final = 0.98
"""Per outcome: losses older than ~50 outcomes fade, so the weights follow a changing fleet."""
FLOOR: Final = 0.01


class AdaptiveState(msgspec.Struct, kw_only=True):
    losses: dict[str, float] = {}
    """Discounted sum of squared errors per signal."""
    outcomes: int = 0


def observe(state: AdaptiveState, outcome: Outcome) -> AdaptiveState:
    """Charge each signal its error on this outcome, using the scores recorded at assignment."""
    if outcome.success and outcome.quality is None:
        return state
    realised = outcome.quality if outcome.success and outcome.quality is not None else 0.0
    records = outcome.task.assignments
    if not records or records[-1].attempt != outcome.task.attempt:
        return state
    scores = records[-1].breakdown
    if not all(key in scores for key in RECORDED_AS.values()):
        return state
    for signal in SIGNALS:
        error = scores[RECORDED_AS[signal]] - realised
        state.losses[signal] = DISCOUNT * state.losses.get(signal, 0.0) + error * error
    state.outcomes += 1
    return state


def adaptive_weights(state: AdaptiveState, start: dict[str, float]) -> dict[str, float]:
    """Weights of the three signals (summing to 1), from `start` and the losses so far."""
    if state.outcomes == 0:
        total = sum(start[s] for s in SIGNALS)
        return {s: start[s] / total for s in SIGNALS}
    best = min(state.losses.get(s, 0.0) for s in SIGNALS)
    raw = {s: start[s] * math.exp(-LEARNING_RATE * (state.losses.get(s, 0.0) - best)) for s in SIGNALS}
    total = sum(raw.values())
    spare = 1.0 - FLOOR * len(SIGNALS)
    return {s: FLOOR + spare * raw[s] / total for s in SIGNALS}
