"""Why an agent was chosen and why the others were not, in numbers and in words. Pure."""

from __future__ import annotations

from functools import lru_cache

from services.router.ties import Tie, merit
from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.policy import Weights
from shared.domain.routing.scoring import Scored
from shared.domain.routing.separation import probability_better


def breakdown(scored: Scored, weights: Weights, tie: Tie | None = None) -> dict[str, float]:
    """Every factor of the chosen agent, the weights that combined them, and the prediction; with
    a strategy that spreads ties, the confidence and how the tie among equals was broken."""
    prediction = scored.prediction
    # Rounded as they are put in (one dict, not a second one rounded from the first).
    values = {
        "capability": round(scored.capability, 4),
        "persona": round(scored.persona, 4),
        "performance": round(scored.performance, 4),
        "timeliness": round(scored.timeliness, 4),
        "fit": round(scored.fit, 4),
        "load": round(scored.load, 4),
        "breaker": round(scored.breaker, 4),
        "availability": round(scored.availability, 4),
        "predicted_quality": round(prediction.quality, 4),
        "uncertainty": round(prediction.uncertainty, 4),
        "success_probability": round(prediction.success_probability, 4),
        "observations": round(float(prediction.observations), 4),
        **_weights_shown(weights),
    }
    if prediction.duration_s is not None:
        values["predicted_duration_s"] = round(prediction.duration_s, 4)
    if tie is not None:
        values["tie_confidence"] = round(tie.confidence, 4)
        values["tied_candidates"] = round(float(len(tie.separation.contenders)), 4)
        values["candidates_alike"] = 1.0 if tie.separation.alike else 0.0
        values["tie_broken_by_load"] = 1.0 if tie.by_load else 0.0
        if tie.uncrowded:
            values["tie_avoided_rival_agent"] = 1.0
        if tie.own_order:
            values["tie_in_own_order"] = 1.0
        if tie.by_load:
            values["leader_better_probability"] = round(tie.leader_better, 4)
    return values


@lru_cache(maxsize=64)
def _weights_shown(weights: Weights) -> dict[str, float]:
    """The weights' part of a breakdown, rounded (the same weights serve many decisions: a plan's
    tasks of one kind). Shared: read it, never change it."""
    return {
        "weight_capability": round(weights.capability, 4),
        "weight_persona": round(weights.persona, 4),
        "weight_performance": round(weights.performance, 4),
        "weight_timeliness": round(weights.timeliness, 4),
        "load_weight": round(weights.load, 4),
        "risk_tolerance": round(weights.risk, 4),
    }


def _persona_phrase(agent: AgentView, task: TaskView, persona: float) -> str:
    preferred = task.spec.profile.preferred_cognitive_style
    wanted = f"the task prefers {preferred}" if preferred else "the task prefers no style"
    return f"persona {persona:.2f} ({agent.persona.cognitive_style}; {wanted})"


def _prediction_phrase(scored: Scored, task: TaskView) -> str:
    prediction = scored.prediction
    if prediction.observations == 0:
        basis = f"no outcomes on {task.spec.task_type} yet, so from declared capability and persona"
    else:
        basis = (
            f"from {prediction.observations} outcome(s) on {task.spec.task_type}, "
            f"success {prediction.success_probability:.0%}"
        )
    shift = scored.performance - prediction.quality
    adjusted = ""
    if abs(shift) >= 0.005:
        adjusted = (
            f"; {'+' if shift > 0 else ''}{shift:.2f} for risk ({'explore' if shift > 0 else 'caution'})"
        )
    return f"predicted quality {prediction.quality:.2f} ± {prediction.uncertainty:.2f} ({basis}{adjusted})"


def explanation(
    strategy: str,
    mode: str,
    chosen: AgentView,
    scored: Scored,
    task: TaskView,
    runner_up: tuple[Scored, str] | None,
    tie: Tie | None = None,
) -> str:
    """One paragraph a dispatcher would write: the choice, its numbers and the closest alternative."""
    text = (
        f"{strategy} ({mode} mode): {chosen.agent_id} scored {scored.score:.3f} = fit {scored.fit:.3f} "
        f"x availability {scored.availability:.3f}. P{_prediction_phrase(scored, task)[1:]}; "
        f"capability {scored.capability:.2f}; {_persona_phrase(chosen, task, scored.persona)}; "
        f"load {chosen.load}/{chosen.capacity}"
    )
    if scored.breaker < 1.0:
        text += "; circuit breaker half-open (probe)"
    if strategy == "round_robin":
        text += "; next in rotation (given work longest ago)"
    text += "."
    if tie is not None:
        text += " " + _tie_phrase(tie, chosen)
    if runner_up is not None:
        other, reason = runner_up
        text += f" Runner-up {other.agent_id}: {reason}."
    return text


def _tie_phrase(tie: Tie, chosen: AgentView) -> str:
    """What the evidence could tell apart, and whether load decided."""
    tied = len(tie.separation.contenders)
    if tied == 1:
        return (
            f"The evidence ranks it first: every other free candidate has one better than it with "
            f"probability >= {tie.confidence:.2f}."
        )
    if tie.separation.alike:
        basis = (
            f"the {tied} free candidates' predictions do not differ at confidence "
            f"{tie.separation.family_confidence:.3f} (taken together)"
        )
    else:
        basis = (
            f"{tied} contenders (none has a candidate better than it with probability "
            f">= {tie.confidence:.2f})"
        )
    if tie.own_order:
        return (
            f"Tie among equals: {basis}; every one of them nearly as little loaded as the least "
            f"loaded was just given work by another router instance, and {chosen.agent_id} comes "
            "first among them in this instance's own order (instances keep to different agents, not "
            "to refuse each other's assignments)."
        )
    if tie.uncrowded:
        return (
            f"Tie among equals: {basis}; {chosen.agent_id} is nearly the least loaded of them, whose "
            "least loaded was just given work by another router instance (instances keep to "
            "different agents, not to refuse each other's assignments)."
        )
    if tie.by_load:
        return (
            f"Tie broken by load: {basis}; {tie.leader.agent_id} scored higher (better with probability "
            f"{tie.leader_better:.2f}) but {chosen.agent_id} is less loaded."
        )
    return f"Tie among equals: {basis}; {chosen.agent_id} is the least loaded of them and ranks first."


def tie_rival_reason(
    tie: Tie, chosen: AgentView, chosen_scored: Scored, agent: AgentView, scored: Scored
) -> str | None:
    """Why a free rival lost under the tie rule; None when the usual score comparison says it."""
    beaten = tie.separation.beaten_by.get(agent.agent_id)
    if beaten is not None:
        return (
            f"score {scored.score:.3f}; {beaten[0]} is better with probability {beaten[1]:.2f} "
            f"(>= {tie.confidence:.2f})"
        )
    # ``agent.utilisation > chosen.utilisation`` and their ``load``s, without the properties.
    load, capacity = len(agent.in_flight), agent.capacity
    chosen_load, chosen_capacity = len(chosen.in_flight), chosen.capacity
    if (load / capacity if capacity else 1.0) > (chosen_load / chosen_capacity if chosen_capacity else 1.0):
        merits = tie.merits
        mine = merits.get(scored.agent_id)
        theirs = merits.get(chosen_scored.agent_id)
        better = probability_better(
            mine if mine is not None else merit(scored),
            theirs if theirs is not None else merit(chosen_scored),
        )
        return (
            f"score {scored.score:.3f}, not told apart from {chosen.agent_id} (better with probability "
            f"{better:.2f}); busier ({load}/{capacity} vs {chosen_load}/{chosen_capacity} in flight)"
        )
    if tie.own_order and agent.agent_id in tie.separation.contenders:
        return (
            f"score {scored.score:.3f}, not told apart from {chosen.agent_id}; both just given work by "
            f"another router instance, and {chosen.agent_id} comes first in this instance's own order"
        )
    if agent.agent_id in tie.avoided and agent.agent_id in tie.separation.contenders:
        return (
            f"score {scored.score:.3f}, not told apart from {chosen.agent_id}; just given work by "
            "another router instance"
        )
    return None


def why_not(
    chosen: Scored, other: Scored, other_agent: AgentView, weights: Weights, chosen_agent: AgentView
) -> str:
    """The factor that cost `other` the most against `chosen`, with both values."""
    availability = chosen.availability
    # ``max`` of the gaps by (gap, name), in the same order and with the same comparisons, without
    # a dict and a key function per rival.
    factor = "capability"
    top = weights.capability * (chosen.capability - other.capability) * availability
    for name, gap in (
        ("persona", weights.persona * (chosen.persona - other.persona) * availability),
        ("performance", weights.performance * (chosen.performance - other.performance) * availability),
        ("timeliness", weights.timeliness * (chosen.timeliness - other.timeliness) * availability),
        ("availability", other.fit * (chosen.availability - other.availability)),
    ):
        if (gap, name) > (top, factor):
            top, factor = gap, name
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
