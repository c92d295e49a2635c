"""Why an agent was chosen and why the others were not, in numbers and in words. Pure."""

from __future__ import annotations

from functools import lru_cache

from services.router.ties import Tie, merit
from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.policy import Weights
from shared.domain.routing.scoring import Scored
from shared.domain.routing.separation import Merit, probability_better


@lru_cache(maxsize=4096)
def _fixed3(value: float) -> str:
    return f"{value:.3f}"


@lru_cache(maxsize=4096)
def _fixed2(value: float) -> str:
    return f"{value:.2f}"


def f3(value: float) -> str:
    """``f"{value:.3f}"``, remembered: a plan words the same scores again and again (the chosen
    agent's against each rival, a rival's in each decision it loses). 0.0 and -0.0 are one key but
    are written apart, and NaN is no key: those are written afresh."""
    if value == 0.0 or value != value:
        return f"{value:.3f}"
    return _fixed3(value)


def f2(value: float) -> str:
    """``f"{value:.2f}"``, remembered (as ``f3``)."""
    if value == 0.0 or value != value:
        return f"{value:.2f}"
    return _fixed2(value)


@lru_cache(maxsize=4096, typed=True)
def _rounded4(value: float) -> float:
    return round(value, 4)


def r4(value: float) -> float:
    """``round(value, 4)``, remembered (a plan rounds the same factors of the same agents again and
    again, and rounding a float to digits writes it out and reads it back). Kept by type: an int is
    rounded to an int; 0.0 and -0.0, and NaN, are rounded afresh (as ``f3``)."""
    if value == 0.0 or value != value:
        return round(value, 4)
    return _rounded4(value)


def breakdown(scored: Scored, weights: Weights, tie: Tie | None = None) -> dict[str, float]:
    """Every factor of the chosen agent, the weights that combined them, and the prediction; with
    a strategy that spreads ties, the confidence and how the tie among equals was broken."""
    prediction = scored.prediction
    # Rounded as they are put in (one dict, not a second one rounded from the first).
    values = {
        "capability": r4(scored.capability),
        "persona": r4(scored.persona),
        "performance": r4(scored.performance),
        "timeliness": r4(scored.timeliness),
        "fit": r4(scored.fit),
        "load": r4(scored.load),
        "breaker": r4(scored.breaker),
        "availability": r4(scored.availability),
        "predicted_quality": r4(prediction.quality),
        "uncertainty": r4(prediction.uncertainty),
        "success_probability": r4(prediction.success_probability),
        "observations": r4(float(prediction.observations)),
        **_weights_shown(weights),
    }
    if prediction.duration_s is not None:
        values["predicted_duration_s"] = r4(prediction.duration_s)
    if tie is not None:
        values["tie_confidence"] = r4(tie.confidence)
        values["tied_candidates"] = r4(float(len(tie.separation.contenders)))
        values["candidates_alike"] = 1.0 if tie.separation.alike else 0.0
        values["tie_broken_by_load"] = 1.0 if tie.by_load else 0.0
        if tie.by_load:
            values["leader_better_probability"] = r4(tie.leader_better)
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
    return f"persona {f2(persona)} ({agent.persona.cognitive_style}; {wanted})"


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
    return f"predicted quality {f2(prediction.quality)} ± {f2(prediction.uncertainty)} ({basis}{adjusted})"


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
        f"{strategy} ({mode} mode): {chosen.agent_id} scored {f3(scored.score)} = fit {f3(scored.fit)} "
        f"x availability {f3(scored.availability)}. P{_prediction_phrase(scored, task)[1:]}; "
        f"capability {f2(scored.capability)}; {_persona_phrase(chosen, task, scored.persona)}; "
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
            f"probability >= {f2(tie.confidence)}."
        )
    if tie.separation.alike:
        basis = (
            f"the {tied} free candidates' predictions do not differ at confidence "
            f"{f3(tie.separation.family_confidence)} (taken together)"
        )
    else:
        basis = (
            f"{tied} contenders (none has a candidate better than it with probability "
            f">= {f2(tie.confidence)})"
        )
    if tie.by_load:
        return (
            f"Tie broken by load: {basis}; {tie.leader.agent_id} scored higher (better with probability "
            f"{f2(tie.leader_better)}) but {chosen.agent_id} is less loaded."
        )
    return f"Tie among equals: {basis}; {chosen.agent_id} is the least loaded of them and ranks first."


def tie_rival_reason(
    tie: Tie, chosen: AgentView, chosen_scored: Scored, agent: AgentView, scored: Scored
) -> str | None:
    """Why a free rival lost under the tie rule; None when the usual score comparison says it."""
    beaten = tie.separation.beaten_by.get(agent.agent_id)
    if beaten is not None:
        return (
            f"score {f3(scored.score)}; {beaten[0]} is better with probability {f2(beaten[1])} "
            f"(>= {f2(tie.confidence)})"
        )
    if agent.utilisation > chosen.utilisation:
        return (
            f"score {f3(scored.score)}, not told apart from {chosen.agent_id} (better with probability "
            f"{f2(probability_better(_merit_of(tie, scored), _merit_of(tie, chosen_scored)))}); busier "
            f"({agent.load}/{agent.capacity} vs {chosen.load}/{chosen.capacity} in flight)"
        )
    return None


def _merit_of(tie: Tie, scored: Scored) -> Merit:
    """The candidate's merit as the tie rule split it (worked out here for one it did not see)."""
    known = tie.merits.get(scored.agent_id)
    return known if known is not None else merit(scored)


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
            f"lower predicted quality ({f2(other.prediction.quality)} vs {f2(chosen.prediction.quality)})"
        )
    elif factor == "capability":
        detail = f"lower capability ({f2(other.capability)} vs {f2(chosen.capability)})"
    elif factor == "persona":
        detail = f"weaker persona fit ({f2(other.persona)} vs {f2(chosen.persona)})"
    elif factor == "timeliness":
        detail = f"less timely ({f2(other.timeliness)} vs {f2(chosen.timeliness)})"
    elif other.breaker < chosen.breaker:
        detail = "circuit breaker half-open"
    else:
        detail = (
            f"busier ({other_agent.load}/{other_agent.capacity} vs "
            f"{chosen_agent.load}/{chosen_agent.capacity} in flight)"
        )
    return f"score {f3(other.score)} < {f3(chosen.score)}: {detail}"
