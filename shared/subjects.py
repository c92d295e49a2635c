"""The one place that builds NATS subjects and stream names.

Subjects read left to right from general to specific:

* ``hive.evt.<aggregate>.<id>.<event_type>`` for events;
* ``hive.evt.task.<task_id>.<report>.<agent_id>`` for an agent's reports on a task (``started``,
  ``progress``, ``completed``, ``attempt_failed``, event version 2): the sixth token names the agent
  the report speaks for, and an agent's NATS user may publish reports only on subjects ending in
  its own id, so who reports is what the server let through, not what the body claims. Reports
  stored before version 2 sit on the five-token form and stay readable;
* ``hive.evt.agent.<agent_id>.<notice>`` for what Hive tells an agent about a task
  (``task_assigned``, ``task_cancel_requested``, event version 3), the task only in the body. An
  assignment is appended guarded by the last sequence of everything about its agent
  (``entity_subjects``), which nats-server answers by walking every subject the filter matches:
  one subject per notice type keeps that walk as short for an agent's 20,000th task as for its
  first. Version 2 notices
  (``hive.evt.agent.<agent_id>.<notice>.<task_id>``, a sixth token per task) and version 1 ones
  (five tokens) stay readable where they were stored; a task's story is ``shared/story.py``;
* ``hive.hb.<agent_id>`` for heartbeats, ``hive.dlq.<service>`` for messages a service could not
  decode.

Filters over one aggregate end in ``>`` (they cover the sixth tokens), filters over one report or
notice type list every form (``type_filters``).
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
"""Agent event types about one task (its assignment, a request to stop it): the task is in their
body (and, for version 2 only, in a sixth token of their subject)."""


def event_subject(aggregate: str, aggregate_id: str, event_type: str) -> str:
    """Subject an event is appended on (a report: see ``report_subject``)."""
    return f"{EVENTS_PREFIX}.{aggregate}.{aggregate_id}.{event_type}"


def report_subject(task_id: str, event_type: str, agent_id: str) -> str:
    """Subject of a report on a task by (or, from recovery, about) the agent holding it."""
    return f"{EVENTS_PREFIX}.task.{task_id}.{event_type}.{agent_id}"


def notice_subject(agent_id: str, event_type: str) -> str:
    """Subject of an assignment or a cancel request (version 3 and 1): the agent's, one per type."""
    return f"{EVENTS_PREFIX}.agent.{agent_id}.{event_type}"


def notice_subject_v2(agent_id: str, event_type: str, task_id: str) -> str:
    """Where version 2 of a notice was stored: the agent's, then the task it is about."""
    return f"{EVENTS_PREFIX}.agent.{agent_id}.{event_type}.{task_id}"


def is_report(aggregate: str, event_type: str) -> bool:
    return aggregate == "task" and event_type in REPORT_TYPES


def is_notice(aggregate: str, event_type: str) -> bool:
    return aggregate == "agent" and event_type in NOTICE_TYPES


def has_sixth_token(aggregate: str, event_type: str) -> bool:
    """Reports name their agent after the event type (notices named their task only in version 2)."""
    return is_report(aggregate, event_type)


def may_have_sixth_token(aggregate: str, event_type: str) -> bool:
    """Whether a stored event of this type may sit on a six-token subject: a report, or a notice
    stored as version 2."""
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


def notices_v2_of(task_id: str) -> list[str]:
    """Filters matching the version 2 notices about one task (six tokens, under any agent)."""
    return [notice_subject_v2("*", notice, task_id) for notice in sorted(NOTICE_TYPES)]


def entity_subjects(entity_id: str) -> str:
    """Filter matching every event about one id, whatever its aggregate (an agent and its breaker)."""
    return f"{EVENTS_PREFIX}.*.{entity_id}.>"


def events_of_type(aggregate: str, event_type: str) -> str:
    """Filter matching one event type across all instances of an aggregate, as appended now
    (a report type: on every agent's subject)."""
    subject = f"{EVENTS_PREFIX}.{aggregate}.*.{event_type}"
    return f"{subject}.*" if has_sixth_token(aggregate, event_type) else subject


def type_filters(aggregate: str, event_type: str) -> list[str]:
    """Filters matching one event type in every form it was stored in: as appended now and, for a
    report, before its subject gained a sixth token; for a notice, also as version 2 stored it
    (six tokens). For consumers that must see all of them (old logs)."""
    current = events_of_type(aggregate, event_type)
    if has_sixth_token(aggregate, event_type):
        return [current, f"{EVENTS_PREFIX}.{aggregate}.*.{event_type}"]
    if is_notice(aggregate, event_type):
        return [current, f"{current}.*"]
    return [current]


def aggregate_filter(aggregate: str) -> str:
    """Filter matching every event of every instance of an aggregate."""
    return f"{EVENTS_PREFIX}.{aggregate}.>"


def whole_aggregates(filters: tuple[str, ...] | list[str] | None) -> frozenset[str]:
    """The aggregates every event of which `filters` match (None: all of them)."""
    if filters is None or ALL_EVENTS in filters:
        return frozenset(AGGREGATES)
    return frozenset(a for a in AGGREGATES if aggregate_filter(a) in filters)


def reads(filters: tuple[str, ...] | list[str], subject: str) -> bool:
    """Whether any of `filters` matches `subject` (NATS wildcards: ``*`` a token, ``>`` the rest)."""
    tokens = subject.split(".")
    for subject_filter in filters:
        parts = subject_filter.split(".")
        for index, part in enumerate(parts):
            if part == ">":
                if len(tokens) > index:
                    return True
                break
            if index >= len(tokens) or (part != "*" and part != tokens[index]):
                break
        else:
            if len(parts) == len(tokens):
                return True
    return False


def heartbeat_subject(agent_id: str) -> str:
    return f"{HEARTBEAT_PREFIX}.{check_id(agent_id, 'agent_id')}"


def dlq_subject(service: str) -> str:
    return f"{DLQ_PREFIX}.{service}"


def parse_event_subject(subject: str) -> tuple[str, str, str] | None:
    """``(aggregate, id, type)`` of ``hive.evt.<aggregate>.<id>.<type>``, of a report's
    ``hive.evt.task.<id>.<type>.<agent_id>`` or of a version 2 notice's
    ``hive.evt.agent.<id>.<type>.<task_id>``; None if it is none of them."""
    parts = subject.split(".")
    if len(parts) < 5 or parts[0] != "hive" or parts[1] != "evt":
        return None
    if len(parts) == 6 and may_have_sixth_token(parts[2], parts[4]):
        return parts[2], parts[3], parts[4]
    if len(parts) != 5:
        return None
    return parts[2], parts[3], parts[4]
