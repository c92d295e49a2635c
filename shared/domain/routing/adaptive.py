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


_RECORDED_KEYS: Final = tuple(RECORDED_AS.values())
_SIGNAL_KEYS: Final = tuple((signal, RECORDED_AS[signal]) for signal in SIGNALS)
"""(signal, its key in the breakdown), in ``SIGNALS`` order: ``observe`` runs per outcome."""


def observe(state: AdaptiveState, outcome: Outcome) -> AdaptiveState:
    """Charge each signal its error on this outcome, using the scores recorded at assignment."""
    success = outcome.success
    quality = outcome.quality
    if success and quality is None:
        return state
    realised = quality if success and quality is not None else 0.0
    task = outcome.task
    records = task.assignments
    if not records:
        return state
    last = records[-1]
    if last.attempt != task.attempt:
        return state
    scores = last.breakdown
    for key in _RECORDED_KEYS:
        if key not in scores:
            return state
    losses = state.losses
    for signal, key in _SIGNAL_KEYS:
        error = scores[key] - realised
        losses[signal] = DISCOUNT * losses.get(signal, 0.0) + error * error
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
