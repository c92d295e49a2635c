"""Affinity keys: tasks with the same ``affinity_key`` go to the agent that last ran the key. Pure.

``soft``: that agent ranks first among those with room (after a retry's preferred agent and the
task's preferred labels); when it is busy, another takes the task. ``hard``: only that agent is a
candidate while it is active (the task waits while it is busy); once it is not (unresponsive,
quarantined, draining, gone) the key fails over to whichever agent takes the task next. A key no
agent has run yet binds to none.
"""

from __future__ import annotations

from typing import Final

from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.labels import preference_score
from shared.domain.routing.view import RouterState

AFFINITY_BUSY: Final = "affinity_agent_busy"


def last_agent(state: RouterState, task: TaskView) -> str | None:
    key = task.spec.affinity_key
    return state.keys.affinity.get(key) if key is not None else None


def bound_agent(state: RouterState, task: TaskView) -> str | None:
    """The agent a ``hard`` affinity task must go to, or None (no key, soft, none yet, or failed over)."""
    if task.spec.affinity != "hard":
        return None
    agent_id = last_agent(state, task)
    agent = state.fleet.agents.get(agent_id) if agent_id is not None else None
    return agent_id if agent is not None and agent.status == "active" else None


def placement_preference(state: RouterState, task: TaskView, agent: AgentView) -> tuple[float, bool]:
    """Sort prefix, best first: preferred labels met (weights summed), then the key's last agent."""
    weight, _met = preference_score(task, agent)
    return (-weight, agent.agent_id != last_agent(state, task) if task.spec.affinity_key else True)


def preference_note(state: RouterState, task: TaskView, agent: AgentView) -> str:
    """What labels and affinity said for the chosen agent, for the routing explanation."""
    notes: list[str] = []
    _weight, met = preference_score(task, agent)
    if met:
        notes.append("preferred labels met: " + ", ".join(met))
    if task.spec.labels or any(r.mode == "require" for r in task.spec.label_rules):
        notes.append("required labels met")
    key = task.spec.affinity_key
    if key is not None:
        last = last_agent(state, task)
        if last is None:
            notes.append(
                f"affinity key {key!r} ({task.spec.affinity}) ran nowhere yet: "
                f"it now binds to {agent.agent_id}"
            )
        elif last == agent.agent_id:
            notes.append(f"affinity key {key!r} ({task.spec.affinity}): {agent.agent_id} ran it last")
        else:
            notes.append(
                f"affinity key {key!r} ({task.spec.affinity}) last ran on {last}, not available: "
                f"moves to {agent.agent_id}"
            )
    return "; ".join(notes)
