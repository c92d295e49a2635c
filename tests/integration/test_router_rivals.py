"""Router instances deciding at once, against a real nats-server: each notices the agents the others
give work to and keeps its ties off them for a while, and a refused assignment costs one decision
again, not a round trip to the server (and a refusal) for every later decision about its agent."""

from __future__ import annotations

from typing import cast

from services.router.decide import Assign, Hold
from services.router.rerun import explain_task
from services.router.service import CROWDED_S, Claim, RouterService
from shared.agent.sdk import Agent
from shared.bus import ConcurrencyConflict, EventBus
from shared.events import AgentRegistered, TaskAssigned, TaskQueued, TaskSubmitted
from shared.recorded import Recorded
from shared.settings import Settings
from shared.work import Ticket
from tests.conftest import EventLog, running
from tests.integration.test_router import max_in_flight_per_agent, quick, run_burst


async def test_another_instances_assignment_crowds_its_agent_for_a_while_and_an_own_one_does_not(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    async with running(RouterService, settings, instance="r1") as router:
        await bus.append(
            AgentRegistered(agent_id="busy", capabilities={"review": 0.8}, capacity=4), expected=0
        )
        stored = await bus.append(TaskAssigned(agent_id="busy", task_id="theirs", attempt=1), expected=None)
        await router.view.wait_for(stored.seq)
        assert router._deciding_config().crowded == frozenset({"busy"})
        assert router._deciding_config().instance == "r1", "its own order, when every tie is crowded"
        assert router._deciding_config() is not router.config
        router._rival_work["busy"] -= CROWDED_S  # as if CROWDED_S had passed
        assert router._deciding_config() is router.config, "an old assignment crowds nothing"
        assert router._rival_work == {}
        await bus.append(TaskSubmitted(task_id="mine", task_type="review"), expected=0)
        await event_log.wait_for(
            lambda evs: any(isinstance(e, TaskAssigned) and e.task_id == "mine" for e in evs)
        )
        await router.view.catch_up()
        assert router.assignments == 1
        assert router._rival_work == {}, "its own assignment crowds nothing"


async def test_a_refused_assignment_does_not_send_later_decisions_for_its_agent_to_the_server(
    settings: Settings, bus: EventBus
) -> None:
    """The view reads everything about an agent: once caught up, its version is the server's. (It
    asked the server at every later decision for the agent, and refused each one whose agent had
    been given work after the decision's view, as long as another instance kept giving it work.)
    A refused hold still asks: the view does not read a task's start or progress."""
    async with running(RouterService, settings, instance="r1") as router:
        assign = Assign(
            task_id="t",
            attempt=1,
            agent_id="x",
            session="",
            strategy="adaptive",
            score=0.5,
            breakdown={},
            rejected=[],
            explanation="",
        )
        router._refused(assign, ConcurrencyConflict("hive.evt.*.x.>", 3, "refused"))
        assert "agent.x" not in router._unsure
        assert router._version("agent", "x") is not None
        hold = Hold(task_id="t", attempt=1, reason="all_capable_agents_busy", detail="")
        router._refused(hold, ConcurrencyConflict("hive.evt.task.t.>", 3, "refused"))
        assert "task.t" in router._unsure
        assert router._version("task", "t") is None
        assert router.conflicts == 2


async def test_two_routers_share_a_burst_with_few_refusals_and_never_overfill_an_agent(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    agents = [Agent(f"peer{i}", quick, capabilities=["review"], capacity=3) for i in range(6)]
    async with (
        running(RouterService, settings, instance="r1") as r1,
        running(RouterService, settings, instance="r2") as r2,
    ):
        await run_burst(bus, event_log, agents, 300)
        routers = (r1, r2)
    assigned = event_log.of_type(TaskAssigned)
    assert len(assigned) == 300 and len({a.task_id for a in assigned}) == 300, "nothing lost or doubled"
    assert all(peak <= 3 for peak in max_in_flight_per_agent(event_log.events).values())
    assert sum(r.assignments for r in routers) == 300
    assert not any(key.startswith("agent.") for r in routers for key in r._unsure)
    assert {a.decided_by for a in assigned} == {"r1", "r2"}


async def test_decisions_steered_by_a_racing_router_are_reproduced_from_what_they_record(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    """Which agents a rival had just given work to is in no other event: an assignment records those
    it passed over, or that it took its instance's own order, and replay re-runs it from that."""
    agents = [Agent(f"peer{i}", quick, capabilities=["review"], capacity=3) for i in range(6)]
    async with (
        running(RouterService, settings, instance="r1"),
        running(RouterService, settings, instance="r2"),
    ):
        await run_burst(bus, event_log, agents, 300)
    assigned = event_log.of_type(TaskAssigned)
    own_order = [a for a in assigned if "tie_in_own_order" in a.breakdown]
    passed_over = [
        a
        for a in assigned
        if "tie_avoided_rival_agent" in a.breakdown and "tie_in_own_order" not in a.breakdown
    ]
    others = [a for a in assigned if "tie_avoided_rival_agent" not in a.breakdown]
    assert own_order or passed_over, "racing routers steer each other's ties"
    for assignment in own_order[:10] + passed_over[:10] + others[:5]:
        explanations = await explain_task(bus, assignment.task_id)
        assert explanations and all(e.reproduced and not e.note for e in explanations), explanations


async def test_a_submission_another_instance_claimed_wakes_no_round_here_and_an_own_one_is_decided(
    settings: Settings, bus: EventBus, event_log: EventLog
) -> None:
    """The instance a submission is delivered to decides it: seeing it applied gives the others
    nothing to decide (with two routers, half the submissions woke each one for a round that
    decided nothing). Its own claim wakes it, whether it comes before or after the view applies it."""
    async with running(RouterService, settings, instance="r1") as router:
        theirs = TaskSubmitted(task_id="theirs", task_type="review")
        router._wanted.clear()
        router._on_applied(Recorded(1, theirs.subject, theirs))
        assert not router._wanted.is_set(), "claimed elsewhere: no round"
        router._claims["theirs"] = Claim(cast(Ticket, None), 1, 1, theirs.id)
        router._on_applied(Recorded(1, theirs.subject, theirs))
        assert router._wanted.is_set(), "claimed here: the view now shows it, decide it"
        del router._claims["theirs"]
        await bus.append(TaskSubmitted(task_id="mine", task_type="review"), expected=0)
        await event_log.wait_for(
            lambda evs: any(isinstance(e, TaskQueued) and e.task_id == "mine" for e in evs)
        )
