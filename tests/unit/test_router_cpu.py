"""What a decision does not work out: scores of agents when the task waits whatever they are."""

from __future__ import annotations

import pytest

import services.router.decide as decide
from services.router.decide import ALL_BUSY, NO_CAPABLE, Assign, Hold, route_task
from shared.domain.fleet import TaskView
from shared.domain.routing.eligibility import BELOW_THRESHOLD
from shared.events import AgentRegistered, TaskAssigned, TaskSubmitted
from tests.unit.router_world import Log


class _NoScoring:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("scored agents for a task that waits whatever their scores")


def _full_fleet() -> Log:
    log = Log(
        AgentRegistered(agent_id="a", capabilities={"review": 1.0}, capacity=1),
        AgentRegistered(agent_id="b", capabilities={"review": 0.5}, capacity=1),
        AgentRegistered(agent_id="c", capabilities={"other": 1.0}, capacity=1),
    )
    for agent_id in ("a", "b"):
        log.add(
            TaskSubmitted(task_id=f"busy-{agent_id}", task_type="review"),
            TaskAssigned(agent_id=agent_id, task_id=f"busy-{agent_id}", attempt=1),
        )
    return log


def test_a_task_no_agent_has_room_for_is_held_without_scoring_anyone(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _full_fleet()
    monkeypatch.setattr(decide, "TaskScorer", _NoScoring)
    held = route_task(log.state, TaskView(spec=TaskSubmitted(task_id="t", task_type="review")), 1.0)
    assert held == Hold(task_id="t", attempt=1, reason=ALL_BUSY, detail="2 capable agent(s), all at capacity")
    nobody = route_task(log.state, TaskView(spec=TaskSubmitted(task_id="u", task_type="nothing")), 1.0)
    assert isinstance(nobody, Hold) and nobody.reason == NO_CAPABLE


def test_a_task_with_a_quality_threshold_is_still_scored_to_say_why_it_waits() -> None:
    log = _full_fleet()
    task = TaskView(spec=TaskSubmitted(task_id="t", task_type="review", expected_quality_threshold=0.99))
    held = route_task(log.state, task, 1.0)
    assert isinstance(held, Hold) and held.reason == BELOW_THRESHOLD


def test_an_agent_with_room_is_scored_and_chosen() -> None:
    log = _full_fleet()
    log.add(AgentRegistered(agent_id="d", capabilities={"review": 0.7}, capacity=2))
    chosen = route_task(log.state, TaskView(spec=TaskSubmitted(task_id="t", task_type="review")), 1.0)
    assert isinstance(chosen, Assign) and chosen.agent_id == "d"
    assert [r.reason for r in chosen.rejected[:2]] == ["at capacity (1/1)", "at capacity (1/1)"]
