"""Why an agent was chosen and why the others were not, in numbers and in words. Pure."""

from __future__ import annotations

from services.router.ties import Tie, merit
from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.policy import Weights
from shared.domain.routing.scoring import Scored
from shared.domain.routing.separation import probability_better


def breakdown(scored: Scored, weights: Weights, tie: Tie | None = None) -> dict[str, float]:
    """Every factor of the chosen agent, the weights that combined them, and the prediction; with
    a strategy that spreads ties, the confidence and how the tie among equals was broken."""
    prediction = scored.prediction
    values = {
        "capability": scored.capability,
        "persona": scored.persona,
        "performance": scored.performance,
        "timeliness": scored.timeliness,
        "fit": scored.fit,
        "load": scored.load,
        "breaker": scored.breaker,
        "availability": scored.availability,
        "predicted_quality": prediction.quality,
        "uncertainty": prediction.uncertainty,
        "success_probability": prediction.success_probability,
        "observations": float(prediction.observations),
        "weight_capability": weights.capability,
        "weight_persona": weights.persona,
        "weight_performance": weights.performance,
        "weight_timeliness": weights.timeliness,
        "load_weight": weights.load,
        "risk_tolerance": weights.risk,
    }
    if prediction.duration_s is not None:
        values["predicted_duration_s"] = prediction.duration_s
    if tie is not None:
        values["tie_confidence"] = tie.confidence
        values["tied_candidates"] = float(len(tie.separation.contenders))
        values["candidates_alike"] = 1.0 if tie.separation.alike else 0.0
        values["tie_broken_by_load"] = 1.0 if tie.by_load else 0.0
        if tie.by_load:
            values["leader_better_probability"] = tie.leader_better
    return {key: round(value, 4) for key, value in values.items()}


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
    if agent.utilisation > chosen.utilisation:
        return (
            f"score {scored.score:.3f}, not told apart from {chosen.agent_id} (better with probability "
            f"{probability_better(merit(scored), merit(chosen_scored)):.2f}); busier "
            f"({agent.load}/{agent.capacity} vs {chosen.load}/{chosen.capacity} in flight)"
        )
    return None


def why_not(
    chosen: Scored, other: Scored, other_agent: AgentView, weights: Weights, chosen_agent: AgentView
) -> str:
    """The factor that cost `other` the most against `chosen`, with both values."""
    gaps = {
        "capability": weights.capability * (chosen.capability - other.capability) * chosen.availability,
        "persona": weights.persona * (chosen.persona - other.persona) * chosen.availability,
        "performance": weights.performance * (chosen.performance - other.performance) * chosen.availability,
        "timeliness": weights.timeliness * (chosen.timeliness - other.timeliness) * chosen.availability,
        "availability": other.fit * (chosen.availability - other.availability),
    }
    factor = max(gaps, key=lambda name: (gaps[name], name))
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
