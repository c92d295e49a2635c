"""The one place that builds NATS subjects and stream names.

Subjects read left to right from general to specific:
``hive.evt.<aggregate>.<id>.<event_type>`` for events, ``hive.hb.<agent_id>`` for heartbeats,
``hive.dlq.<service>`` for messages a service could not decode.
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


def event_subject(aggregate: str, aggregate_id: str, event_type: str) -> str:
    """Subject an event is appended on."""
    return f"{EVENTS_PREFIX}.{aggregate}.{aggregate_id}.{event_type}"


def aggregate_subjects(aggregate: str, aggregate_id: str) -> str:
    """Filter matching every event of one aggregate instance (used for optimistic concurrency)."""
    return f"{EVENTS_PREFIX}.{aggregate}.{aggregate_id}.*"


def entity_subjects(entity_id: str) -> str:
    """Filter matching every event about one id, whatever its aggregate (an agent and its breaker)."""
    return f"{EVENTS_PREFIX}.*.{entity_id}.*"


def events_of_type(aggregate: str, event_type: str) -> str:
    """Filter matching one event type across all instances of an aggregate."""
    return f"{EVENTS_PREFIX}.{aggregate}.*.{event_type}"


def heartbeat_subject(agent_id: str) -> str:
    return f"{HEARTBEAT_PREFIX}.{check_id(agent_id, 'agent_id')}"


def dlq_subject(service: str) -> str:
    return f"{DLQ_PREFIX}.{service}"


def parse_event_subject(subject: str) -> tuple[str, str, str] | None:
    """Split ``hive.evt.<aggregate>.<id>.<type>`` into its three parts, or None if it is not one."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != "hive" or parts[1] != "evt":
        return None
    return parts[2], parts[3], parts[4]
