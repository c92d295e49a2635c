"""Router instances deciding at once from the same view keep to different agents: an agent another
instance gave work to just now (``RoutingConfig.crowded``) is passed over for a contender nearly as
little loaded, never for a busier or a worse one, and nothing changes without such agents. When
rivals gave work to every contender nearly as little loaded (they decide fast enough to touch every
agent), each instance takes those in its own order (``RoutingConfig.instance``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.decide import Assign, plan, route_task
from services.router.ties import CROWDED_SLACK, own_rank
from shared.domain.routing.policy import RoutingConfig
from shared.events import AgentRegistered, TaskAssigned, TaskSubmitted
from tests.unit.router_world import Log

CAPACITY = 20


def equal_fleet(loads: list[int]) -> Log:
    """Agents alike in all they declare (no outcomes: the evidence cannot tell them apart), `loads`
    tasks in flight each."""
    log = Log(
        *[
            AgentRegistered(agent_id=f"a{index}", capabilities={"review": 0.8}, capacity=CAPACITY)
            for index in range(len(loads))
        ]
    )
    for index, load in enumerate(loads):
        for n in range(load):
            task_id = f"busy-{index}-{n}"
            log.add(
                TaskSubmitted(task_id=task_id, task_type="review"),
                TaskAssigned(agent_id=f"a{index}", task_id=task_id, attempt=1),
            )
    return log


def route_new(log: Log, config: RoutingConfig, task_id: str = "new") -> Assign:
    log.add(TaskSubmitted(task_id=task_id, task_type="review"))
    decision = route_task(log.state, log.state.fleet.tasks[task_id], 0.0, config)
    assert isinstance(decision, Assign), decision
    return decision


def test_the_least_loaded_agent_another_instance_just_used_is_passed_over_and_the_assignment_says_why() -> (
    None
):
    log = equal_fleet([3, 1, 2, 2])
    alone = route_new(log, RoutingConfig())
    assert alone.agent_id == "a1", "one instance: the least loaded, as before"
    shared = route_new(log, RoutingConfig(crowded=frozenset({"a1"})))
    assert shared.agent_id == "a2", "the next least loaded (first in rank among a2, a3)"
    assert shared.breakdown["tie_avoided_rival_agent"] == 1.0
    assert "just given work by another router instance" in shared.explanation
    passed = next(r for r in shared.rejected if r.agent_id == "a1")
    assert "just given work by another router instance" in passed.reason
    assert "tie_avoided_rival_agent" not in alone.breakdown
    assert shared.passed_over == ["a1"] and alone.passed_over == []


def test_a_crowded_agent_still_gets_the_task_when_every_other_is_clearly_busier() -> None:
    gap = int(CROWDED_SLACK * CAPACITY) + 1  # more than the slack above the least loaded
    log = equal_fleet([0, gap, gap + 3])
    decision = route_new(log, RoutingConfig(crowded=frozenset({"a0"})))
    assert decision.agent_id == "a0", "load is kept even: no busier agent for the sake of a rival"
    assert "tie_avoided_rival_agent" not in decision.breakdown
    everyone = route_new(log, RoutingConfig(crowded=frozenset({"a0", "a1", "a2"})), task_id="new2")
    assert everyone.agent_id == "a0", "all crowded: the least loaded, as without rivals"


def test_two_instances_planning_from_one_view_pick_different_agents_once_they_see_each_other() -> None:
    """What made the racing instances refuse each other: both gave their new tasks to the same least
    loaded agents. With the other's last agents crowded, their next plans share none."""
    log = equal_fleet([0] * 8)
    for index in range(8):
        log.add(TaskSubmitted(task_id=f"t{index}", task_type="review"))
    mine, theirs = {f"t{i}" for i in range(0, 8, 2)}, {f"t{i}" for i in range(1, 8, 2)}
    before_a = plan(log.state, 0.0, RoutingConfig(), claimed=mine, limit=4)
    before_b = plan(log.state, 0.0, RoutingConfig(), claimed=theirs, limit=4)
    agents_a = {p.decision.agent_id for p in before_a if isinstance(p.decision, Assign)}
    agents_b = {p.decision.agent_id for p in before_b if isinstance(p.decision, Assign)}
    assert agents_a == agents_b, "the old way: the same four agents, every assignment contested"
    after_b = plan(log.state, 0.0, RoutingConfig(crowded=frozenset(agents_a)), claimed=theirs, limit=4)
    agents_after = {p.decision.agent_id for p in after_b if isinstance(p.decision, Assign)}
    assert len(agents_after) == 4 and not agents_after & agents_a


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, CAPACITY - 1), min_size=2, max_size=7),
    st.sets(st.integers(0, 6)),
)
def test_a_crowded_tie_gives_the_task_to_a_contender_within_the_slack_and_changes_nothing_else(
    loads: list[int], crowded_indexes: set[int]
) -> None:
    log = equal_fleet(loads)
    crowded = frozenset(f"a{i}" for i in crowded_indexes if i < len(loads))
    old = route_new(log, RoutingConfig())
    new = route_task(log.state, log.state.fleet.tasks["new"], 0.0, RoutingConfig(crowded=crowded))
    assert isinstance(new, Assign)
    lowest = min(loads) / CAPACITY
    load = {f"a{i}": n / CAPACITY for i, n in enumerate(loads)}
    assert load[new.agent_id] <= lowest + CROWDED_SLACK + 1e-9, "never a clearly busier agent"
    near = {agent for agent, share in load.items() if share <= lowest + CROWDED_SLACK + 1e-9}
    if old.agent_id not in crowded or near <= crowded:
        assert new == old, "no crowded agent to pass over: the very decision made without rivals"
    else:
        assert new.agent_id not in crowded
        assert load[new.agent_id] == min(load[a] for a in near - crowded), "the least loaded of the rest"
        assert new.passed_over and set(new.passed_over) <= crowded, "it records whom it passed over"
    recorded = RoutingConfig(crowded=frozenset(new.passed_over))
    again = route_task(log.state, log.state.fleet.tasks["new"], 0.0, recorded)
    assert again == new, "what the assignment records of the crowded agents decides it again"


def first_in_own_order(instance: str, agents: set[str]) -> str:
    return max(agents, key=lambda agent_id: own_rank(instance, agent_id))


def test_when_rivals_gave_work_to_every_near_contender_the_instance_takes_them_in_its_own_order() -> None:
    log = equal_fleet([2, 1, 1, 2, 1, 9])  # a5 is clearly busier: outside the slack
    everyone = frozenset(f"a{i}" for i in range(6))
    near = {"a0", "a1", "a2", "a3", "a4"}
    decision = route_new(log, RoutingConfig(crowded=everyone, instance="router-7"))
    assert decision.agent_id == first_in_own_order("router-7", near)
    assert decision.breakdown["tie_in_own_order"] == 1.0
    assert decision.breakdown["tie_avoided_rival_agent"] == 1.0
    assert "this instance's own order" in decision.explanation
    assert decision.passed_over == [], "the instance's name, not a list of the crowded, says it"
    for rival in decision.rejected:
        if rival.agent_id in near:
            assert rival.reason and ("own order" in rival.reason or "busier" in rival.reason), rival.reason
    nameless = route_new(log, RoutingConfig(crowded=everyone), task_id="new2")
    assert nameless.agent_id == "a1", "no instance name: the least loaded, as alone"
    assert "tie_in_own_order" not in nameless.breakdown


def test_own_order_is_used_only_when_every_near_contender_is_crowded() -> None:
    log = equal_fleet([1, 1, 1, 1])
    partly = route_new(log, RoutingConfig(crowded=frozenset({"a0", "a1"}), instance="router-0"))
    assert partly.agent_id == "a2", "an uncrowded contender exists: it is chosen, as before"
    assert "tie_in_own_order" not in partly.breakdown
    calm = route_new(log, RoutingConfig(instance="router-0"), task_id="new2")
    assert calm.agent_id == route_new(log, RoutingConfig(), task_id="new3").agent_id
    assert "tie_avoided_rival_agent" not in calm.breakdown


def test_two_instances_whose_rivals_touched_every_agent_mostly_pick_different_agents() -> None:
    """What made two routers at their ceiling refuse about one assignment in two: every agent was
    crowded, and both then gave their tasks to the same least loaded one. Over many pairs of
    instance names, their first picks among 8 equal agents now coincide about one time in 8."""
    log = equal_fleet([0] * 8)
    everyone = frozenset(f"a{i}" for i in range(8))
    log.add(TaskSubmitted(task_id="new", task_type="review"))
    task = log.state.fleet.tasks["new"]
    pairs, same = 200, 0
    for pair in range(pairs):
        mine = route_task(log.state, task, 0.0, RoutingConfig(crowded=everyone, instance=f"r{pair}-0"))
        theirs = route_task(log.state, task, 0.0, RoutingConfig(crowded=everyone, instance=f"r{pair}-1"))
        assert isinstance(mine, Assign) and isinstance(theirs, Assign)
        same += mine.agent_id == theirs.agent_id
    assert same / pairs < 0.25, f"{same} of {pairs} pairs picked the same agent"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, CAPACITY - 1), min_size=2, max_size=7),
    st.sets(st.integers(0, 6)),
    st.sampled_from(["router-0", "router-1", "router-host-41"]),
)
def test_an_instance_named_decides_as_one_unnamed_unless_every_near_contender_is_crowded(
    loads: list[int], crowded_indexes: set[int], instance: str
) -> None:
    log = equal_fleet(loads)
    crowded = frozenset(f"a{i}" for i in crowded_indexes if i < len(loads))
    nameless = route_new(log, RoutingConfig(crowded=crowded))
    named = route_task(
        log.state, log.state.fleet.tasks["new"], 0.0, RoutingConfig(crowded=crowded, instance=instance)
    )
    assert isinstance(named, Assign)
    lowest = min(loads) / CAPACITY
    load = {f"a{i}": n / CAPACITY for i, n in enumerate(loads)}
    near = {agent for agent, share in load.items() if share <= lowest + CROWDED_SLACK + 1e-9}
    if nameless.agent_id in crowded and near <= crowded:
        assert named.agent_id == first_in_own_order(instance, near), "never a clearly busier agent"
    else:
        assert named == nameless
