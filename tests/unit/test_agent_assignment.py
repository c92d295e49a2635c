"""The agent's partial decoding of an assignment: the fields it uses, as the full decoder reads
them, and only for what the full decoder would take the same way (anything else is left to it)."""

from __future__ import annotations

import msgspec
import pytest

from shared.agent.assignment import Assignment, is_assignment_subject, read_assignment
from shared.events import (
    RejectedCandidate,
    TaskAssigned,
    TaskCancelRequested,
    encode_event,
)
from shared.nesting import MAX_NESTING
from shared.recorded import Recorded, decode_recorded


def assigned(**changes: object) -> TaskAssigned:
    fields: dict[str, object] = {
        "agent_id": "a1",
        "task_id": "t1",
        "attempt": 2,
        "task_seq": 41,
        "session": "s9",
        "task_type": "code_review",
        "payload": {"repo": "x", "lines": [1, 2, {"deep": True}]},
        "timeout_s": 12.5,
        "strategy": "adaptive",
        "score": 0.7,
        "breakdown": {"capability": 0.9},
        "rejected": [RejectedCandidate(agent_id="a2", reason="busy")],
        "explanation": "best match",
    }
    fields.update(changes)
    return TaskAssigned(**fields)  # type: ignore[arg-type]


USED = ("ts", "agent_id", "task_id", "attempt", "task_seq", "session", "task_type", "payload", "timeout_s")


def test_an_assignment_reads_as_the_full_decoder_reads_the_fields_the_agent_uses() -> None:
    event = assigned()
    data = encode_event(event)
    read = read_assignment(event.subject, data)
    full = decode_recorded(1, event.subject, data)
    assert isinstance(read, Assignment) and isinstance(full, Recorded)
    for name in USED:
        assert getattr(read, name) == getattr(full.event, name), name


def test_defaults_are_the_events_own() -> None:
    data = msgspec.json.encode(
        {"type": "agent.task_assigned", "v": 3, "ts": 1.0, "agent_id": "a1", "task_id": "t1", "attempt": 1}
    )
    read = read_assignment("hive.evt.agent.a1.task_assigned", data)
    full = decode_recorded(1, "hive.evt.agent.a1.task_assigned", data)
    assert read is not None and isinstance(full, Recorded)
    for name in USED:
        assert getattr(read, name) == getattr(full.event, name), name


def test_only_an_assignments_subject_is_read_partially() -> None:
    assert is_assignment_subject(assigned().subject)
    cancel = TaskCancelRequested(agent_id="a1", task_id="t1", attempt=1)
    assert not is_assignment_subject(cancel.subject)
    assert not is_assignment_subject("hive.evt.agent.a1.task_assigned.t1")  # version 2's form
    assert not is_assignment_subject("hive.evt.task.a1.task_assigned")
    assert read_assignment(cancel.subject, encode_event(cancel)) is None


@pytest.mark.parametrize(
    "subject",
    [
        "hive.evt.agent.a2.task_assigned",  # another agent's
        "hive.evt.agent.a1.task_assigned.t1",  # version 2's form: the full decoder judges it
    ],
)
def test_a_body_not_on_its_own_subject_is_left_to_the_full_decoder(subject: str) -> None:
    assert read_assignment(subject, encode_event(assigned())) is None


def test_an_older_version_or_another_type_is_left_to_the_full_decoder() -> None:
    event = assigned()
    raw = msgspec.json.decode(encode_event(event))
    assert read_assignment(event.subject, msgspec.json.encode({**raw, "v": 1})) is None
    assert read_assignment(event.subject, msgspec.json.encode({**raw, "v": 2})) is None
    other = {**raw, "type": "agent.task_cancel_requested"}
    assert read_assignment(event.subject, msgspec.json.encode(other)) is None


@pytest.mark.parametrize(
    "change",
    [
        {"task_id": "bad id"},
        {"attempt": "1"},
        {"payload": [1]},
        {"timeout_s": "x"},
    ],
)
def test_an_invalid_field_it_uses_is_left_to_the_full_decoder(change: dict[str, object]) -> None:
    event = assigned()
    data = msgspec.json.encode({**msgspec.json.decode(encode_event(event)), **change})
    assert read_assignment(event.subject, data) is None
    assert not isinstance(decode_recorded(1, event.subject, data), Recorded)


def test_a_payload_nested_too_deeply_is_left_to_the_full_decoder_which_refuses_it() -> None:
    deep: object = 1
    for _ in range(MAX_NESTING):
        deep = [deep]
    event = assigned(payload={"deep": deep})
    data = encode_event(event)
    assert read_assignment(event.subject, data) is None
    assert not isinstance(decode_recorded(1, event.subject, data), Recorded)
    shallow = assigned(payload={"deep": deep[0]})  # type: ignore[index]
    assert read_assignment(shallow.subject, encode_event(shallow)) is not None


def test_not_json_is_left_to_the_full_decoder() -> None:
    assert read_assignment(assigned().subject, b"{not json") is None
