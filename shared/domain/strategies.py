"""Which recovery strategy answers which failure: a pure table of (failure type, severity).

A strategy is a short list of actions recovery carries out, in order:

* ``reassign``: the attempts in question are superseded at once (attempt + 1, no backoff, not
  charged to the task's retry budget) and run elsewhere; the holder is told to stop.
* ``reassign_unstarted``: the same for the attempts the agent has not started; what it runs goes on.
* ``retry``: the attempts fail with the reported type; the task's retry policy then retries them
  with exponential backoff (charged to its budget unless the failure is an infrastructure one) or
  fails the task for good.
* ``quarantine``: the agent takes no new work for ``QUARANTINE_S``.
* ``restart``: the agent is asked to restart (``agent.restart_requested``; the SDK re-registers).
* ``open_breaker``: the agent's circuit breaker opens (no new work for ``BREAKER_OPEN_S``, then
  half-open probes decide, as for a breaker the failure rate tripped).
* ``half_open_breaker``: the agent's breaker goes half-open: it keeps its work and gets only
  ``BREAKER_HALF_OPEN_PROBES`` new tasks, whose outcomes close or open it.
* ``alert``: the incident is marked escalated for a human (event, error log line, metric).

The gateway shows the plan when a failure is reported; recovery executes it. Same function, so the
two never disagree. A report may name the strategy it wants instead of the table's.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from shared.events import FailureType, RecoveryStrategy, Severity

Strategy = RecoveryStrategy
Action = Literal[
    "quarantine",
    "restart",
    "reassign",
    "reassign_unstarted",
    "retry",
    "open_breaker",
    "half_open_breaker",
    "alert",
]

SEVERITIES: Final[tuple[Severity, ...]] = ("info", "low", "medium", "high", "critical")

STRATEGIES: Final[dict[str, tuple[Strategy, Strategy, Strategy, Strategy, Strategy]]] = {
    # failure type: info, low, medium, high, critical
    "agent_unresponsive": ("record_only", "reassign", "reassign", "request_restart", "escalate"),
    "task_timeout": (
        "record_only",
        "retry_with_backoff",
        "retry_with_backoff",
        "retry_with_backoff",
        "escalate",
    ),
    "agent_error": (
        "record_only",
        "retry_with_backoff",
        "retry_with_backoff",
        "quarantine_agent",
        "escalate",
    ),
    "resource_exhaustion": ("record_only", "reassign", "reassign", "quarantine_agent", "request_restart"),
    "network_partition": ("record_only", "reassign", "reassign", "quarantine_agent", "escalate"),
    "rebalanced": ("record_only", "reassign", "reassign", "reassign", "reassign"),
    "agent_restarted": ("record_only", "reassign", "reassign", "reassign", "reassign"),
    "deadline_exceeded": ("record_only", "reassign", "reassign", "escalate", "escalate"),
    "performance_degradation": (
        "record_only",
        "degraded_service",
        "degraded_service",
        "circuit_breaker",
        "failover_cluster",
    ),
    "dependency_failure": (
        "record_only",
        "retry_with_backoff",
        "retry_with_backoff",
        "retry_with_backoff",
        "escalate",
    ),
    "security_violation": (
        "record_only",
        "quarantine_agent",
        "quarantine_agent",
        "emergency_shutdown",
        "emergency_shutdown",
    ),
    "system_overload": ("record_only", "load_shedding", "load_shedding", "graceful_reassignment", "escalate"),
    # A restart request would travel through the very inbox that stalled: a flapping agent is
    # kept out by quarantine instead.
    "agent_stalled": ("record_only", "reassign", "reassign", "quarantine_agent", "escalate"),
}
"""Failure type -> strategy per severity (info, low, medium, high, critical)."""

ACTIONS: Final[dict[Strategy, tuple[Action, ...]]] = {
    "reassign": ("reassign",),
    "retry_with_backoff": ("retry",),
    "quarantine_agent": ("quarantine", "reassign"),
    "request_restart": ("restart", "reassign"),
    "escalate": ("quarantine", "reassign", "alert"),
    "record_only": (),
    "immediate_reassignment": ("reassign",),
    "graceful_reassignment": ("quarantine", "reassign_unstarted"),
    "circuit_breaker": ("open_breaker", "reassign_unstarted"),
    "degraded_service": ("half_open_breaker",),
    "emergency_shutdown": ("quarantine", "restart", "reassign", "alert"),
    "load_shedding": ("reassign_unstarted",),
    "failover_cluster": ("quarantine", "reassign"),
}
"""What each strategy does. ``immediate_reassignment`` is ``reassign`` by another name, and
``failover_cluster`` is ``quarantine_agent``'s (the rest of the fleet is the cluster work fails
over to)."""

BREAKER_ACTIONS: Final = frozenset({"open_breaker", "half_open_breaker"})

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


def choose_strategy(failure_type: FailureType, severity: Severity, asked: Strategy | None = None) -> Plan:
    """The strategy asked for, else the table's for (type, severity)."""
    strategy = asked or STRATEGIES[failure_type][SEVERITIES.index(severity)]
    return Plan(
        failure_type=failure_type, severity=severity, strategy=strategy, actions=list(ACTIONS[strategy])
    )


def unresponsive_severity(episodes_ts: list[float], now: float) -> Severity:
    """An agent that keeps going silent (or stalling) is worse than one that did once: high when
    it flaps (``FLAPPING_EPISODES`` episodes, this one included, within ``FLAPPING_WINDOW_S``)."""
    recent = [ts for ts in episodes_ts if now - ts <= FLAPPING_WINDOW_S]
    return "high" if len(recent) >= FLAPPING_EPISODES else "medium"


def describe_strategies() -> str:
    """The (failure type, severity) table as Markdown (the README carries this text verbatim)."""
    lines = [
        "| failure type | " + " | ".join(SEVERITIES) + " |",
        "| --- |" + " --- |" * len(SEVERITIES),
    ]
    for failure_type, row in STRATEGIES.items():
        lines.append(f"| `{failure_type}` | " + " | ".join(row) + " |")
    return "\n".join(lines)
