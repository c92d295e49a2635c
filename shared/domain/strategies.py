"""Which recovery strategy answers which failure: a pure table of (failure type, severity).

A strategy is a short list of actions recovery carries out, in order:

* ``reassign``: the attempts in question are superseded at once (attempt + 1, no backoff, not
  charged to the task's retry budget) and run elsewhere; the holder is told to stop.
* ``retry``: the attempts fail with the reported type; the task's retry policy then retries them
  with exponential backoff (charged to its budget unless the failure is an infrastructure one) or
  fails the task for good.
* ``quarantine``: the agent takes no new work for ``QUARANTINE_S``.
* ``restart``: the agent is asked to restart (``agent.restart_requested``; the SDK re-registers).
* ``alert``: the incident is marked escalated for a human (event, error log line, metric).

The gateway shows the plan when a failure is reported; recovery executes it. Same function, so the
two never disagree.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from shared.events import FailureType, Severity

Strategy = Literal["reassign", "retry_with_backoff", "quarantine_agent", "request_restart", "escalate"]
Action = Literal["quarantine", "restart", "reassign", "retry", "alert"]

SEVERITIES: Final[tuple[Severity, ...]] = ("low", "medium", "high", "critical")

STRATEGIES: Final[dict[str, tuple[Strategy, Strategy, Strategy, Strategy]]] = {
    # failure type:        low,                  medium,               high,               critical
    "agent_unresponsive": ("reassign", "reassign", "request_restart", "escalate"),
    "task_timeout": ("retry_with_backoff", "retry_with_backoff", "retry_with_backoff", "escalate"),
    "agent_error": ("retry_with_backoff", "retry_with_backoff", "quarantine_agent", "escalate"),
    "resource_exhaustion": ("reassign", "reassign", "quarantine_agent", "request_restart"),
    "network_partition": ("reassign", "reassign", "quarantine_agent", "escalate"),
    "rebalanced": ("reassign", "reassign", "reassign", "reassign"),
    "agent_restarted": ("reassign", "reassign", "reassign", "reassign"),
    "deadline_exceeded": ("reassign", "reassign", "escalate", "escalate"),
}
"""Failure type -> strategy per severity (low, medium, high, critical)."""

ACTIONS: Final[dict[Strategy, tuple[Action, ...]]] = {
    "reassign": ("reassign",),
    "retry_with_backoff": ("retry",),
    "quarantine_agent": ("quarantine", "reassign"),
    "request_restart": ("restart", "reassign"),
    "escalate": ("quarantine", "reassign", "alert"),
}

FLAPPING_EPISODES = 3
FLAPPING_WINDOW_S = 600.0


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    failure_type: str
    severity: str
    strategy: Strategy
    actions: list[Action]

    @property
    def escalated(self) -> bool:
        return "alert" in self.actions


def choose_strategy(failure_type: FailureType, severity: Severity) -> Plan:
    strategy = STRATEGIES[failure_type][SEVERITIES.index(severity)]
    return Plan(
        failure_type=failure_type, severity=severity, strategy=strategy, actions=list(ACTIONS[strategy])
    )


def unresponsive_severity(episodes_ts: list[float], now: float) -> Severity:
    """An agent that keeps going silent is worse than one that did once: high when it flaps."""
    recent = [ts for ts in episodes_ts if now - ts <= FLAPPING_WINDOW_S]
    return "high" if len(recent) >= FLAPPING_EPISODES else "medium"
