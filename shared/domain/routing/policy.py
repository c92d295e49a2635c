"""Routing strategies and orchestration modes as numbers: the weights a decision uses. Pure.

A candidate's score is ``fit x availability`` (see ``scoring``): ``fit`` is a weighted mean of
capability, persona compatibility, predicted performance and timeliness; ``availability`` is
``(1 - load_weight x utilisation) x breaker factor``. A strategy sets the starting weights; the
orchestration mode scales them and sets the risk tolerance (how many standard deviations of the
performance prediction are added, optimism that explores unproven agents, or subtracted,
caution that prefers proven ones); the task's priority and deadline raise timeliness and temper
exploration. ``describe_policies`` renders these tables for the README, which a test keeps true.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec

from shared.domain.fleet import TaskView
from shared.domain.perthread import PerThread
from shared.domain.routing.adaptive import AdaptiveState, adaptive_weights
from shared.domain.routing.keys import ConcurrencyLimit, RateLimit
from shared.domain.routing.separation import DEFAULT_CONFIDENCE
from shared.events import OrchestrationMode, RoutingStrategy, TaskSubmitted


class RoutingConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What the router's settings say: the orchestration mode and the strategy of tasks naming none."""

    mode: OrchestrationMode = "standard"
    default_strategy: RoutingStrategy = "adaptive"
    confidence: float = DEFAULT_CONFIDENCE
    """ROUTING_CONFIDENCE: how sure the posterior must be that one agent is better than another
    before a strategy that spreads ties prefers it to a less loaded one (``separation``)."""
    quality_wait_s: float = math.inf
    """QUALITY_WAIT_S: how long a task without a deadline waits for an agent predicted to reach its
    quality threshold before it goes to the best available one (inf, the pure default: for ever)."""
    concurrency_limits: tuple[ConcurrencyLimit, ...] = ()
    """CONCURRENCY_LIMITS (the API's limits, in the log, replace them pattern by pattern)."""
    rate_limits: tuple[RateLimit, ...] = ()
    """RATE_LIMITS."""
    crowded: frozenset[str] = frozenset()
    """Agents other router instances gave work to just now (their assignments applied by the view):
    a strategy that spreads ties gives a task to another contender nearly as little loaded
    (``ties.spread_ties``), so instances deciding at once from the same view keep to different agents
    instead of picking the same least loaded one and refusing each other's assignments."""
    instance: str = ""
    """This router instance's name. When every contender nearly as little loaded as the least
    loaded is ``crowded`` (rivals deciding fast enough to touch every agent), a strategy that spreads
    ties takes them in this instance's own order (``ties.own_order``), so racing instances still
    pick different agents (empty: the least loaded, as alone)."""


class StrategyWeights(msgspec.Struct, frozen=True, kw_only=True):
    capability: float
    persona: float
    performance: float
    load: float
    """How much a full agent's score drops relative to an idle one's (0: load ignored, 1: to zero)."""
    spread_ties: bool = False
    """Among candidates the posterior cannot rank at the configured confidence, the least loaded
    wins (when the decision may explore: risk tolerance above 0)."""


class ModeProfile(msgspec.Struct, frozen=True, kw_only=True):
    performance_boost: float
    """Multiplies the strategy's performance weight (before renormalising)."""
    speed_weight: float
    """Timeliness weight even without a deadline (faster agents preferred)."""
    load_multiplier: float
    """Multiplies the strategy's load weight (capped at 1)."""
    risk_tolerance: float
    """Standard deviations of the performance prediction added to it (< 0: subtracted)."""
    half_open_factor: float
    """Score multiplier of an agent whose circuit breaker is half-open (probing)."""


class Weights(msgspec.Struct, frozen=True, kw_only=True):
    """The effective numbers of one decision (the four fit weights sum to 1)."""

    capability: float
    persona: float
    performance: float
    timeliness: float
    load: float
    risk: float
    half_open_factor: float


STRATEGIES: Final[dict[RoutingStrategy, StrategyWeights]] = {
    "persona_cognitive_match": StrategyWeights(capability=0.25, persona=0.55, performance=0.20, load=0.10),
    "performance_optimized": StrategyWeights(capability=0.05, persona=0.05, performance=0.90, load=0.02),
    "load_balanced": StrategyWeights(capability=0.30, persona=0.30, performance=0.40, load=1.00),
    "capability_first": StrategyWeights(capability=0.70, persona=0.10, performance=0.20, load=0.05),
    "round_robin": StrategyWeights(capability=0.34, persona=0.33, performance=0.33, load=0.00),
    "adaptive": StrategyWeights(capability=0.20, persona=0.20, performance=0.60, load=0.03, spread_ties=True),
    "performance_weighted_persona": StrategyWeights(
        capability=0.15, persona=0.40, performance=0.45, load=0.05
    ),
}
"""Starting weights; ``adaptive`` re-weights its three signals from outcomes (``adaptive.py``),
``round_robin`` ranks by rotation and scores only to explain."""

ALIASES: Final[dict[RoutingStrategy, RoutingStrategy]] = {
    "hybrid_intelligence": "adaptive",
    "contextual_adaptive": "adaptive",
    "priority_aware": "adaptive",
    "learning_optimized": "performance_optimized",
    "performance_first": "performance_optimized",
    "specialization_focused": "capability_first",
    "persona_optimized": "persona_cognitive_match",
}
"""The specification's strategy names that are one of the above by another name (the README says
why each); a task keeps the name it asked for, its assignments name the strategy that decided."""

MODES: Final[dict[OrchestrationMode, ModeProfile]] = {
    "standard": ModeProfile(
        performance_boost=1.0, speed_weight=0.0, load_multiplier=1.0, risk_tolerance=1.0, half_open_factor=1.0
    ),
    "high_performance": ModeProfile(
        performance_boost=1.5,
        speed_weight=0.15,
        load_multiplier=0.5,
        risk_tolerance=0.5,
        half_open_factor=0.8,
    ),
    "fault_tolerant": ModeProfile(
        performance_boost=1.0,
        speed_weight=0.0,
        load_multiplier=2.0,
        risk_tolerance=-1.0,
        half_open_factor=0.5,
    ),
    "energy_efficient": ModeProfile(
        performance_boost=1.0,
        speed_weight=0.0,
        load_multiplier=0.0,
        risk_tolerance=0.0,
        half_open_factor=0.5,
    ),
    "emergency": ModeProfile(
        performance_boost=1.5,
        speed_weight=0.3,
        load_multiplier=1.0,
        risk_tolerance=-1.0,
        half_open_factor=0.25,
    ),
}
"""``energy_efficient`` ignores load and never explores: work concentrates on the best-fitting
agents until they are full instead of spreading over the fleet; ``emergency`` wants proven, fast
agents now."""

DEADLINE_WEIGHT: Final = 0.2
"""Timeliness weight added when the task has a deadline."""

PRIORITY_TIMELINESS: Final[dict[str, float]] = {"low": 0.5, "normal": 1.0, "high": 1.5, "critical": 2.0}
"""Multiplies the timeliness weight."""

PRIORITY_EXPLORATION: Final[dict[str, float]] = {"low": 1.5, "normal": 1.0, "high": 0.5, "critical": 0.0}
"""Multiplies a positive risk tolerance: critical work is never used to explore."""


def canonical(strategy: RoutingStrategy) -> RoutingStrategy:
    """The strategy that decides for `strategy` (itself, unless it is an alias)."""
    return ALIASES.get(strategy, strategy)


def strategy_of(task: TaskView, config: RoutingConfig) -> RoutingStrategy:
    """The strategy that decides for the task: its own, else the configured default, aliases resolved."""
    return canonical(task.spec.routing_strategy or config.default_strategy)


def signal_weights(strategy: RoutingStrategy, adaptive: AdaptiveState) -> dict[str, float]:
    """The strategy's capability / persona / performance weights; adaptive's as learned so far."""
    strategy = canonical(strategy)
    base = STRATEGIES[strategy]
    signals = {"capability": base.capability, "persona": base.persona, "performance": base.performance}
    return adaptive_weights(adaptive, signals) if strategy == "adaptive" else signals


def effective_weights(
    strategy: RoutingStrategy, mode: OrchestrationMode, task: TaskSubmitted, adaptive: AdaptiveState
) -> Weights:
    """The weights for routing `task` with `strategy` in `mode` (remembered: ``WeightsMemo``)."""
    strategy = canonical(strategy)
    known = shared_weights().weights_for(adaptive)
    key = (strategy, mode, task.deadline_ts is not None, task.priority)
    weights = known.get(key)
    if weights is None:
        weights = known[key] = _effective_weights(strategy, mode, task, adaptive)
    return weights


class WeightsMemo:
    """Weights already worked out, while the adaptive state they read does not change.

    Every decision needs the weights of its task, and they depend only on the strategy, the mode,
    whether the task has a deadline, its priority and (``adaptive``) the learned losses: a plan's
    tasks are mostly of one kind, and between two outcomes the weights are the same numbers. The
    adaptive state changes only by ``observe``, which counts ``outcomes`` with every change of the
    losses: the memo keeps the weights of one state at one count (the state itself held, so that
    another can never be taken for it) and forgets them when either differs.
    """

    def __init__(self) -> None:
        self._adaptive: AdaptiveState | None = None
        self._outcomes = -1
        self._weights: dict[tuple[str, str, bool, str], Weights] = {}

    def weights_for(self, adaptive: AdaptiveState) -> dict[tuple[str, str, bool, str], Weights]:
        """(strategy, mode, has a deadline, priority) -> weights, for `adaptive` as it is now."""
        if adaptive is not self._adaptive or adaptive.outcomes != self._outcomes:
            self._adaptive = adaptive
            self._outcomes = adaptive.outcomes
            self._weights.clear()
        return self._weights


shared_weights = PerThread(WeightsMemo)
"""This thread's ``WeightsMemo``."""


def _effective_weights(
    strategy: RoutingStrategy, mode: OrchestrationMode, task: TaskSubmitted, adaptive: AdaptiveState
) -> Weights:
    """``effective_weights`` worked out (`strategy` canonical)."""
    base = STRATEGIES[strategy]
    profile = MODES[mode]
    signals = signal_weights(strategy, adaptive)
    signals["performance"] *= profile.performance_boost
    timeliness = profile.speed_weight + (DEADLINE_WEIGHT if task.deadline_ts is not None else 0.0)
    timeliness *= PRIORITY_TIMELINESS[task.priority]
    total = sum(signals.values()) + timeliness
    risk = profile.risk_tolerance
    if risk > 0:
        risk *= PRIORITY_EXPLORATION[task.priority]
    return Weights(
        capability=signals["capability"] / total,
        persona=signals["persona"] / total,
        performance=signals["performance"] / total,
        timeliness=timeliness / total,
        load=min(1.0, base.load * profile.load_multiplier),
        risk=risk,
        half_open_factor=profile.half_open_factor,
    )


def describe_policies() -> str:
    """The strategy and mode tables as Markdown (the README carries this text verbatim)."""
    lines = [
        "| strategy | capability | persona | performance | load weight | agents not told apart |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, weights in STRATEGIES.items():
        ties = "least loaded first" if weights.spread_ties else "best score first"
        if name == "round_robin":
            ties = "rotation"
        lines.append(
            f"| `{name}` | {weights.capability:.2f} | {weights.persona:.2f} | {weights.performance:.2f} "
            f"| {weights.load:.2f} | {ties} |"
        )
    lines += [
        "",
        "| strategy | is |",
        "| --- | --- |",
    ]
    lines += [f"| `{alias}` | `{name}` |" for alias, name in ALIASES.items()]
    lines += [
        "",
        "| mode | performance x | speed weight | load weight x | risk tolerance | half-open factor |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mode, profile in MODES.items():
        lines.append(
            f"| `{mode}` | {profile.performance_boost:.2f} | {profile.speed_weight:.2f} "
            f"| {profile.load_multiplier:.2f} | {profile.risk_tolerance:+.2f} "
            f"| {profile.half_open_factor:.2f} |"
        )
    lines += [
        "",
        "| priority | timeliness x | exploration x |",
        "| --- | --- | --- |",
    ]
    for priority, factor in PRIORITY_TIMELINESS.items():
        lines.append(f"| `{priority}` | {factor:.2f} | {PRIORITY_EXPLORATION[priority]:.2f} |")
    return "\n".join(lines)
