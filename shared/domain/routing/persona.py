"""Persona-cognitive compatibility of an agent with a task, in [0, 1]. Pure.

A task states the cognitive style it prefers (or none) and how much creativity, analytical depth
and collaboration it needs; an agent's persona states its style and the same three traits. A
dispatcher weighs both: the style says how the agent approaches work, the traits whether it can
meet what this task asks. Falling short of a requirement costs four times more than exceeding it
(an over-qualified agent is a mild waste, an under-qualified one a risk).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from shared.events import CognitiveStyle, Persona, TaskProfile

STYLE_WEIGHT: Final = 0.4
"""Share of the style in the compatibility when the task prefers a style; traits take the rest."""

SURPLUS_COST: Final = 0.25
"""Cost of exceeding a trait requirement, per unit, relative to falling short (1.0)."""

_AFFINITY: Final[dict[frozenset[str], float]] = {
    frozenset({"analytical", "meticulous"}): 0.7,
    frozenset({"creative", "collaborative"}): 0.6,
    frozenset({"analytical", "pragmatic"}): 0.5,
    frozenset({"pragmatic", "collaborative"}): 0.5,
    frozenset({"pragmatic", "meticulous"}): 0.5,
    frozenset({"creative", "pragmatic"}): 0.4,
    frozenset({"analytical", "collaborative"}): 0.3,
    frozenset({"collaborative", "meticulous"}): 0.3,
    frozenset({"analytical", "creative"}): 0.2,
    frozenset({"creative", "meticulous"}): 0.2,
}
"""How well an agent of one style serves a task preferring another (1.0 for the same style)."""


def style_affinity(agent_style: CognitiveStyle, preferred: CognitiveStyle) -> float:
    """1.0 for the same style, else the affinity of the two styles."""
    if agent_style == preferred:
        return 1.0
    return _AFFINITY[frozenset({agent_style, preferred})]


def trait_fit(requirement: float, trait: float) -> float:
    """1.0 when the trait meets the requirement exactly; shortfall costs 1 per unit, surplus 0.25."""
    gap = trait - requirement
    cost = -gap if gap < 0 else SURPLUS_COST * gap
    return max(0.0, 1.0 - cost)


def traits_fit(persona: Persona, profile: TaskProfile) -> float:
    """Mean fit of creativity, analytical depth and collaboration."""
    return (
        trait_fit(profile.creativity_requirements, persona.creativity)
        + trait_fit(profile.analytical_depth, persona.analytical_depth)
        + trait_fit(profile.collaboration_intensity, persona.collaboration)
    ) / 3.0


@lru_cache(maxsize=4096)
def compatibility(persona: Persona, profile: TaskProfile) -> float:
    """0.4 x style affinity + 0.6 x trait fit; traits alone when the task prefers no style.

    Cached: personas and profiles are frozen values and a fleet has few of each at a time.
    """
    traits = traits_fit(persona, profile)
    if profile.preferred_cognitive_style is None:
        return traits
    style = style_affinity(persona.cognitive_style, profile.preferred_cognitive_style)
    return STYLE_WEIGHT * style + (1.0 - STYLE_WEIGHT) * traits
