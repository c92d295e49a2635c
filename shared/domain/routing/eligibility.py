"""Who may take a task at all, and which queued tasks wait for a good enough agent. Pure.

The router filters candidates with ``ineligibility`` before scoring them; the balancer asks the
same question before it moves work to another agent, so both agree on who could have had a task.
"""

from __future__ import annotations

import math
from typing import Final

from shared.domain.breakers import admits
from shared.domain.fleet import AgentView, TaskView
from shared.domain.routing.affinity import bound_agent
from shared.domain.routing.labels import unmet_requirements
from shared.domain.routing.view import RouterState

BELOW_THRESHOLD: Final = "below_quality_threshold"
"""The queued reason of a task no eligible agent is predicted to do well enough."""


def ineligibility(state: RouterState, agent: AgentView, task: TaskView) -> str | None:
    """Why `agent` cannot take `task` at all (capacity and quality aside), or None if it could."""
    return Eligibility(state, task).why_not(agent)


class Eligibility:
    """``ineligibility`` of many agents for one task: what only the task decides (its needs, the
    agent its hard affinity binds it to) is worked out once. Read-only; made per decision."""

    __slots__ = (
        "_bound",
        "_breakers",
        "_constraints",
        "_excluded",
        "_labelled",
        "_needed",
        "_needed_set",
        "_task",
    )

    def __init__(self, state: RouterState, task: TaskView) -> None:
        spec = task.spec
        self._task = task
        self._breakers = state.breakers
        self._excluded = task.excluded_agent_ids
        self._needed = [spec.task_type, *spec.required_capabilities]
        self._needed_set = frozenset(self._needed)
        self._constraints = sorted(spec.resource_constraints.items())
        self._labelled = bool(spec.labels or spec.label_rules)
        self._bound = bound_agent(state, task)

    def why_not(self, agent: AgentView) -> str | None:
        """Why `agent` cannot take the task at all (capacity and quality aside), or None."""
        if agent.status != "active":
            return f"agent is {agent.status}"
        if agent.agent_id in self._breakers.breakers:  # (most agents have never had a breaker)
            blocked = admits(self._breakers, agent.agent_id)
            if blocked is not None:
                return blocked
        if agent.agent_id in self._excluded:
            return "excluded for this attempt"
        capabilities = agent.capabilities
        if not self._needed_set <= capabilities.keys():
            missing = [cap for cap in self._needed if cap not in capabilities]
            return f"missing capabilities: {', '.join(sorted(set(missing)))}"
        if self._constraints:
            unmet = [f"{key}={value}" for key, value in self._constraints if agent.metadata.get(key) != value]
            if unmet:
                return f"resource constraints not met: {', '.join(unmet)}"
        if self._labelled:
            labels = unmet_requirements(self._task, agent)
            if labels:
                return f"labels not met: {', '.join(labels)}"
        bound = self._bound
        if bound is not None and agent.agent_id != bound:
            return f"affinity key {self._task.spec.affinity_key!r} is bound to {bound} (hard)"
        return None


def held_below_threshold(task: TaskView) -> bool:
    """Queued because no agent was predicted good enough (it waits for one, or its deadline)."""
    return task.status == "queued" and task.queued_reason == BELOW_THRESHOLD


def quality_wait_end(task: TaskView, default_wait_s: float) -> float | None:
    """When a task held below its quality threshold, without a deadline, stops waiting for an agent
    predicted to reach it and goes to the best available one: its own ``quality_wait_s`` (else
    `default_wait_s`, QUALITY_WAIT_S) after its submission (a delayed task: after its
    ``not_before_ts``). None: not held, has a deadline (it fails there instead), or waits
    indefinitely."""
    if not held_below_threshold(task) or task.spec.deadline_ts is not None:
        return None
    wait = task.spec.quality_wait_s if task.spec.quality_wait_s is not None else default_wait_s
    end = max(task.submitted_ts, task.spec.not_before_ts or 0.0) + wait
    return end if math.isfinite(end) else None
