"""Affinity keys and label requirements without NATS: soft and hard affinity (waiting while the
agent is busy, failing over when it is gone), required and preferred labels with comparators and
weights, and what the routing explanation says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.router.decide import Assign, Hold, next_decision, route_task
from shared.domain.routing.affinity import AFFINITY_BUSY
from shared.domain.routing.labels import label_rule_problem, rule_met
from shared.events import AgentRegistered, AgentUnresponsive, LabelRule
from tests.unit.keys_world import World


def fleet(*labels: dict[str, str], capacity: int = 2) -> World:
    world = World()
    for index, agent_labels in enumerate(labels):
        world.add(
            AgentRegistered(
                agent_id=f"a{index}", capabilities={"x": 1.0}, capacity=capacity, labels=agent_labels
            )
        )
    return world


def assigned_to(world: World, task_id: str) -> str:
    task = world.state.fleet.tasks[task_id]
    assert task.agent_id is not None, f"{task_id} is {task.status}: {task.queued_reason} {task.queued_detail}"
    return task.agent_id


def test_soft_affinity_prefers_the_agent_that_last_ran_the_key_and_moves_when_it_is_busy() -> None:
    world = fleet({}, {}, {}, capacity=1)
    world.submit("first", affinity_key="repo").drive()
    home = assigned_to(world, "first")
    world.complete("first")
    world.submit("second", affinity_key="repo").drive()
    assert assigned_to(world, "second") == home
    assert f"{home} ran it last" in world.state.fleet.tasks["second"].assignments[-1].explanation
    world.submit("third", affinity_key="repo").drive()  # home is full: soft affinity moves on
    assert assigned_to(world, "third") != home


def test_hard_affinity_waits_while_its_agent_is_busy_and_fails_over_when_it_is_gone() -> None:
    world = fleet({}, {}, capacity=1)
    world.submit("first", affinity_key="repo", affinity="hard").drive()
    home = assigned_to(world, "first")
    made = world.submit("second", affinity_key="repo", affinity="hard").drive()
    assert [(type(d), getattr(d, "reason", "")) for d in made] == [(Hold, AFFINITY_BUSY)]
    assert f"bound to {home} (hard)" in world.state.fleet.tasks["second"].queued_detail
    world.add(AgentUnresponsive(agent_id=home))
    world.drive()
    other = assigned_to(world, "second")
    assert other != home
    assert "moves to" in world.state.fleet.tasks["second"].assignments[-1].explanation
    assert world.state.keys.affinity["repo"] == other


def test_hard_affinity_rejects_the_other_agents_saying_why() -> None:
    world = fleet({}, {}, capacity=2)
    world.submit("first", affinity_key="repo", affinity="hard").drive()
    home = assigned_to(world, "first")
    world.submit("second", affinity_key="repo", affinity="hard")
    decision = route_task(world.state, world.state.fleet.tasks["second"])
    assert isinstance(decision, Assign) and decision.agent_id == home
    assert any("bound to" in r.reason for r in decision.rejected)


def test_required_labels_keep_agents_without_them_out_and_say_so() -> None:
    world = fleet({"gpu": "a10", "region": "us"}, {"gpu": "h100", "region": "eu"})
    world.submit("t", labels={"gpu": "h100"})
    decision = route_task(world.state, world.state.fleet.tasks["t"])
    assert isinstance(decision, Assign) and decision.agent_id == "a1"
    assert [r.reason for r in decision.rejected] == ["labels not met: gpu=h100"]


def test_no_agent_with_the_required_labels_holds_the_task() -> None:
    world = fleet({"gpu": "a10"})
    made = world.submit("t", label_rules=[LabelRule(label="vram", op="gte", value=40)]).drive()
    assert isinstance(made[0], Hold) and made[0].reason == "no_capable_agent"


def test_preferred_labels_rank_agents_by_the_weights_they_meet_and_are_explained() -> None:
    world = fleet(
        {"region": "us", "gpu": "a10"}, {"region": "eu", "gpu": "a10"}, {"region": "eu", "gpu": "h100"}
    )
    rules = [
        LabelRule(label="region", op="eq", value="eu", mode="prefer", weight=1),
        LabelRule(label="gpu", op="in", value=["h100", "a100"], mode="prefer", weight=2),
    ]
    world.submit("t", label_rules=rules).drive()
    assert assigned_to(world, "t") == "a2"
    explanation = world.state.fleet.tasks["t"].assignments[-1].explanation
    assert "preferred labels met: region=eu (+1), gpu in [h100, a100] (+2)" in explanation


@pytest.mark.parametrize(
    ("rule", "labels", "met"),
    [
        (LabelRule(label="gpu", op="eq", value="h100"), {"gpu": "h100"}, True),
        (LabelRule(label="gpu", op="ne", value="h100"), {"gpu": "a10"}, True),
        (LabelRule(label="gpu", op="ne", value="h100"), {}, True),
        (LabelRule(label="gpu", op="in", value=["a", "b"]), {"gpu": "c"}, False),
        (LabelRule(label="vram", op="gt", value=40), {"vram": "80"}, True),
        (LabelRule(label="vram", op="lt", value=40), {"vram": "80"}, False),
        (LabelRule(label="vram", op="gte", value="40"), {"vram": "40"}, True),
        (LabelRule(label="vram", op="lte", value=40), {"vram": "lots"}, False),
        (LabelRule(label="vram", op="gt", value=1), {}, False),
        (LabelRule(label="spot", op="exists"), {"spot": ""}, True),
        (LabelRule(label="cores", op="eq", value=8.0), {"cores": "8"}, True),
    ],
)
def test_each_comparator(rule: LabelRule, labels: dict[str, str], met: bool) -> None:
    assert rule_met(rule, labels) is met


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (LabelRule(label="g", op="in", value="a"), "needs a list"),
        (LabelRule(label="g", op="eq", value=["a"]), "not a list"),
        (LabelRule(label="g", op="gt", value="big"), "compares numbers"),
        (LabelRule(label="g", op="eq"), "needs a value"),
        (LabelRule(label="g", op="exists", value="x"), "takes no value"),
    ],
)
def test_a_rule_whose_value_does_not_suit_its_comparator_is_named(rule: LabelRule, problem: str) -> None:
    assert problem in (label_rule_problem(rule) or "")


@given(st.floats(allow_nan=False, allow_infinity=False), st.floats(allow_nan=False, allow_infinity=False))
def test_numeric_comparators_agree_with_python(have: float, value: float) -> None:
    labels = {"n": repr(have)}
    assert rule_met(LabelRule(label="n", op="gt", value=value), labels) is (have > value)
    assert rule_met(LabelRule(label="n", op="lte", value=value), labels) is (have <= value)


def test_tasks_with_other_hard_affinity_keys_are_not_held_for_each_other() -> None:
    world = fleet({}, {}, capacity=1)
    world.submit("a1", affinity_key="a", affinity="hard").submit(
        "b1", affinity_key="b", affinity="hard"
    ).drive()
    assert {assigned_to(world, "a1"), assigned_to(world, "b1")} == {"a0", "a1"}
    world.submit("a2", affinity_key="a", affinity="hard").submit(
        "b2", affinity_key="b", affinity="hard"
    ).drive()
    world.complete("b1")
    decision = next_decision(world.state, 0.0)
    assert isinstance(decision, Assign) and decision.task_id == "b2"


def test_soft_affinity_outranks_spreading_ties_to_the_less_loaded() -> None:
    world = fleet({}, {}, {}, capacity=8)
    for index in range(5):
        world.submit(f"t{index}", affinity_key="cache").drive()
    assert {assigned_to(world, f"t{index}") for index in range(5)} == {assigned_to(world, "t0")}
    world.submit("free", ts=1.0).drive()  # without a key, ties still spread to the less loaded
    assert assigned_to(world, "free") != assigned_to(world, "t0")
