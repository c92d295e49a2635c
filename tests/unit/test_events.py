"""The event catalogue: round trips, upcasting, and clear refusals of bad bytes."""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.events import (
    EVENT_TYPES,
    AgentRegistered,
    EventDecodeError,
    FailureReported,
    ScheduleCreated,
    ScheduledTask,
    ScheduledWorkflow,
    TaskAssigned,
    TaskCancelRequested,
    TaskCompleted,
    TaskSubmitted,
    WorkflowStep,
    WorkflowStepAdded,
    WorkflowSubmitted,
    current_version,
    decode_event,
    encode_event,
    free_form_fields,
    stored_version,
)
from shared.nesting import MAX_NESTING
from shared.recorded import Recorded, Undecodable, decode_recorded

ids = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)


def test_every_event_type_has_a_unique_dotted_tag_naming_its_aggregate() -> None:
    for tag, cls in EVENT_TYPES.items():
        aggregate, _, name = tag.partition(".")
        assert aggregate == cls.AGGREGATE
        assert name and "." not in name


@given(
    task_id=ids,
    task_type=st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
    priority=st.sampled_from(["low", "normal", "high", "critical"]),
)
def test_task_submitted_round_trips_and_lands_on_its_subject(
    task_id: str, task_type: str, priority: str
) -> None:
    event = TaskSubmitted(task_id=task_id, task_type=task_type, priority=priority)  # type: ignore[arg-type]
    assert decode_event(encode_event(event)) == event
    assert event.subject == f"hive.evt.task.{task_id}.submitted"


def test_a_notice_lives_on_its_agents_subject_for_its_type_the_task_only_in_the_body() -> None:
    event = TaskAssigned(agent_id="a1", task_id="t1", attempt=2)
    assert event.subject == "hive.evt.agent.a1.task_assigned" and event.v == 3
    assert decode_event(encode_event(event)) == event
    notice = TaskCancelRequested(agent_id="a1", task_id="t1", attempt=2)
    assert notice.subject == "hive.evt.agent.a1.task_cancel_requested"
    assert isinstance(decode_recorded(1, notice.subject, encode_event(notice)), Recorded)


def _stored_as(event: TaskAssigned | TaskCancelRequested, version: int | None) -> bytes:
    raw = msgspec.json.decode(encode_event(event))
    if version is None:
        del raw["v"]  # (version 1 was written with no ``v`` by some writers: 1 by default)
    else:
        raw["v"] = version
    return msgspec.json.encode(raw)


@pytest.mark.parametrize("version", [1, None, 2, 3])
def test_every_notice_version_reads_where_it_was_stored_and_nowhere_else(version: int | None) -> None:
    """Versions 1 and 3 on five tokens, version 2 on six (naming its task); a stored form that
    contradicts its version (a v3 on six tokens, a v2 on five) is refused, as any body not on its
    own subject is."""
    for event in (
        TaskAssigned(agent_id="a1", task_id="t1", attempt=1),
        TaskCancelRequested(agent_id="a1", task_id="t1", attempt=1),
    ):
        data = _stored_as(event, version)
        five = f"hive.evt.agent.a1.{event.event_type()}"
        six = f"{five}.t1"
        right, wrong = (six, five) if version == 2 else (five, six)
        read = decode_recorded(7, right, data)
        assert isinstance(read, Recorded) and read.event.task_id == "t1" and read.event.v == 3
        refused = decode_recorded(8, wrong, data)
        assert isinstance(refused, Undecodable) and "does not match" in refused.reason
        for elsewhere in (f"{five}.t2", f"hive.evt.agent.a2.{event.event_type()}"):
            assert isinstance(decode_recorded(9, elsewhere, data), Undecodable)


def test_a_stored_version_is_read_from_the_head_or_else_decoded() -> None:
    event = TaskAssigned(agent_id="a1", task_id="t1", attempt=1)
    assert stored_version(encode_event(event)) == 3
    assert stored_version(_stored_as(event, 2)) == 2
    assert stored_version(_stored_as(event, None)) == 1
    assert stored_version(b'{"v": 2, "type": "agent.task_assigned"}') == 2  # not Hive's order
    assert stored_version(b"[1]") == 0


def test_agent_registered_v1_with_a_list_of_capabilities_is_upcast_to_v2() -> None:
    old = (
        b'{"type":"agent.registered","v":1,"id":"e1","ts":1.0,"agent_id":"a1",'
        b'"capabilities":["python","review"]}'
    )
    event = decode_event(old)
    assert isinstance(event, AgentRegistered)
    assert event.v == current_version("agent.registered") == 2
    assert event.capabilities == {"python": 1.0, "review": 1.0}
    assert event.id == "e1"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\xffgarbage", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "task.exploded", "task_id": "t"}', "Invalid value 'task.exploded'"),
        (b'{"type": "task.submitted", "task_type": "x"}', "missing required field `task_id`"),
        (b'{"type": "task.submitted", "task_id": "a.b", "task_type": "x"}', "$.task_id"),
        (b'{"type": "task.submitted", "task_id": "t", "task_type": "x", "priority": "asap"}', "$.priority"),
        (b'{"type": "agent.registered", "v": "one", "agent_id": "a", "capabilities": ["x"]}', "$.v"),
    ],
)
def test_bad_bytes_are_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError) as info:
        decode_event(payload)
    assert reason in str(info.value)


def nested_list(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_an_event_nested_twenty_thousand_levels_deep_is_refused_not_a_recursion_error() -> None:
    deep = nested_list(20_000)
    submitted = (
        b'{"type": "task.submitted", "task_id": "t", "task_type": "x", "payload": {"a": ' + deep + b"}}"
    )
    item = decode_recorded(3, "hive.evt.task.t.submitted", submitted)
    assert isinstance(item, Undecodable)
    assert "nested too deeply" in item.reason
    upcast_path = b'{"type": "agent.registered", "v": 1, "agent_id": "a", "capabilities": ' + deep + b"}"
    with pytest.raises(EventDecodeError, match="nested too deeply"):
        decode_event(upcast_path)


def _deep(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda value: TaskSubmitted(task_id="t", task_type="x", payload={"a": value}), "payload"),
        (lambda value: TaskAssigned(agent_id="a", task_id="t", attempt=1, payload={"a": value}), "payload"),
        (lambda value: TaskCompleted(task_id="t", agent_id="a", attempt=1, result=value), "result"),
        (
            lambda value: WorkflowSubmitted(
                workflow_id="w", steps=[WorkflowStep(step_id="s", task_type="x", payload={"a": value})]
            ),
            "steps[0].payload",
        ),
        (
            lambda value: WorkflowStepAdded(
                workflow_id="w", step=WorkflowStep(step_id="s", task_type="x", payload={"a": value})
            ),
            "step.payload",
        ),
        (
            lambda value: FailureReported(scope="i", failure_type="agent_error", context={"a": value}),
            "context",
        ),
        (
            lambda value: ScheduleCreated(
                scope="sched-s", task=ScheduledTask(task_type="x", payload={"a": value})
            ),
            "task.payload",
        ),
        (
            lambda value: ScheduleCreated(
                scope="sched-s",
                target="workflow",
                workflow=ScheduledWorkflow(
                    steps=[WorkflowStep(step_id="s", task_type="x", payload={"a": value})]
                ),
            ),
            "workflow.steps[0].payload",
        ),
    ],
)
def test_a_payload_or_result_may_nest_as_deep_as_the_bound_and_no_deeper(make: Any, field: str) -> None:
    depth_of_value = MAX_NESTING if field == "result" else MAX_NESTING - 1  # a payload is a dict around it
    fits = make(_deep(depth_of_value))
    assert decode_event(encode_event(fits)) == fits
    with pytest.raises(EventDecodeError) as info:
        decode_event(encode_event(make(_deep(depth_of_value + 1))))
    assert f"field `{field}` nests deeper than {MAX_NESTING} levels" in str(info.value)


def _open_paths(annotation: Any, path: str) -> set[str]:
    """Paths to the parts of a type whose shape is open (Any), through structs, lists of them and
    optional ones (``X | None``)."""
    if annotation is Any:
        return {path}
    if isinstance(annotation, types.UnionType) or getattr(annotation, "__origin__", None) is typing.Union:
        return set().union(*(_open_paths(arg, path) for arg in annotation.__args__))
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return {
            found
            for field in msgspec.structs.fields(annotation)
            for found in _open_paths(field.type, f"{path}.{field.name}" if path else field.name)
        }
    args = getattr(annotation, "__args__", ())
    if getattr(annotation, "__origin__", None) is list and args:
        return _open_paths(args[0], f"{path}[]")
    return {path} if any(_open_paths(arg, path) for arg in args) else set()


def test_every_open_field_of_the_catalogue_is_bounded_at_decode() -> None:
    step = WorkflowStep(step_id="s", task_type="x")
    examples = {
        "task.submitted": TaskSubmitted(task_id="t", task_type="x"),
        "agent.task_assigned": TaskAssigned(agent_id="a", task_id="t", attempt=1),
        "task.completed": TaskCompleted(task_id="t", agent_id="a", attempt=1),
        "workflow.submitted": WorkflowSubmitted(workflow_id="w", steps=[step]),
        "workflow.step_added": WorkflowStepAdded(workflow_id="w", step=step),
        "system.failure_reported": FailureReported(scope="i", failure_type="agent_error"),
        "system.schedule_created": ScheduleCreated(
            scope="sched-s",
            task=ScheduledTask(task_type="x"),
            workflow=ScheduledWorkflow(steps=[step]),
        ),
    }
    open_paths = {name: _open_paths(cls, "") for name, cls in EVENT_TYPES.items()}
    open_paths = {name: paths for name, paths in open_paths.items() if paths}
    assert set(open_paths) == set(examples), "a new open field: bound it in free_form_fields, then here"
    for name, event in examples.items():
        covered = {field.replace("[0]", "[]") for field, _value in free_form_fields(event)}
        assert covered == open_paths[name], name


def test_an_event_published_on_another_aggregates_subject_is_refused() -> None:
    data = encode_event(TaskSubmitted(task_id="t1", task_type="x"))
    item = decode_recorded(7, "hive.evt.task.t2.submitted", data)
    assert isinstance(item, Undecodable)
    assert "does not match" in item.reason


def test_events_are_frozen() -> None:
    event = TaskSubmitted(task_id="t1", task_type="x")
    with pytest.raises(AttributeError):
        event.task_id = "t2"  # type: ignore[misc]


def test_encoding_keeps_the_version_explicit() -> None:
    raw = msgspec.json.decode(encode_event(AgentRegistered(agent_id="a")))
    assert raw["v"] == 2 and raw["type"] == "agent.registered"


def test_hive_parses_nats_headers_and_delivery_metadata_as_nats_py_does() -> None:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from shared.natsclient import delivery_count, parse_header_lines, pending_after, stream_seq

    for raw in (
        b"Nats-Msg-Id: assign:t:1\r\nNats-Expected-Last-Subject-Sequence: 5\r\ntraceparent: 00-ab\r\n\r\n",
        b"Bad Name: x\r\nok:y\r\n\x80x: z\r\nStatus:100\r\nTab\tName: q\r\nvalue: \xff\r\n",
        b"",
    ):
        assert parse_header_lines(raw) == Client._parse_header_lines(raw)
    for reply in (
        "$JS.ACK.HIVE_EVENTS.router.3.1234.77.1700000000000000000.9",
        "$JS.ACK.domain.ACCOUNTHASH.HIVE_EVENTS.router.3.1234.77.1700000000000000000.9.token",
    ):
        msg = Msg(_client=None, subject="hive.evt.task.t.submitted", reply=reply)  # type: ignore[arg-type]
        meta = msg.metadata
        assert (stream_seq(msg), delivery_count(msg), pending_after(msg)) == (
            meta.sequence.stream,
            meta.num_delivered,
            meta.num_pending,
        )
