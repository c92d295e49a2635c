"""Who may publish and subscribe to what on NATS: one user per service, per agent, and an admin.

Pure: the roles, their subject permissions and the nats-server ``users`` block they render to.
The credential store (``shared/credentials.py``) supplies the passwords and the embedded server
(``shared/embedded.py``) includes the rendered block in its ``HIVE`` account.

Least privilege, as far as subjects can say it:

* an **agent** may publish its own heartbeats, its own ``registered``/``draining``/``deregistered``
  and reports on tasks (``started``, ``progress``, ``completed``, ``attempt_failed``) only on
  subjects ending in its own id (``hive.evt.task.*.<type>.<id>``: every reader refuses a body naming
  another agent, and projections take a report only from the attempt's holder); it pulls its
  assignments from its durable ``agent-<id>`` and acks only its own deliveries, and reads the last
  event of a task's subjects by a direct get whose subject names them. It creates and deletes no
  consumer: a consumer's configuration (e.g. a push consumer's ``deliver_subject``) is in the
  request body, which permissions cannot see, so its durable is created for it, by the router
  (``shared/agent/inbox.py``);
* a **service** may append only the event types it decides, dead-letter on its own subject, run
  its own durable work consumer and read the log;
* the **admin** (CLI: replay, health, operations) may do anything in the account.

What subjects cannot express: which consumers a service's read consumers are (their names are
random single tokens, so services may create, pull from and delete any consumer of the stream).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from shared.errors import HiveError
from shared.events import (
    AgentDeregistered,
    AgentDraining,
    AgentQuarantined,
    AgentRecovered,
    AgentRegistered,
    AgentRestartRequested,
    AgentStalled,
    AgentUnresponsive,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReset,
    ConcurrencyLimitRemoved,
    ConcurrencyLimitSet,
    Event,
    FailureReported,
    KeySlotClaimed,
    LoadRebalanced,
    PerformanceAlert,
    RateLimitRemoved,
    RateLimitSet,
    RateTokensTaken,
    RebalanceRequested,
    RecoveryActionTaken,
    ScaleRecommended,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    ScheduleSkipped,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskQueued,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowStepAdded,
    WorkflowStepCancelled,
    WorkflowStepDispatched,
    WorkflowStepSkipped,
    WorkflowSubmitted,
)
from shared.ids import check_id
from shared.subjects import (
    ALL_EVENTS,
    ALL_HEARTBEATS,
    DLQ_STREAM,
    EVENTS_STREAM,
    HEALTH_PING,
    dlq_subject,
    event_subject,
    heartbeat_subject,
    is_notice,
    is_report,
    notice_subject,
    report_subject,
)

ADMIN: Final = "admin"
SERVICES: Final[tuple[str, ...]] = ("router", "balancer", "recovery", "workflow", "gateway")
AGENT_PREFIX: Final = "agent-"

SERVICE_EVENTS: Final[dict[str, tuple[type[Event], ...]]] = {
    "router": (
        TaskAssigned,
        TaskQueued,
        TaskFailed,
        TaskCancelled,
        TaskCancelRequested,
        KeySlotClaimed,
        RateTokensTaken,
    ),
    "balancer": (TaskRequeued, TaskCancelRequested, ScaleRecommended, LoadRebalanced),
    "recovery": (
        AgentUnresponsive,
        AgentStalled,
        AgentRecovered,
        AgentQuarantined,
        AgentRestartRequested,
        TaskCancelRequested,
        TaskAttemptFailed,
        TaskRequeued,
        TaskFailed,
        BreakerOpened,
        BreakerHalfOpened,
        BreakerClosed,
        RecoveryActionTaken,
    ),
    "workflow": (
        TaskSubmitted,
        TaskCancelled,
        TaskCancelRequested,
        WorkflowStarted,
        WorkflowStepDispatched,
        WorkflowStepSkipped,
        WorkflowCompleted,
        WorkflowFailed,
        WorkflowSubmitted,
        ScheduleFired,
        ScheduleSkipped,
    ),
    "gateway": (
        AgentRegistered,
        TaskSubmitted,
        TaskCancelled,
        TaskCancelRequested,
        WorkflowSubmitted,
        WorkflowStepAdded,
        WorkflowStepCancelled,
        WorkflowCancelled,
        BreakerReset,
        FailureReported,
        RebalanceRequested,
        PerformanceAlert,
        ScheduleCreated,
        SchedulePaused,
        ScheduleResumed,
        ScheduleDeleted,
        ConcurrencyLimitSet,
        ConcurrencyLimitRemoved,
        RateLimitSet,
        RateLimitRemoved,
    ),
}
"""The event types each service appends: a test keeps this equal to what the code constructs."""

SERVICE_DURABLES: Final[frozenset[str]] = frozenset({"router", "balancer", "recovery", "workflow"})
"""Services with a durable work consumer (named after the service)."""

INBOX_PROVIDER: Final = "router"
"""The service that creates each agent's durable (agents may create no consumer)."""

HEARTBEAT_LISTENERS: Final[frozenset[str]] = frozenset({"recovery", "gateway"})
"""Services that listen to heartbeats and client-disconnect advisories."""

AGENT_OWN_EVENTS: Final[tuple[type[Event], ...]] = (AgentRegistered, AgentDraining, AgentDeregistered)
AGENT_REPORTS: Final[tuple[type[Event], ...]] = (TaskStarted, TaskProgress, TaskCompleted, TaskAttemptFailed)

DISCONNECT_ADVISORIES: Final = "$SYS.ACCOUNT.*.DISCONNECT"
JS_API: Final = "$JS.API"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Permissions:
    """Subjects a user may publish to and subscribe to; `responses`: may answer requests it gets."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responses: bool = False


class UnknownUser(HiveError, ValueError):
    """A user name that is none of Hive's roles."""


def agent_user(agent_id: str) -> str:
    """The NATS user of an agent: ``agent-<agent_id>``."""
    return AGENT_PREFIX + check_id(agent_id, "agent_id")


def agent_durable(agent_id: str) -> str:
    """The durable consumer an agent reads its assignments from (named as its user)."""
    return agent_user(agent_id)


def inbox_prefix(user: str) -> str:
    """Where a user's replies arrive, ``_INBOX.<user>``: nobody else may subscribe there.

    A user name that cannot be a subject token keeps NATS's default ``_INBOX``.
    """
    return f"_INBOX.{user}" if _TOKEN.match(user) else "_INBOX"


def _append_subject(event: type[Event], aggregate_id: str = "*", reporter: str = "*") -> str:
    """Where `event` is appended; a report's subject also names the agent it speaks for (a notice is
    appended on its agent's five-token subject only: version 3)."""
    if is_report(event.AGGREGATE, event.event_type()):
        return report_subject(aggregate_id, event.event_type(), reporter)
    if is_notice(event.AGGREGATE, event.event_type()):
        return notice_subject(aggregate_id, event.event_type())
    return event_subject(event.AGGREGATE, aggregate_id, event.event_type())


def _consumer_api(action: str, consumer: str, filter_subject: str = "") -> str:
    subject = f"{JS_API}.CONSUMER.{action}.{EVENTS_STREAM}.{consumer}"
    return f"{subject}.{filter_subject}" if filter_subject else subject


def _acks(consumer: str) -> str:
    return f"$JS.ACK.{EVENTS_STREAM}.{consumer}.>"


TASK_LAST_EVENTS: Final = f"{JS_API}.DIRECT.GET.{EVENTS_STREAM}.hive.evt.task.>"
"""Direct gets of the last event on task subjects, the filter in the API subject (a body is refused)."""


def agent_permissions(agent_id: str) -> Permissions:
    """Its own heartbeats, registration and reports; its own assignments; the last events of tasks.

    No consumer create or delete: its durable is made for it (``shared/agent/inbox.py``).
    """
    durable = agent_durable(agent_id)
    publish = (
        heartbeat_subject(agent_id),
        *(_append_subject(event, agent_id) for event in AGENT_OWN_EVENTS),
        *(_append_subject(event, reporter=agent_id) for event in AGENT_REPORTS),
        f"{JS_API}.STREAM.INFO.{EVENTS_STREAM}",
        _consumer_api("INFO", durable),
        _consumer_api("MSG.NEXT", durable),
        _acks(durable),
        TASK_LAST_EVENTS,
    )
    return Permissions(publish=publish, subscribe=(f"{inbox_prefix(agent_user(agent_id))}.>",))


def service_permissions(service: str) -> Permissions:
    """The events it decides, its dead letters, its streams and durable, reading the log, health."""
    if service not in SERVICE_EVENTS:
        raise UnknownUser(f"{service!r} is not a Hive service ({', '.join(SERVICES)})")
    publish = [_append_subject(event) for event in SERVICE_EVENTS[service]]
    publish.append(dlq_subject(service))
    for stream in (EVENTS_STREAM, DLQ_STREAM):
        publish += [f"{JS_API}.STREAM.{action}.{stream}" for action in ("INFO", "CREATE", "UPDATE")]
    publish += [
        f"{JS_API}.DIRECT.GET.{EVENTS_STREAM}",
        # Reads: ordered consumers with random names, filtered to events (projections, histories).
        _consumer_api("CREATE", "*", ALL_EVENTS),
        _consumer_api("CREATE", "*"),  # several filters: the API subject names none
        _consumer_api("MSG.NEXT", "*"),
        _consumer_api("DELETE", "*"),
    ]
    if service == INBOX_PROVIDER:
        publish.append(_consumer_api("INFO", "*"))  # agents' durables: made by the router
    if service in SERVICE_DURABLES:
        publish += [
            _consumer_api("CREATE", service),
            _consumer_api("CREATE", service, ">"),
            _consumer_api("INFO", service),
            _acks(service),
        ]
    # Health: every instance answers; any may ask (the gateway's endpoint, a container's
    # healthcheck running `hive health` as the service's own user).
    publish.append(HEALTH_PING)
    subscribe = [f"{inbox_prefix(service)}.>", HEALTH_PING]
    if service in HEARTBEAT_LISTENERS:
        subscribe += [ALL_HEARTBEATS, DISCONNECT_ADVISORIES]
    return Permissions(publish=tuple(publish), subscribe=tuple(subscribe), responses=True)


ADMIN_PERMISSIONS: Final = Permissions(publish=(">",), subscribe=(">",), responses=True)


def permissions_for(user: str) -> Permissions:
    """The permissions of a Hive user, from its name: a service, ``admin`` or ``agent-<id>``."""
    if user == ADMIN:
        return ADMIN_PERMISSIONS
    if user in SERVICE_EVENTS:
        return service_permissions(user)
    if user.startswith(AGENT_PREFIX):
        return agent_permissions(user[len(AGENT_PREFIX) :])
    raise UnknownUser(f"{user!r} is not a Hive user: use admin, a service name or agent-<agent id>")


def render_users(passwords: Mapping[str, str]) -> str:
    """The ``users`` entry of the HIVE account for nats-server, one user per line.

    nats-server's configuration format reads JSON, so every value is written as a JSON string:
    subjects starting with ``$`` stay literal instead of naming variables.
    """
    lines = ["# Written by Hive (hive up / hive auth): the users of the HIVE account.", "users: ["]
    for user in sorted(passwords):
        rights = permissions_for(user)
        entry: dict[str, object] = {
            "user": user,
            "password": passwords[user],
            "permissions": {
                "publish": {"allow": list(rights.publish)},
                "subscribe": {"allow": list(rights.subscribe)},
                **({"allow_responses": True} if rights.responses else {}),
            },
        }
        lines.append("  " + json.dumps(entry))
    lines.append("]")
    return "\n".join(lines) + "\n"


def parse_violation(message: str) -> tuple[str, str] | None:
    """``("publish", subject)`` or ``("subscription", subject)`` from a server permissions error.

    nats-py reports them as ``nats: permissions violation for publish to "<subject>"`` (lower case).
    """
    low = message.lower()
    marker = "permissions violation for "
    start = low.find(marker)
    if start < 0:
        return None
    kind, _, rest = low[start + len(marker) :].partition(" to ")
    subject = rest.strip().strip("'\"").split('"')[0]
    if kind not in ("publish", "subscription") or not subject:
        return None
    return kind, subject
