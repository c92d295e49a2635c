"""Scale advice without NATS: demand per task type -> how many more agents, and when that changes."""

from __future__ import annotations

from services.balancer.scaling import ScalePolicy, advise, all_advice, capability_scope, changed_advice
from services.balancer.view import BalancerState, apply_balancer
from shared.events import (
    AgentRegistered,
    AnyEvent,
    ScaleRecommended,
    TaskAssigned,
    TaskCompleted,
    TaskQueued,
    TaskStarted,
    TaskSubmitted,
)
from shared.ids import check_id
from shared.recorded import Recorded

POLICY = ScalePolicy(window_s=60.0, target_utilisation=0.8)


def state_of(*events: AnyEvent) -> BalancerState:
    state = BalancerState()
    for seq, event in enumerate(events, start=1):
        apply_balancer(state, Recorded(seq, event.subject, event))
    return state


def demand(task_type: str, count: int, duration_s: float, start: float = 1000.0) -> list[AnyEvent]:
    """`count` tasks of `task_type` over the window, each completed by "worker" in `duration_s`."""
    events: list[AnyEvent] = []
    for index in range(count):
        ts = start + index * (59.0 / count)
        task_id = f"{task_type}-{index}"
        events += [
            TaskSubmitted(task_id=task_id, task_type=task_type, ts=ts),
            TaskAssigned(agent_id="worker", task_id=task_id, attempt=1, ts=ts),
            TaskStarted(task_id=task_id, agent_id="worker", attempt=1, ts=ts),
            TaskCompleted(task_id=task_id, agent_id="worker", attempt=1, duration_s=duration_s, ts=ts),
        ]
    return events


def test_arrivals_beyond_what_the_agents_can_serve_ask_for_more_agents() -> None:
    # 120 tasks/min = 2/s x 2 s each = 4 busy slots; at 80% utilisation 5 slots; 2 agents x 1 slot.
    state = state_of(
        AgentRegistered(agent_id="worker", capabilities={"review": 1.0}, capacity=1, ts=1.0),
        AgentRegistered(agent_id="other", capabilities={"review": 1.0}, capacity=1, ts=1.0),
        *demand("review", 120, 2.0),
    )
    advice = advise(state, "review", now=1060.0, policy=POLICY)
    assert advice.arrival_rate_per_s == 2.0 and advice.mean_duration_s == 2.0
    assert advice.needed_slots == 5.0 and advice.current_slots == 2
    assert advice.additional_agents == 3
    assert "2.00 arrivals/s" in advice.reason


def test_enough_agents_need_no_more() -> None:
    state = state_of(
        AgentRegistered(agent_id="worker", capabilities={"review": 1.0}, capacity=10, ts=1.0),
        *demand("review", 60, 1.0),
    )
    assert advise(state, "review", now=1060.0, policy=POLICY).additional_agents == 0


def test_a_queue_with_nobody_able_to_take_it_asks_for_at_least_one_agent() -> None:
    state = state_of(
        AgentRegistered(agent_id="py", capabilities={"python": 1.0}, capacity=4, ts=1.0),
        TaskSubmitted(task_id="g1", task_type="golang", ts=1000.0),
        TaskQueued(task_id="g1", attempt=1, reason="no_capable_agent", ts=1000.0),
    )
    advice = all_advice(state, now=1001.0, policy=POLICY)
    assert [(a.capability, a.additional_agents, a.queue_depth) for a in advice] == [("golang", 1, 1)]


def test_tasks_held_below_their_quality_threshold_do_not_count_in_the_queue() -> None:
    state = state_of(
        AgentRegistered(agent_id="py", capabilities={"golang": 1.0}, capacity=4, ts=1.0),
        TaskSubmitted(task_id="g1", task_type="golang", ts=1000.0),
        TaskQueued(task_id="g1", attempt=1, reason="below_quality_threshold", ts=1000.0),
    )
    assert advise(state, "golang", now=5000.0, policy=POLICY).queue_depth == 0


def test_advice_goes_up_at_once_and_down_only_after_a_window_without_change() -> None:
    base = [
        AgentRegistered(agent_id="worker", capabilities={"review": 1.0}, capacity=1, ts=1.0),
        *demand("review", 120, 2.0),
    ]
    state = state_of(*base)
    advice = all_advice(state, now=1060.0, policy=POLICY)
    assert [a.additional_agents for a in changed_advice(state, advice, 1060.0, POLICY)] == [4]
    standing = ScaleRecommended(
        scope=capability_scope("review"), capability="review", additional_agents=4, ts=1060.0
    )
    state = state_of(*base, standing)
    assert changed_advice(state, all_advice(state, 1060.0, POLICY), 1060.0, POLICY) == []
    quiet = all_advice(state, now=1100.0, policy=POLICY)  # arrivals leaving the window: fewer needed
    assert quiet[0].additional_agents < 4
    assert changed_advice(state, quiet, 1100.0, POLICY) == []
    later = all_advice(state, now=1200.0, policy=POLICY)
    assert [a.additional_agents for a in changed_advice(state, later, 1200.0, POLICY)] == [0]


def test_every_capability_gets_a_valid_scope() -> None:
    assert capability_scope("code_review") == "scale-code_review"
    odd = capability_scope("lang:python.3")
    assert check_id(odd) == odd and odd != capability_scope("lang_python_3")
