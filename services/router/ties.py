"""The tie rule of strategies that spread ties (``adaptive``): equals by the evidence share the work. Pure.

The free candidates are split by ``shared/domain/routing/separation.py`` into those the posterior
cannot rank at the configured confidence (the contenders) and those another candidate is better
than at that confidence. The least loaded contender gets the task; among equally loaded ones the
strategy's rank decides (its score, with the exploration bonus of the uncertain). So work spreads
over agents the router cannot tell apart, exploration spreads with it, and an agent the evidence
says is better is alone among the contenders and wins while it has room.
"""

from __future__ import annotations

import msgspec

from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.policy import STRATEGIES, RoutingConfig, Weights
from shared.domain.routing.scoring import Scored
from shared.domain.routing.separation import Merit, Separation, probability_better, separate
from shared.events import RoutingStrategy


class Tie(msgspec.Struct, frozen=True, kw_only=True):
    """How a strategy that spreads ties chose among the candidates the posterior cannot rank."""

    confidence: float
    separation: Separation
    leader: Scored
    """The best-ranked free candidate: the choice had load not counted."""
    by_load: bool
    """The leader is a contender and the chosen agent is another, less loaded one: load decided."""
    leader_better: float
    """P(the leader's merit > the chosen agent's)."""
    merits: dict[str, Merit] = {}
    """The free candidates' merits by agent id, as split (so the explanation does not work them
    out again)."""


def merit(scored: Scored) -> Merit:
    """What the evidence says of a candidate: its fit at the posterior mean, x its breaker factor."""
    return Merit(
        agent_id=scored.agent_id,
        mean=scored.expected_fit * scored.breaker,
        sd=scored.expected_fit_sd * scored.breaker,
    )


def spread_ties(
    strategy: RoutingStrategy,
    task: TaskView,
    free: list[tuple[AgentView, Scored]],
    weights: Weights,
    config: RoutingConfig,
) -> Tie | None:
    """Put first the least loaded contender of `free` (in rank order; reordered in place).

    None, leaving the order alone, when there is no choice, when the strategy does not spread ties,
    when the decision must not explore (risk tolerance at or below 0: ``fault_tolerant`` mode,
    critical tasks: an unproven agent would be as good as any) or when a retry's preferred agent
    is free.
    """
    if len(free) < 2 or not STRATEGIES[strategy].spread_ties or weights.risk <= 0:
        return None
    leader_agent, leader = free[0]
    if leader_agent.agent_id == task.preferred_agent_id:
        return None
    merits = [merit(scored) for _agent, scored in free]
    separation = separate(merits, config.confidence)
    tied = set(separation.contenders)
    # The least loaded contender, the first in rank order among equally loaded ones.
    position = -1
    lowest = 0.0
    for index, (agent, _scored) in enumerate(free):
        if agent.agent_id in tied:
            utilisation = len(agent.in_flight) / agent.capacity if agent.capacity else 1.0  # .utilisation
            if position < 0 or utilisation < lowest:
                position, lowest = index, utilisation
    chosen_agent, chosen = free.pop(position)
    free.insert(0, (chosen_agent, chosen))
    by_load = position != 0 and leader.agent_id in tied
    return Tie(
        confidence=config.confidence,
        separation=separation,
        leader=leader,
        by_load=by_load,
        leader_better=probability_better(merits[0], merits[position]) if by_load else 0.5,
        merits={m.agent_id: m for m in merits},
    )
