"""Each routing strategy and orchestration mode picks the agent its documented weights say it should."""

from __future__ import annotations

from pathlib import Path

from services.router.decide import Assign, route_task
from shared.domain.routing.policy import RoutingConfig, describe_policies
from shared.events import (
    AgentRegistered,
    BreakerHalfOpened,
    OrchestrationMode,
    Persona,
    Priority,
    RoutingStrategy,
    TaskAssigned,
    TaskProfile,
    TaskSubmitted,
)
from tests.unit.router_world import Log

README = Path(__file__).resolve().parents[2] / "README.md"


def choose(
    log: Log,
    strategy: RoutingStrategy | None = None,
    mode: OrchestrationMode = "standard",
    *,
    priority: Priority = "normal",
    profile: TaskProfile | None = None,
    deadline_ts: float | None = None,
    now: float = 0.0,
) -> Assign:
    task_id = f"probe-{log.seq}"
    log.add(
        TaskSubmitted(
            task_id=task_id,
            task_type="review",
            routing_strategy=strategy,
            priority=priority,
            profile=profile or TaskProfile(),
            deadline_ts=deadline_ts,
        )
    )
    decision = route_task(log.state, log.state.fleet.tasks[task_id], now, RoutingConfig(mode=mode))
    assert isinstance(decision, Assign), decision
    return decision


def test_persona_cognitive_match_prefers_the_agent_whose_persona_fits_the_task() -> None:
    analytical_task = TaskProfile(preferred_cognitive_style="analytical", analytical_depth=0.9)
    log = Log(
        AgentRegistered(
            agent_id="artist",
            capabilities={"review": 0.9},
            persona=Persona(cognitive_style="creative", analytical_depth=0.3),
        ),
        AgentRegistered(
            agent_id="analyst",
            capabilities={"review": 0.8},
            persona=Persona(cognitive_style="analytical", analytical_depth=0.9),
        ),
    )
    decision = choose(log, "persona_cognitive_match", profile=analytical_task)
    assert decision.agent_id == "analyst"
    assert decision.breakdown["persona"] > 0.9 and decision.breakdown["weight_persona"] > 0.5
    assert "persona 1.00 (analytical; the task prefers analytical)" in decision.explanation
    assert "weaker persona fit" in decision.rejected[0].reason


def test_capability_first_prefers_the_most_proficient_agent() -> None:
    log = Log(
        AgentRegistered(
            agent_id="expert", capabilities={"review": 1.0}, persona=Persona(cognitive_style="creative")
        ),
        AgentRegistered(
            agent_id="novice", capabilities={"review": 0.6}, persona=Persona(cognitive_style="analytical")
        ),
    )
    analytical = TaskProfile(preferred_cognitive_style="analytical")
    assert choose(log, "capability_first", profile=analytical).agent_id == "expert"
    assert choose(log, "persona_cognitive_match", profile=analytical).agent_id == "novice"


def test_performance_optimized_follows_outcomes_over_what_agents_declare() -> None:
    log = Log(
        AgentRegistered(agent_id="boaster", capabilities={"review": 1.0}),
        AgentRegistered(agent_id="quiet", capabilities={"review": 0.4}),
    )
    log.outcomes("boaster", "review", [0.4] * 10).outcomes("quiet", "review", [0.9] * 10)
    decision = choose(log, "performance_optimized")
    assert decision.agent_id == "quiet"
    assert "from 10 outcome(s) on review" in decision.explanation
    assert decision.rejected[0].agent_id == "boaster"
    assert "lower predicted quality" in decision.rejected[0].reason


def test_load_balanced_prefers_an_idle_agent_over_a_better_busy_one() -> None:
    log = Log(
        AgentRegistered(agent_id="star", capabilities={"review": 1.0}, capacity=4),
        AgentRegistered(agent_id="plain", capabilities={"review": 0.5}, capacity=4),
    )
    log.add(
        *[TaskSubmitted(task_id=f"busy{i}", task_type="review") for i in range(3)],
        *[TaskAssigned(agent_id="star", task_id=f"busy{i}", attempt=1) for i in range(3)],
    )
    assert choose(log, "load_balanced").agent_id == "plain"
    quality_first = choose(log, "adaptive")
    assert quality_first.agent_id == "star"
    assert quality_first.breakdown["load"] == 0.25


def test_round_robin_gives_work_to_the_agent_idle_longest() -> None:
    log = Log(*[AgentRegistered(agent_id=name, capabilities={"review": 1.0}, capacity=9) for name in "abc"])
    chosen = []
    for _ in range(6):
        decision = choose(log, "round_robin")
        chosen.append(decision.agent_id)
        log.add(TaskAssigned(agent_id=decision.agent_id, task_id=decision.task_id, attempt=1))
    assert chosen == ["a", "b", "c", "a", "b", "c"]
    assert "next in rotation" in decision.explanation


def test_adaptive_explores_an_unproven_agent_but_not_with_critical_work() -> None:
    log = Log(
        AgentRegistered(agent_id="veteran", capabilities={"review": 0.8}),
        AgentRegistered(agent_id="newcomer", capabilities={"review": 0.8}),
    )
    log.outcomes("veteran", "review", [0.9] * 30)
    explore = choose(log, "adaptive")
    assert explore.agent_id == "newcomer"
    assert "explore" in explore.explanation and explore.breakdown["risk_tolerance"] > 0
    careful = choose(log, "adaptive", priority="critical")
    assert careful.agent_id == "veteran"
    assert careful.breakdown["risk_tolerance"] == 0.0


def test_fault_tolerant_mode_prefers_a_proven_agent_and_spreads_load() -> None:
    log = Log(
        AgentRegistered(agent_id="veteran", capabilities={"review": 0.8}, capacity=4),
        AgentRegistered(agent_id="newcomer", capabilities={"review": 0.8}, capacity=4),
    )
    log.outcomes("veteran", "review", [0.8] * 30)
    standard = choose(log, "adaptive", "standard")
    careful = choose(log, "adaptive", "fault_tolerant")
    assert standard.agent_id == "newcomer" and careful.agent_id == "veteran"
    assert careful.breakdown["risk_tolerance"] < 0 < standard.breakdown["risk_tolerance"]
    assert careful.breakdown["load_weight"] == 2 * standard.breakdown["load_weight"]
    assert "fault_tolerant mode" in careful.explanation


def test_half_open_agents_are_scored_down_in_fault_tolerant_mode_only() -> None:
    log = Log(
        AgentRegistered(agent_id="probing", capabilities={"review": 0.9}, capacity=4),
        AgentRegistered(agent_id="healthy", capabilities={"review": 0.8}, capacity=4),
        BreakerHalfOpened(agent_id="probing", probes_allowed=3),
    )
    assert choose(log, "capability_first", "standard").agent_id == "probing"
    careful = choose(log, "capability_first", "fault_tolerant")
    assert careful.agent_id == "healthy"
    assert "circuit breaker half-open" in careful.rejected[0].reason


def test_high_performance_mode_and_deadlines_prefer_the_faster_agent() -> None:
    log = Log(
        AgentRegistered(agent_id="quick", capabilities={"review": 0.8}),
        AgentRegistered(agent_id="slow", capabilities={"review": 0.8}),
    )
    log.outcomes("quick", "review", [0.78] * 20, duration_s=1.0)
    log.outcomes("slow", "review", [0.8] * 20, duration_s=20.0)
    assert choose(log, "performance_optimized", "standard").agent_id == "slow"
    fast = choose(log, "performance_optimized", "high_performance")
    assert fast.agent_id == "quick" and fast.breakdown["weight_timeliness"] > 0
    due = choose(log, "performance_optimized", "standard", deadline_ts=5.0, now=0.0, priority="high")
    assert due.agent_id == "quick"
    assert due.breakdown["timeliness"] == 1.0 and due.breakdown["predicted_duration_s"] < 5.0


def test_the_readme_documents_the_strategy_and_mode_weights_exactly() -> None:
    assert describe_policies() in README.read_text()
