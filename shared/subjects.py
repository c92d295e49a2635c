"""The one place that builds NATS subjects and stream names.

Subjects read left to right from general to specific:

* ``hive.evt.<aggregate>.<id>.<event_type>`` for events;
* ``hive.evt.task.<task_id>.<report>.<agent_id>`` for an agent's reports on a task (``started``,
  ``progress``, ``completed``, ``attempt_failed``, event version 2): the sixth token names the agent
  the report speaks for, and an agent's NATS user may publish reports only on subjects ending in
  its own id, so who reports is what the server let through, not what the body claims. Reports
  stored before version 2 sit on the five-token form and stay readable;
* ``hive.evt.agent.<agent_id>.<notice>.<task_id>`` for what Hive tells an agent about a task
  (``task_assigned``, ``task_cancel_requested``, event version 2): the sixth token names the task,
  so every event about one task is a read of ``task_history`` through the server's subject index,
  whatever the log's length. Notices stored before version 2 sit on the five-token form and stay
  readable (found through their agent);
* ``hive.hb.<agent_id>`` for heartbeats, ``hive.dlq.<service>`` for messages a service could not
  decode.

Filters over one aggregate end in ``>`` (they cover the sixth tokens), filters over one report or
notice type list both forms (``type_filters``).
"""

from __future__ import annotations

from typing import Final, Literal

from shared.ids import check_id

Aggregate = Literal["agent", "task", "workflow", "breaker", "system"]
AGGREGATES: Final[tuple[str, ...]] = ("agent", "task", "workflow", "breaker", "system")

EVENTS_STREAM: Final = "HIVE_EVENTS"
DLQ_STREAM: Final = "HIVE_DLQ"

EVENTS_PREFIX: Final = "hive.evt"
ALL_EVENTS: Final = "hive.evt.>"
HEARTBEAT_PREFIX: Final = "hive.hb"
ALL_HEARTBEATS: Final = "hive.hb.*"
DLQ_PREFIX: Final = "hive.dlq"
ALL_DLQ: Final = "hive.dlq.>"
HEALTH_PING: Final = "hive.svc.health"
"""Core NATS scatter-gather: every service instance answers with its health."""

REPORT_TYPES: Final[frozenset[str]] = frozenset({"started", "progress", "completed", "attempt_failed"})
"""Task event types an agent reports: their subjects carry the reporting agent's id."""
NOTICE_TYPES: Final[frozenset[str]] = frozenset({"task_assigned", "task_cancel_requested"})
"""Agent event types about one task (its assignment, a request to stop it): their subjects carry the
task's id, so every event about a task is read from the server's subject index."""


def event_subject(aggregate: str, aggregate_id: str, event_type: str) -> str:
    """Subject an event is appended on (a report: see ``report_subject``)."""
    return f"{EVENTS_PREFIX}.{aggregate}.{aggregate_id}.{event_type}"


def report_subject(task_id: str, event_type: str, agent_id: str) -> str:
    """Subject of a report on a task by (or, from recovery, about) the agent holding it."""
    return f"{EVENTS_PREFIX}.task.{task_id}.{event_type}.{agent_id}"


def notice_subject(agent_id: str, event_type: str, task_id: str) -> str:
    """Subject of an assignment or a cancel request: the agent's, then the task it is about."""
    return f"{EVENTS_PREFIX}.agent.{agent_id}.{event_type}.{task_id}"


def is_report(aggregate: str, event_type: str) -> bool:
    return aggregate == "task" and event_type in REPORT_TYPES


def is_notice(aggregate: str, event_type: str) -> bool:
    return aggregate == "agent" and event_type in NOTICE_TYPES


def has_sixth_token(aggregate: str, event_type: str) -> bool:
    """Reports name their agent, notices their task, after the event type."""
    return is_report(aggregate, event_type) or is_notice(aggregate, event_type)


def aggregate_subjects(aggregate: str, aggregate_id: str) -> str:
    """Filter matching every event of one aggregate instance, reports included (used for
    optimistic concurrency: a report moves the task's version)."""
    return f"{EVENTS_PREFIX}.{aggregate}.{aggregate_id}.>"


def task_decisions(task_id: str) -> str:
    """Filter matching a task's five-token subjects: what services append to it (and reports stored
    before reports named their agent)."""
    return f"{EVENTS_PREFIX}.task.{task_id}.*"


def reports_by(task_id: str, agent_id: str) -> str:
    """Filter matching the reports on a task that name one agent."""
    return f"{EVENTS_PREFIX}.task.{task_id}.*.{agent_id}"


def reports_of_type(task_id: str, event_type: str) -> str:
    """Filter matching one type of report on a task, whichever agent it names."""
    return f"{EVENTS_PREFIX}.task.{task_id}.{event_type}.*"


def task_history(task_id: str) -> list[str]:
    """Filters matching every event about one task as appended now: its own (reports included),
    its assignments and the requests to stop it (stored under their agent)."""
    return [
        aggregate_subjects("task", task_id),
        *(f"{EVENTS_PREFIX}.agent.*.{notice}.{task_id}" for notice in sorted(NOTICE_TYPES)),
    ]


def entity_subjects(entity_id: str) -> str:
    """Filter matching every event about one id, whatever its aggregate (an agent and its breaker)."""
    return f"{EVENTS_PREFIX}.*.{entity_id}.>"


def events_of_type(aggregate: str, event_type: str) -> str:
    """Filter matching one event type across all instances of an aggregate, as appended now
    (a report type: on every agent's subject; a notice: on every task's)."""
    subject = f"{EVENTS_PREFIX}.{aggregate}.*.{event_type}"
    return f"{subject}.*" if has_sixth_token(aggregate, event_type) else subject


def type_filters(aggregate: str, event_type: str) -> list[str]:
    """Filters matching one event type as appended now and, for a report or notice type, as stored
    before their subjects gained a sixth token (old logs): for consumers that must see both."""
    current = events_of_type(aggregate, event_type)
    if has_sixth_token(aggregate, event_type):
        return [current, f"{EVENTS_PREFIX}.{aggregate}.*.{event_type}"]
    return [current]


def heartbeat_subject(agent_id: str) -> str:
    return f"{HEARTBEAT_PREFIX}.{check_id(agent_id, 'agent_id')}"


def dlq_subject(service: str) -> str:
    return f"{DLQ_PREFIX}.{service}"


def parse_event_subject(subject: str) -> tuple[str, str, str] | None:
    """``(aggregate, id, type)`` of ``hive.evt.<aggregate>.<id>.<type>``, of a report's
    ``hive.evt.task.<id>.<type>.<agent_id>`` or of a notice's ``hive.evt.agent.<id>.<type>.<task_id>``;
    None if it is none of them."""
    parts = subject.split(".")
    if len(parts) < 5 or parts[0] != "hive" or parts[1] != "evt":
        return None
    if len(parts) == 6 and has_sixth_token(parts[2], parts[4]):
        return parts[2], parts[3], parts[4]
    if len(parts) != 5:
        return None
    return parts[2], parts[3], parts[4]
