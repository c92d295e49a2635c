"""An assignment as the agent reads it: only the fields it uses. Pure.

An ``agent.task_assigned`` is about 2.3 KB of JSON, most of it the router's explanation (score,
breakdown, rejected candidates, explanation) that no agent reads. Decoding it whole into
``TaskAssigned`` built every one of those objects and checked each against the catalogue's types:
the largest share of what the agents' process spent on reading an assignment. ``Assignment``
decodes the fields an agent acts on and the handler sees (``TaskContext``) and skips the rest.

It takes only what the full decoder would take the same way: the current version, stored on its
own subject, with a payload nested no deeper than ``MAX_NESTING``. Anything else (another event
type, an older version to upcast, a body that does not match its subject or fails the types) is
left to ``decode_recorded``, which decodes and checks it whole, as before.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from shared.events import Id, TaskAssigned, current_version, free_form_too_deep
from shared.subjects import notice_subject

ASSIGNED: Final = TaskAssigned.type_name()
ASSIGNED_TYPE: Final = TaskAssigned.event_type()
ASSIGNED_VERSION: Final = current_version(ASSIGNED)
_ASSIGNED_SUFFIX: Final = f".{ASSIGNED_TYPE}"
_AGENTS: Final = "hive.evt.agent."


class Assignment(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of ``TaskAssigned`` an agent uses (same names, types and defaults)."""

    type: str
    v: int = 1
    ts: float = 0.0
    agent_id: Id
    task_id: Id
    attempt: int
    task_seq: int = 0
    session: str = ""
    task_type: str = ""
    payload: dict[str, Any] = {}
    timeout_s: float = 300.0


_decoder: Final = msgspec.json.Decoder(Assignment)


def is_assignment_subject(subject: str) -> bool:
    """Whether `subject` is an assignment's as appended now (``hive.evt.agent.<agent_id>.task_assigned``;
    one stored as version 2, on a sixth token naming its task, is decoded whole)."""
    return subject.endswith(_ASSIGNED_SUFFIX) and subject.startswith(_AGENTS) and subject.count(".") == 4


def read_assignment(subject: str, data: bytes) -> Assignment | None:
    """The assignment stored as `data` on `subject`, or None to decode it whole instead
    (``decode_recorded``): not an assignment of the current version on its own subject, or not
    valid as one."""
    try:
        assignment = _decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    if assignment.type != ASSIGNED or assignment.v != ASSIGNED_VERSION:
        return None
    if notice_subject(assignment.agent_id, ASSIGNED_TYPE) != subject:
        return None
    if free_form_too_deep(assignment.payload, data):
        return None
    return assignment


__all__ = ["Assignment", "is_assignment_subject", "read_assignment"]
