"""The tie rule of strategies that spread ties (``adaptive``): equals by the evidence share the work. Pure.

The free candidates are split by ``shared/domain/routing/separation.py`` into those the posterior
cannot rank at the configured confidence (the contenders) and those another candidate is better
than at that confidence. The least loaded contender gets the task; among equally loaded ones the
strategy's rank decides (its score, with the exploration bonus of the uncertain). So work spreads
over agents the router cannot tell apart, exploration spreads with it, and an agent the evidence
says is better is alone among the contenders and wins while it has room.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from functools import lru_cache

import msgspec

from shared.domain.fleet import AgentView, TaskView
from shared.domain.perthread import PerThread
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
    avoided: frozenset[str] = frozenset()
    """Agents other router instances gave work to just now, passed over for a contender nearly as
    little loaded (``RoutingConfig.crowded``; empty: the least loaded contender was chosen)."""

    own_order: bool = False
    """Every contender nearly as little loaded was just given work by another instance: the chosen
    one came first in this instance's own order (``own_order``)."""

    @property
    def uncrowded(self) -> bool:
        return bool(self.avoided)

    def passed_over(self) -> list[str]:
        """The contenders another instance had just given work to, when the tie passed over them
        for another one (empty otherwise, and for a tie taken in the instance's own order, which
        the instance's name reproduces): with them, a re-run decides as this decision did."""
        if not self.avoided or self.own_order:
            return []
        return sorted(self.avoided.intersection(self.separation.contenders))


def merit(scored: Scored) -> Merit:
    """What the evidence says of a candidate: its fit at the posterior mean, x its breaker factor."""
    return Merit(
        agent_id=scored.agent_id,
        mean=scored.expected_fit * scored.breaker,
        sd=scored.expected_fit_sd * scored.breaker,
    )


class SplitMemo:
    """The merits and the split of the last free candidates, for the next decision of a plan.

    Between two decisions of a plan only the load of the agent just given work changes, and load is
    no part of a merit: the same candidates come again with the same evidence. A candidate's merit
    is kept while its score reads the very same numbers (the same float objects: a score worked
    out again at another load carries them over, ``TaskScorer._reloaded``), and the split of the
    last candidates is kept while every one of them has the very merit it was split on (the split
    does not depend on their order: ``separation.separate``). So both are exactly what working
    them out afresh gives. Shared: read them, never change them."""

    def __init__(self) -> None:
        self.merits: dict[str, tuple[float, float, float, Merit]] = {}
        """Agent id -> (expected fit, its sd, breaker factor) its merit was worked out from, and it."""
        self.split: dict[str, Merit] = {}
        """The candidates last split (agent id -> the merit split), empty when none were."""
        self.confidence = float("nan")
        self.separation: Separation | None = None
        self.tied: frozenset[str] = frozenset()
        """The contenders of ``separation``."""

    def clear(self) -> None:
        self.merits.clear()
        self.split = {}
        self.separation = None

    def merit(self, scored: Scored) -> Merit:
        """``merit(scored)``, the one kept when it was worked out from the same numbers."""
        known = self.merits.get(scored.agent_id)
        fit, sd, breaker = scored.expected_fit, scored.expected_fit_sd, scored.breaker
        if known is not None and known[0] is fit and known[1] is sd and known[2] is breaker:
            return known[3]
        if len(self.merits) >= MAX_MERITS_KEPT:
            self.merits.clear()
        found = self.merits[scored.agent_id] = (fit, sd, breaker, merit(scored))
        return found[3]

    def separate(
        self, merits: list[Merit], confidence: float
    ) -> tuple[Separation, dict[str, Merit], frozenset[str]]:
        """``separate(merits, confidence)``, the merits by agent id and the contenders, kept for the
        same merits."""
        split = self.split
        if (
            self.separation is not None
            and confidence == self.confidence
            and len(merits) == len(split)
            and all(split.get(m.agent_id) is m for m in merits)
        ):
            return self.separation, split, self.tied
        separation = separate(merits, confidence)
        self.separation, self.confidence = separation, confidence
        self.split = {m.agent_id: m for m in merits}
        self.tied = frozenset(separation.contenders)
        return separation, self.split, self.tied


MAX_MERITS_KEPT = 4096
"""Agents whose merit a ``SplitMemo`` keeps at most (then it starts again)."""

shared_splits = PerThread(SplitMemo)
"""This thread's ``SplitMemo``."""


def spread_ties(
    strategy: RoutingStrategy,
    task: TaskView,
    free: list[tuple[AgentView, Scored]],
    weights: Weights,
    config: RoutingConfig,
    memo: SplitMemo | None = None,
    merits: Mapping[str, Merit] | None = None,
) -> Tie | None:
    """Put first the least loaded contender of `free` (in rank order; reordered in place).

    None, leaving the order alone, when there is no choice, when the strategy does not spread ties,
    when the decision must not explore (risk tolerance at or below 0: ``fault_tolerant`` mode,
    critical tasks: an unproven agent would be as good as any) or when a retry's preferred agent
    is free. `memo`: where merits and splits already worked out are kept (None: this thread's).
    `merits`: the candidates' merits by agent id as their scores were made with them
    (``TaskScorer.merits``; None: worked out here).
    """
    if len(free) < 2 or not STRATEGIES[strategy].spread_ties or weights.risk <= 0:
        return None
    leader_agent, leader = free[0]
    if leader_agent.agent_id == task.preferred_agent_id:
        return None
    memo = memo if memo is not None else shared_splits()
    if merits is None:
        candidates = [memo.merit(scored) for _agent, scored in free]
    else:
        candidates = [merits[agent.agent_id] for agent, _scored in free]
    separation, by_agent, tied = memo.separate(candidates, config.confidence)
    # The least loaded contender, the first in rank order among equally loaded ones.
    position = -1
    lowest = 0.0
    for index, (agent, _scored) in enumerate(free):
        if agent.agent_id in tied:
            utilisation = len(agent.in_flight) / agent.capacity if agent.capacity else 1.0  # .utilisation
            if position < 0 or utilisation < lowest:
                position, lowest = index, utilisation
    uncrowded = own = False
    if config.crowded and free[position][0].agent_id in config.crowded:
        elsewhere = uncrowded_contender(free, tied, config.crowded, lowest)
        if elsewhere is not None:
            position, uncrowded = elsewhere, True
        elif config.instance:
            position, uncrowded, own = own_order(free, tied, lowest, config.instance), True, True
    chosen_agent, chosen = free.pop(position)
    free.insert(0, (chosen_agent, chosen))
    by_load = position != 0 and leader.agent_id in tied
    return Tie(
        confidence=config.confidence,
        separation=separation,
        leader=leader,
        by_load=by_load,
        leader_better=probability_better(candidates[0], candidates[position]) if by_load else 0.5,
        merits=by_agent,
        avoided=config.crowded if uncrowded else frozenset(),
        own_order=own,
    )


CROWDED_SLACK = 0.1
"""How much more loaded (utilisation) than the least loaded contender another one may be, to be
chosen instead of an agent other router instances gave work to just now."""


def uncrowded_contender(
    free: list[tuple[AgentView, Scored]], tied: Collection[str], crowded: Collection[str], lowest: float
) -> int | None:
    """The position in `free` of the least loaded contender no other router instance gave work to
    just now, within ``CROWDED_SLACK`` of the `lowest` utilisation (the first in rank order among
    equally loaded ones); None when there is none. Instances deciding at once from the same view
    then keep to different agents: each instance's assignment is appended against its agent's last
    sequence, and two to one agent decided on the same view refuse one another."""
    position: int | None = None
    best = lowest + CROWDED_SLACK + 1e-9  # (7/20 + 0.1 < 9/20 in floats)
    for index, (agent, _scored) in enumerate(free):
        if agent.agent_id in tied and agent.agent_id not in crowded:
            utilisation = len(agent.in_flight) / agent.capacity if agent.capacity else 1.0
            if utilisation < best or (position is None and utilisation <= best):
                position, best = index, utilisation
    return position


def own_order(
    free: list[tuple[AgentView, Scored]], tied: Collection[str], lowest: float, instance: str
) -> int:
    """The position in `free` of the contender within ``CROWDED_SLACK`` of the `lowest` utilisation
    that comes first in `instance`'s own order.

    For when every such contender was just given work by another instance: rivals deciding fast
    enough touch every agent within the router's ``CROWDED_S``, and all picking the least loaded
    one then refuse each other's assignments (about one in two with two instances at their
    ceiling). Each instance's order is its own (``own_rank``), so two instances' first choices among
    k contenders are the same one time in k, and the load stays within the slack of the least
    loaded.
    """
    position, first = -1, -1
    limit = lowest + CROWDED_SLACK + 1e-9
    for index, (agent, _scored) in enumerate(free):
        if agent.agent_id in tied:
            utilisation = len(agent.in_flight) / agent.capacity if agent.capacity else 1.0
            if utilisation <= limit:
                rank = own_rank(instance, agent.agent_id)
                if rank > first:
                    position, first = index, rank
    return position


@lru_cache(maxsize=8192)
def own_rank(instance: str, agent_id: str) -> int:
    """Where `agent_id` comes in `instance`'s order of agents (higher first): a hash of both, so
    each instance's order is unrelated to another's (rendezvous hashing) and the same at every
    decision, whatever the other agents."""
    digest = hashlib.blake2b(f"{instance}\0{agent_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
