"""Who may take a task at all, and which queued tasks wait for a good enough agent. Pure.

The router filters candidates with ``ineligibility`` before scoring them; the balancer asks the
same question before it moves work to another agent, so both agree on who could have had a task.
"""

from __future__ import annotations

from typing import Final

from shared.domain.breakers import admits
from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.view import RouterState

BELOW_THRESHOLD: Final = "below_quality_threshold"
"""The queued reason of a task no eligible agent is predicted to do well enough."""


def ineligibility(state: RouterState, agent: AgentView, task: TaskView) -> str | None:
    """Why `agent` cannot take `task` at all (capacity and quality aside), or None if it could."""
    if agent.status != "active":
        return f"agent is {agent.status}"
    blocked = admits(state.breakers, agent.agent_id)
    if blocked is not None:
        return blocked
    if agent.agent_id in task.excluded_agent_ids:
        return "excluded for this attempt"
    needed = [task.spec.task_type, *task.spec.required_capabilities]
    missing = [cap for cap in needed if cap not in agent.capabilities]
    if missing:
        return f"missing capabilities: {', '.join(sorted(set(missing)))}"
    return None


def held_below_threshold(task: TaskView) -> bool:
    """Queued because no agent was predicted good enough (it waits for one, or its deadline)."""
    return task.status == "queued" and task.queued_reason == BELOW_THRESHOLD
