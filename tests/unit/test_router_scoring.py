"""Scoring: persona compatibility, capability, and the properties every score keeps (hypothesis)."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.decide import Assign, route_task
from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.persona import compatibility, style_affinity, trait_fit
from shared.domain.routing.policy import MODES, STRATEGIES, RoutingConfig, effective_weights
from shared.domain.routing.scoring import capability_score, score_candidate
from shared.events import (
    AgentRegistered,
    AnyEvent,
    BreakerHalfOpened,
    CognitiveStyle,
    Persona,
    Priority,
    TaskAssigned,
    TaskProfile,
    TaskSubmitted,
)
from tests.unit.router_world import Log

STYLES: tuple[CognitiveStyle, ...] = get_args(CognitiveStyle)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def test_the_same_style_and_exactly_met_traits_are_fully_compatible() -> None:
    persona = Persona(cognitive_style="analytical", creativity=0.3, analytical_depth=0.9, collaboration=0.4)
    profile = TaskProfile(
        preferred_cognitive_style="analytical",
        creativity_requirements=0.3,
        analytical_depth=0.9,
        collaboration_intensity=0.4,
    )
    assert compatibility(persona, profile) == 1.0
    assert style_affinity("analytical", "meticulous") > style_affinity("analytical", "creative")


def test_falling_short_of_a_requirement_costs_four_times_more_than_exceeding_it() -> None:
    assert abs(trait_fit(0.8, 0.6) - (1.0 - 0.2)) < 1e-12
    assert abs(trait_fit(0.6, 0.8) - (1.0 - 0.25 * 0.2)) < 1e-12


def test_a_task_without_a_preferred_style_is_judged_on_traits_alone() -> None:
    profile = TaskProfile(creativity_requirements=0.5, analytical_depth=0.5, collaboration_intensity=0.5)
    creative = Persona(cognitive_style="creative")
    meticulous = Persona(cognitive_style="meticulous")
    assert compatibility(creative, profile) == compatibility(meticulous, profile) == 1.0


def test_capability_counts_the_weakest_needed_proficiency() -> None:
    agent = AgentView(agent_id="a", capabilities={"review": 1.0, "python": 0.2, "go": 1.0})
    task = TaskView(spec=TaskSubmitted(task_id="t", task_type="review", required_capabilities=["python"]))
    assert capability_score(agent, task) == 0.5 * 0.6 + 0.5 * 0.2


# --- properties --------------------------------------------------------------------------------


@st.composite
def fleets(draw: st.DrawFn) -> tuple[Log, TaskView, RoutingConfig]:
    """A few agents with personas, proficiencies, load, breakers and outcomes, and one task."""
    count = draw(st.integers(min_value=1, max_value=5))
    events: list[AnyEvent] = []
    for index in range(count):
        events.append(
            AgentRegistered(
                agent_id=f"a{index}",
                capabilities={"x": draw(unit), "y": draw(unit)},
                persona=Persona(
                    cognitive_style=draw(st.sampled_from(STYLES)),
                    creativity=draw(unit),
                    analytical_depth=draw(unit),
                    collaboration=draw(unit),
                ),
                capacity=draw(st.integers(min_value=1, max_value=4)),
            )
        )
        if draw(st.booleans()):
            events.append(BreakerHalfOpened(agent_id=f"a{index}", probes_allowed=5))
    log = Log(*events)
    for index in range(count):
        qualities = draw(st.lists(st.one_of(st.none(), unit), max_size=6))
        log.outcomes(f"a{index}", "x", qualities, style=draw(st.one_of(st.none(), st.sampled_from(STYLES))))
        for busy in range(draw(st.integers(min_value=0, max_value=2))):
            log.add(
                TaskSubmitted(task_id=f"busy-{index}-{busy}", task_type="x"),
                TaskAssigned(agent_id=f"a{index}", task_id=f"busy-{index}-{busy}", attempt=1),
            )
    priority: Priority = draw(st.sampled_from(get_args(Priority)))
    deadline = draw(st.one_of(st.none(), st.floats(min_value=-10, max_value=100)))
    log.add(
        TaskSubmitted(
            task_id="probe",
            task_type="x",
            required_capabilities=draw(st.sampled_from([[], ["y"]])),
            priority=priority,
            deadline_ts=deadline,
            profile=TaskProfile(
                preferred_cognitive_style=draw(st.one_of(st.none(), st.sampled_from(STYLES))),
                creativity_requirements=draw(unit),
                analytical_depth=draw(unit),
                collaboration_intensity=draw(unit),
            ),
            routing_strategy=draw(st.sampled_from(list(STRATEGIES))),
        )
    )
    config = RoutingConfig(mode=draw(st.sampled_from(list(MODES))))
    return log, log.state.fleet.tasks["probe"], config


def _scores(log: Log, task: TaskView, config: RoutingConfig, agent: AgentView) -> Any:
    spec = task.spec
    weights = effective_weights(spec.routing_strategy or "adaptive", config.mode, spec, log.state.adaptive)
    return score_candidate(log.state.performance, log.state.breakers, agent, task, weights, now=0.0)


@settings(max_examples=150, deadline=None)
@given(fleets())
def test_every_factor_and_every_score_stays_between_0_and_1(
    case: tuple[Log, TaskView, RoutingConfig],
) -> None:
    log, task, config = case
    for agent in log.state.fleet.agents.values():
        scored = _scores(log, task, config, agent)
        for value in (
            scored.capability,
            scored.persona,
            scored.performance,
            scored.timeliness,
            scored.fit,
            scored.load,
            scored.breaker,
            scored.availability,
            scored.score,
            scored.prediction.quality,
            scored.prediction.success_probability,
        ):
            assert 0.0 <= value <= 1.0
    decision = route_task(log.state, task, 0.0, config)
    if isinstance(decision, Assign):
        assert 0.0 <= decision.score <= 1.0
        assert all(0.0 <= r.score <= 1.0 for r in decision.rejected)


@settings(max_examples=150, deadline=None)
@given(fleets(), st.integers(min_value=1, max_value=3))
def test_more_load_never_raises_the_score(case: tuple[Log, TaskView, RoutingConfig], extra: int) -> None:
    log, task, config = case
    for agent in log.state.fleet.agents.values():
        busier = msgspec.structs.replace(
            agent,
            capacity=max(agent.capacity, agent.load + extra),
            in_flight={**agent.in_flight, **{f"extra-{i}": 1 for i in range(extra)}},
        )
        roomier = msgspec.structs.replace(busier, in_flight=dict(agent.in_flight))
        assert _scores(log, task, config, busier).score <= _scores(log, task, config, roomier).score


@settings(max_examples=100, deadline=None)
@given(fleets(), st.randoms(use_true_random=False))
def test_the_same_projection_and_task_always_give_the_same_choice(
    case: tuple[Log, TaskView, RoutingConfig], shuffler: Any
) -> None:
    log, task, config = case
    first = route_task(log.state, task, 0.0, config)
    assert route_task(log.state, task, 0.0, config) == first
    replayed = msgspec.msgpack.decode(msgspec.msgpack.encode(log.state), type=type(log.state))
    assert route_task(replayed, task, 0.0, config) == first
    agents = list(replayed.fleet.agents.items())
    shuffler.shuffle(agents)
    replayed.fleet.agents = dict(agents)
    assert route_task(replayed, task, 0.0, config) == first, "registration order must not matter"


@settings(max_examples=100, deadline=None)
@given(fleets())
def test_the_fit_weights_of_every_strategy_and_mode_sum_to_one(
    case: tuple[Log, TaskView, RoutingConfig],
) -> None:
    log, task, config = case
    for strategy in STRATEGIES:
        weights = effective_weights(strategy, config.mode, task.spec, log.state.adaptive)
        total = weights.capability + weights.persona + weights.performance + weights.timeliness
        assert abs(total - 1.0) < 1e-9
        assert 0.0 <= weights.load <= 1.0
