"""Learned performance: predictions follow outcomes, uncertainty shrinks, stale reports teach nothing."""

from __future__ import annotations

import msgspec

from shared.domain.fleet import TaskView
from shared.domain.routing.adaptive import FLOOR, AdaptiveState, adaptive_weights
from shared.domain.routing.performance import predict
from shared.domain.routing.view import ROUTER_VIEW, RouterState
from shared.events import (
    AgentRegistered,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskProfile,
    TaskRequeued,
    TaskSubmitted,
)
from shared.projection import Snapshot
from shared.projection_spec import schema_id
from tests.unit.router_world import Log


def task(task_type: str = "review", style: str | None = None) -> TaskView:
    profile = TaskProfile(preferred_cognitive_style=style)  # type: ignore[arg-type]
    return TaskView(spec=TaskSubmitted(task_id="probe", task_type=task_type, profile=profile))


def test_an_agent_that_delivers_better_quality_is_predicted_higher() -> None:
    log = (
        Log()
        .outcomes("good", "review", [0.9, 0.92, 0.88, 0.91])
        .outcomes("poor", "review", [0.4, 0.45, 0.38])
    )
    performance = log.state.performance
    good = predict(performance, "good", task(), declared=0.5)
    poor = predict(performance, "poor", task(), declared=0.5)
    assert good.quality > 0.8 > 0.5 > poor.quality
    assert good.observations == 4 and poor.observations == 3


def test_a_new_agent_is_predicted_from_its_declared_fit_with_more_uncertainty() -> None:
    log = Log().outcomes("proven", "review", [0.7] * 20)
    performance = log.state.performance
    newcomer = predict(performance, "newcomer", task(), declared=0.8)
    proven = predict(performance, "proven", task(), declared=0.8)
    assert newcomer.observations == 0
    assert abs(newcomer.quality_if_success - 0.8) < 1e-9
    assert newcomer.uncertainty > 3 * proven.uncertainty
    assert abs(proven.quality_if_success - 0.7) < 0.02


def test_more_outcomes_never_make_a_prediction_less_certain() -> None:
    log = Log()
    spreads = []
    for _ in range(6):
        log.outcomes("a", "review", [0.7, 0.72])
        spreads.append(predict(log.state.performance, "a", task(), declared=0.5).uncertainty)
    assert spreads == sorted(spreads, reverse=True)


def test_failed_attempts_lower_the_success_probability_and_the_prediction() -> None:
    log = (
        Log()
        .outcomes("steady", "review", [0.8] * 6)
        .outcomes("flaky", "review", [0.8, None, 0.8, None, 0.8, None])
    )
    steady = predict(log.state.performance, "steady", task(), declared=0.5)
    flaky = predict(log.state.performance, "flaky", task(), declared=0.5)
    assert flaky.success_probability < 0.7 < 0.9 < steady.success_probability
    assert flaky.quality < steady.quality


def test_failures_that_are_not_the_agents_doing_teach_nothing() -> None:
    log = Log()
    for index, (failure_type, retryable) in enumerate([("rebalanced", True), ("agent_error", False)]):
        log.add(
            TaskSubmitted(task_id=f"t{index}", task_type="review"),
            TaskAssigned(agent_id="a", task_id=f"t{index}", attempt=1),
            TaskAttemptFailed(
                task_id=f"t{index}", agent_id="a", attempt=1, failure_type=failure_type, retryable=retryable
            ),
        )
    assert log.state.performance.outcomes == 0
    assert "a" not in log.state.performance.agents


def test_a_stale_or_redelivered_result_teaches_nothing() -> None:
    log = Log(
        AgentRegistered(agent_id="a", capabilities={"review": 1.0}),
        AgentRegistered(agent_id="b", capabilities={"review": 1.0}),
        TaskSubmitted(task_id="t", task_type="review"),
        TaskAssigned(agent_id="a", task_id="t", attempt=1),
        TaskRequeued(task_id="t", attempt=2, previous_agent_id="a"),
        TaskCompleted(task_id="t", agent_id="a", attempt=1, quality=0.1),
    )
    assert log.state.performance.outcomes == 0, "a superseded attempt's result must not count"
    log.add(
        TaskAssigned(agent_id="b", task_id="t", attempt=2),
        TaskCompleted(task_id="t", agent_id="b", attempt=2, quality=0.9),
        TaskCompleted(task_id="t", agent_id="b", attempt=2, quality=0.9),
    )
    assert log.state.performance.outcomes == 1
    assert log.state.performance.agents["b"].overall.rated == 1


def test_what_an_agent_shows_in_a_style_carries_over_to_other_task_types() -> None:
    log = Log()
    for task_type in ("review", "refactor"):
        log.outcomes("a", task_type, [0.9] * 8, style="creative")
        log.outcomes("a", task_type, [0.5] * 8, style="meticulous")
    log.outcomes("a", "testing", [0.7] * 8, style="creative")
    meticulous = predict(log.state.performance, "a", task("testing", "meticulous"), declared=0.5)
    assert meticulous.quality_if_success < 0.55, "meticulous work was weak on every type seen"
    creative = predict(log.state.performance, "a", task("testing", "creative"), declared=0.5)
    assert creative.quality_if_success > meticulous.quality_if_success + 0.1


def test_durations_are_learned_per_agent_and_task_type() -> None:
    log = (
        Log()
        .outcomes("fast", "review", [0.8] * 5, duration_s=1.0)
        .outcomes("slow", "review", [0.8] * 5, duration_s=9.0)
    )
    fast = predict(log.state.performance, "fast", task(), declared=0.5)
    slow = predict(log.state.performance, "slow", task(), declared=0.5)
    assert fast.duration_s is not None and slow.duration_s is not None
    assert fast.duration_s < 3.0 < 7.0 < slow.duration_s


def test_the_router_state_survives_a_snapshot_round_trip() -> None:
    log = Log(AgentRegistered(agent_id="a", capabilities={"review": 0.9}, capacity=2))
    log.outcomes("a", "review", [0.8, None, 0.7], style="analytical")
    snapshot = Snapshot(seq=log.seq, state=log.state, versions={})
    blob = msgspec.msgpack.encode(snapshot)
    restored = msgspec.msgpack.decode(blob, type=Snapshot[RouterState]).state
    assert restored == log.state
    assert predict(restored.performance, "a", task(), 0.5) == predict(log.state.performance, "a", task(), 0.5)
    assert ROUTER_VIEW.schema == schema_id("router", RouterState)


def test_adaptive_weights_move_to_the_signal_that_predicts_outcomes() -> None:
    # Capability says 0.9 for everyone, persona 0.2; only the performance prediction tracks outcomes.
    log = Log(AgentRegistered(agent_id="a", capabilities={"review": 1.0}))
    start = {"capability": 0.2, "persona": 0.2, "performance": 0.6}
    for index in range(40):
        quality = 0.3 if index % 2 else 0.6
        task_id = f"t{index}"
        log.add(
            TaskSubmitted(task_id=task_id, task_type="review"),
            TaskAssigned(
                agent_id="a",
                task_id=task_id,
                attempt=1,
                breakdown={"capability": 0.9, "persona": 0.2, "predicted_quality": quality},
            ),
            TaskCompleted(task_id=task_id, agent_id="a", attempt=1, quality=quality),
        )
    weights = adaptive_weights(log.state.adaptive, start)
    assert weights["performance"] > 0.9
    assert min(weights.values()) >= FLOOR * 0.99
    assert abs(sum(weights.values()) - 1.0) < 1e-9
    assert adaptive_weights(AdaptiveState(), start) == start
