"""An append's cheaper steps build what the code they replace built.

Every process appends (the benchmark's client a submission per task, the router an assignment, an
agent a completion), and each append went through ``str.translate`` for every header value and the
``subject`` property three times. The old computations are written out below as they were.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import _validate_subject

from services.cli.bench.assign import _DECIDED
from shared.bus import _HEADER_VALUE_NEWLINES, EventBus, EventTooLarge, _header_name, hpub_command
from shared.events import (
    AgentRegistered,
    RateLimitSet,
    RejectedCandidate,
    TaskAssigned,
    TaskCompleted,
    TaskStarted,
    TaskSubmitted,
    WorkflowSubmitted,
    encode_event,
    subject_of,
)
from shared.recorded import Recorded, decode_recorded

# --- the old computations, as they were ----------------------------------------------------------


def old_hpub_command(subject: str, reply: str, headers: dict[str, str], payload: bytes) -> bytes:
    _validate_subject(subject)
    lines = [b"NATS/1.0\r\n"]
    for key, value in headers.items():
        name = _header_name(key)
        if name:
            lines.append(name + value.strip().translate(_HEADER_VALUE_NEWLINES).encode() + b"\r\n")
    lines.append(b"\r\n")
    header = b"".join(lines)
    size = len(header)
    return b"".join(
        (f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n".encode(), header, payload, b"\r\n")
    )


def old_size(data: bytes, headers: dict[str, str]) -> int:
    return len(data) + sum(len(key) + len(value) + 4 for key, value in headers.items()) + 12


# -------------------------------------------------------------------------------------------------

_values = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=" \t\r\n\x0b\x0c\x1c\x85\u2028ab-:1", max_size=12),
    st.sampled_from(["assign:t1:1", " 12 ", "a\r\nPUB x 1", "\n", "\r", "x\ry", " \u2028 ", "é"]),
)


@settings(max_examples=500, deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from(["Nats-Msg-Id", "Nats-Expected-Last-Subject-Sequence", "traceparent", " x "]),
        _values,
        max_size=4,
    ),
    payload=st.binary(max_size=40),
)
def test_an_append_command_is_the_old_one_byte_for_byte(headers: dict[str, str], payload: bytes) -> None:
    subject, reply = "hive.evt.task.t1.task_completed.a1", "_INBOX.abc.17"
    new = hpub_command(subject, reply, headers, payload)
    assert new == old_hpub_command(subject, reply, headers, payload)


_EVENTS = [
    TaskSubmitted(task_id="t-1", task_type="bench"),
    TaskAssigned(task_id="t-1", agent_id="a-1", attempt=2),
    TaskStarted(task_id="t-1", agent_id="a-1", attempt=2),
    TaskCompleted(task_id="t-1", agent_id="a-1", attempt=2, result={"x": [1]}),
    AgentRegistered(agent_id="a-1", capabilities=["bench"]),
    WorkflowSubmitted(workflow_id="w-1", name="w", steps=[]),
    RateLimitSet(scope="rate.k", pattern="k", limit=1),
]


@pytest.mark.parametrize("event", _EVENTS, ids=lambda event: type(event).__name__)
def test_an_appended_events_subject_is_its_subject_property(event: Any) -> None:
    assert subject_of(event) == event.subject


class _Connection:
    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload


def _bus(max_payload: int) -> EventBus:
    bus = EventBus.__new__(EventBus)
    bus.nc = _Connection(max_payload)  # type: ignore[assignment]
    bus.trace_headers = None
    bus.on_encoded = None
    return bus


@pytest.mark.parametrize("expected", [None, 0, 41])
def test_an_event_is_refused_as_too_large_exactly_where_it_was(expected: int | None) -> None:
    event = TaskCompleted(task_id="t-1", agent_id="a-1", attempt=1, result={"r": "x" * 50})
    data, headers, _guarded, _subject = _bus(1 << 20)._encoded(event, expected, "m-1", None)
    limit = old_size(data, headers)
    assert _bus(limit)._encoded(event, expected, "m-1", None)[0] == data
    with pytest.raises(EventTooLarge):
        _bus(limit - 1)._encoded(event, expected, "m-1", None)


@settings(max_examples=200, deadline=None)
@given(
    task_id=st.text(alphabet="abc-_19", min_size=1, max_size=12),
    decided_at_ts=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    rejected=st.integers(min_value=0, max_value=10),
    payload=st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=6), max_size=3),
)
def test_the_benchmark_reads_an_assignments_task_and_decision_time_as_decoding_it_whole(
    task_id: str, decided_at_ts: float, rejected: int, payload: dict[str, Any]
) -> None:
    event = TaskAssigned(
        task_id=task_id,
        agent_id="a-1",
        attempt=1,
        payload=payload,
        rejected=[RejectedCandidate(agent_id=f"r{i}", score=0.5, reason="lower") for i in range(rejected)],
        decided_at_ts=decided_at_ts,
    )
    data = encode_event(event)
    whole = decode_recorded(7, event.subject, data)
    assert isinstance(whole, Recorded) and isinstance(whole.event, TaskAssigned)
    light = _DECIDED.decode(data)
    assert (light.task_id, int(light.decided_at_ts * 1e9)) == (
        whole.event.task_id,
        int(whole.event.decided_at_ts * 1e9),
    )


def test_the_benchmark_skips_what_is_no_assignment() -> None:
    with pytest.raises(msgspec.DecodeError):
        _DECIDED.decode(b'{"type": "agent.task_assigned"}')
