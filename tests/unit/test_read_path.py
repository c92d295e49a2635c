"""The read path's shortcuts compute what the code they replace computed.

Every reader runs each stored message through ``ProjectionRunner.apply_message`` and
``decode_recorded``; their cheaper forms (``version_key``, ``_SUBJECT_FORMS``, ``_HAS_FREE_FORM``,
``deliver_stored``) are compared here with the old computations, written out below as they were.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from typing import Any, cast

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.cli.bench.history import History, finished_task
from shared.events import (
    _HAS_FREE_FORM,
    _SUBJECT_FORMS,
    _WITH_FREE_FORM,
    EVENT_TYPES,
    Event,
    EventDecodeError,
    FailureReported,
    TaskAssigned,
    TaskCompleted,
    TaskNotice,
    TaskReport,
    TaskStarted,
    TaskSubmitted,
    WorkflowStep,
    WorkflowStepAdded,
    WorkflowSubmitted,
    _decode,
    encode_event,
    free_form_fields,
    too_deep_field,
)
from shared.natsclient import HiveNatsClient, deliver_directly, deliver_stored
from shared.nesting import MAX_NESTING, openers, value_nests_deeper
from shared.projection import ProjectionRunner, version_key
from shared.projection_spec import ProjectionSpec
from shared.recorded import Recorded, Undecodable, decode_recorded
from shared.subjects import event_subject, parse_event_subject
from tests.unit.test_natsclient_deliver import MESSAGE, client_with_subscriptions

# --- the old computations, as they were ----------------------------------------------------------


def old_version_key(subject: str) -> str | None:
    parsed = parse_event_subject(subject)
    return None if parsed is None else f"{parsed[0]}.{parsed[1]}"


def old_bump(versions: dict[str, int], pruned: bool, max_versions: int, subject: str, seq: int) -> bool:
    key = old_version_key(subject)
    if key is None:
        return pruned
    versions.pop(key, None)
    versions[key] = seq
    if len(versions) > max_versions:
        pruned = True
        excess = len(versions) - max_versions
        for old in list(versions)[: excess + max_versions // 10]:
            del versions[old]
    return pruned


class _StoredVersion(msgspec.Struct):
    v: int = 1


def old_stored_on(event: Event, subject: str, data: bytes) -> bool:
    if event.subject == subject:
        return True
    if not isinstance(event, TaskReport | TaskNotice):
        return False
    if subject != event_subject(event.AGGREGATE, event.aggregate_id, event.event_type()):
        return False
    try:
        return msgspec.json.decode(data, type=_StoredVersion).v == 1
    except msgspec.DecodeError:
        return False


def old_too_deep_field(event: Event, data: bytes) -> str | None:
    if not isinstance(event, _WITH_FREE_FORM) or openers(data) <= MAX_NESTING:
        return None
    for name, value in free_form_fields(event):
        if value_nests_deeper(value, MAX_NESTING):
            return name
    return None


def old_decode_recorded(seq: int, subject: str, data: bytes) -> Recorded | Undecodable:
    try:
        try:
            event = _decode(data)
        except RecursionError:
            raise EventDecodeError("nested too deeply to decode") from None
        field = old_too_deep_field(event, data)
        if field is not None:
            raise EventDecodeError(f"field `{field}` nests deeper than {MAX_NESTING} levels")
    except EventDecodeError as exc:
        return Undecodable(seq, subject, str(exc))
    if not old_stored_on(event, subject, data):
        return Undecodable(seq, subject, f"subject {subject} does not match the event's own {event.subject}")
    return Recorded(seq, subject, event)


# --- subjects and versions -------------------------------------------------------------------------

TOKENS = st.sampled_from(
    [
        *("hive", "evt", "task", "agent", "workflow", "breaker", "system", "submitted", "task_assigned"),
        *(
            "started",
            "progress",
            "completed",
            "attempt_failed",
            "task_cancel_requested",
            "t1",
            "a-1",
            "",
            "x",
        ),
    ]
)
SUBJECTS = st.one_of(
    st.lists(TOKENS, min_size=0, max_size=8).map(".".join),
    st.tuples(TOKENS, TOKENS, TOKENS, TOKENS).map(lambda t: "hive.evt." + ".".join(t)),
    st.tuples(TOKENS, TOKENS, TOKENS).map(lambda t: "hive.evt." + ".".join(t)),
    st.text(max_size=30),
)


@settings(max_examples=2000, deadline=None)
@given(SUBJECTS)
def test_version_key_is_the_aggregate_and_id_parse_event_subject_reads(subject: str) -> None:
    assert version_key(subject) == old_version_key(subject)


def _skip_all(state: list[int], subject: str) -> bool:
    return True


SKIP_ALL: ProjectionSpec[list[int]] = ProjectionSpec(
    name="skip", state_type=list[int], initial=list, apply=lambda s, _r: s, ignores=_skip_all
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(1, 12), st.sampled_from(["submitted", "started.a", "x.y", "progress"]))),
    st.integers(1, 6),
    st.dictionaries(st.sampled_from([f"task.t{n}" for n in range(12)]), st.integers(1, 5), max_size=9),
)
def test_the_versions_kept_are_those_the_old_bump_kept(
    events: list[tuple[int, str]], max_versions: int, loaded: dict[str, int]
) -> None:
    """Versions in order (the oldest pruned first), pruning past the bound, a snapshot's versions
    beyond the bound: as before, message after message."""
    runner = ProjectionRunner(cast(Any, None), SKIP_ALL, max_versions=max_versions)
    runner.versions = dict(loaded)
    versions, pruned = dict(loaded), False
    for seq, (task, rest) in enumerate(events, start=1):
        subject = f"hive.evt.task.t{task}.{rest}"
        runner.apply_message(seq, subject, b"")
        pruned = old_bump(versions, pruned, max_versions, subject, seq)
        assert list(runner.versions.items()) == list(versions.items())
        assert runner._pruned == pruned
    assert runner.seq == len(events) and runner.ignored == len(events)


# --- decoding -----------------------------------------------------------------------------------


def _fake_of(cls: type[Event], ids: dict[str, Any]) -> Any:
    """An object whose ``subject`` is `cls`'s own property code, over the given id fields."""
    fake_type = type(
        "Fake",
        (),
        {
            "AGGREGATE": cls.AGGREGATE,
            "aggregate_id": inspect.getattr_static(cls, "aggregate_id"),
            "subject": inspect.getattr_static(cls, "subject"),
            "event_type": staticmethod(cls.event_type),
        },
    )
    fake = fake_type()
    for name, value in ids.items():
        setattr(fake, name, value)
    return fake


IDS = st.one_of(st.text(alphabet="abc-_19.", min_size=1, max_size=6), st.integers(), st.none())


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({"agent_id": IDS, "task_id": IDS, "workflow_id": IDS, "scope": IDS}))
def test_each_event_types_subject_form_is_its_subject_property(ids: dict[str, Any]) -> None:
    assert set(_SUBJECT_FORMS) == set(EVENT_TYPES.values())
    for cls in EVENT_TYPES.values():
        fake = _fake_of(cls, ids)
        assert _SUBJECT_FORMS[cls](fake) == fake.subject, cls


def test_free_form_is_looked_up_as_isinstance_answered() -> None:
    assert set(_HAS_FREE_FORM) == set(EVENT_TYPES.values())
    for cls, free in _HAS_FREE_FORM.items():
        assert free == issubclass(cls, _WITH_FREE_FORM)


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def _examples() -> list[Event]:
    history = History(tasks=5)
    rng = random.Random(3)
    events: list[Event] = [e for index in range(3) for e in finished_task(history, index, rng)]
    step = WorkflowStep(step_id="s", task_type="x", payload={"deep": _deep(MAX_NESTING + 1)})
    return [
        *events,
        TaskSubmitted(task_id="deep", task_type="x", payload={"a": _deep(MAX_NESTING)}),
        TaskSubmitted(task_id="deeper", task_type="x", payload={"a": _deep(MAX_NESTING + 3)}),
        TaskCompleted(task_id="t", agent_id="a", attempt=1, result=_deep(MAX_NESTING + 1)),
        TaskStarted(task_id="t", agent_id="a", attempt=1, v=1),
        TaskAssigned(agent_id="a", task_id="t", attempt=2, v=1),
        WorkflowSubmitted(workflow_id="w", steps=[step]),
        FailureReported(scope="i", failure_type="agent_error", context={"k": "[[[[{{{{"}),
    ]


EXAMPLES = _examples()


def _subjects_for(event: Event) -> list[str]:
    five = event_subject(event.AGGREGATE, event.aggregate_id, event.event_type())
    return [event.subject, five, five + ".other", "hive.evt.task.elsewhere.submitted", "nope"]


def _nested(depth: int, inner: Any) -> Any:
    value = inner
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(alphabet="[]{}a", max_size=4))
FREE_FORM = st.one_of(
    SCALARS,
    st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=20),
            st.dictionaries(st.text(alphabet="ab[{", max_size=3), inner, max_size=20),
        ),
        max_leaves=40,
    ),
    st.builds(_nested, st.integers(0, MAX_NESTING + 3), SCALARS),
    st.builds(
        lambda n, wide: {**{f"k{i}": i for i in range(wide)}, "deep": _deep(n)},
        st.integers(0, 70),
        st.integers(0, 20),
    ),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FREE_FORM, st.sampled_from(["submitted", "assigned", "completed", "workflow", "step", "failure"]))
def test_too_deep_field_answers_what_the_bracket_count_first_answered(value: Any, kind: str) -> None:
    """The shallow look first (``_shallow_fields``), then the bracket count: the same field named,
    or none, as with the bracket count alone, whatever the free-form fields hold."""
    payload = value if isinstance(value, dict) else {"v": value}
    event: Event
    if kind == "submitted":
        event = TaskSubmitted(task_id="t", task_type="x", payload=payload)
    elif kind == "assigned":
        event = TaskAssigned(agent_id="a", task_id="t", attempt=1, payload=payload)
    elif kind == "completed":
        event = TaskCompleted(task_id="t", agent_id="a", attempt=1, result=value)
    elif kind == "workflow":
        step = WorkflowStep(step_id="s", task_type="x", payload=payload)
        event = WorkflowSubmitted(workflow_id="w", steps=[step], context=payload)
    elif kind == "step":
        event = WorkflowStepAdded(
            workflow_id="w", step=WorkflowStep(step_id="s", task_type="x", payload=payload)
        )
    else:
        event = FailureReported(scope="i", failure_type="agent_error", context=payload)
    data = encode_event(event)
    assert too_deep_field(event, data) == old_too_deep_field(event, data)
    decoded = msgspec.json.decode(data, type=type(event))
    assert too_deep_field(decoded, data) == old_too_deep_field(decoded, data)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(EXAMPLES), st.integers(0, 4), st.sampled_from([None, b"{", b"[]", b'{"type":1}']))
def test_decode_recorded_gives_what_the_old_checks_gave(
    event: Event, which: int, garbage: bytes | None
) -> None:
    data = garbage if garbage is not None else encode_event(event)
    subject = _subjects_for(event)[which]
    assert decode_recorded(9, subject, data) == old_decode_recorded(9, subject, data)


def test_v1_reports_and_notices_still_decode_on_the_five_token_subject_only() -> None:
    old = [e for e in EXAMPLES if e.v == 1 and isinstance(e, TaskReport | TaskNotice)]
    assert len(old) == 2
    for event in old:
        subjects = _subjects_for(event)
        assert isinstance(decode_recorded(1, subjects[1], encode_event(event)), Recorded)
        assert isinstance(decode_recorded(1, subjects[2], encode_event(event)), Undecodable)


# --- deliver_stored -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MESSAGE, max_size=25))
def test_a_stored_handler_takes_the_bytes_of_what_the_direct_handler_would_have_been_handed(
    messages: list[tuple[int, bytes, bytes, bytes, bytes | None]],
) -> None:
    """Same counters, same order; what it declines (and statuses) still reach the direct handler."""

    async def run() -> None:
        plain = client_with_subscriptions([])
        fast = client_with_subscriptions([])
        handed: dict[HiveNatsClient, list[tuple[Any, ...]]] = {plain: [], fast: []}
        for client in (plain, fast):
            for sid in (1, 3):

                def take(msg: Any, client: HiveNatsClient = client) -> None:
                    handed[client].append(("msg", msg.subject.encode(), msg.reply.encode(), msg.data))

                deliver_directly(client, client._subs[sid], take)

        def take_stored(subject: bytes, reply: bytes, data: bytes) -> bool:
            if subject.startswith(b"_INBOX"):
                return False
            handed[fast].append(("stored", subject, reply, data))
            return True

        deliver_stored(fast, fast._subs[1], take_stored)
        deliver_stored(fast, fast._subs[2], take_stored)  # not handed over directly: never offered
        for client in (plain, fast):
            for sid, subject, reply, data, headers in messages:
                if not client.deliver_now(sid, subject, reply, data, headers):
                    await client._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
        assert [h[1:] for h in handed[fast]] == [h[1:] for h in handed[plain]]
        assert fast.stats == plain.stats
        assert {sid: s._received for sid, s in fast._subs.items()} == {
            sid: s._received for sid, s in plain._subs.items()
        }
        assert {sid: s._pending_queue.qsize() for sid, s in fast._subs.items()} == {
            sid: s._pending_queue.qsize() for sid, s in plain._subs.items()
        }
        for kind, subject, _reply, _data in handed[fast]:
            if kind == "stored":
                assert not subject.startswith(b"_INBOX")

    asyncio.run(run())


def test_a_stored_handler_gets_nothing_once_removed() -> None:
    async def run() -> None:
        client = client_with_subscriptions([])
        sub = client._subs[1]
        got: list[Any] = []
        deliver_directly(client, sub, got.append)

        def take(*raw: bytes) -> bool:
            got.append(raw)
            return True

        deliver_stored(client, sub, take)
        assert client.deliver_now(1, b"ev.a", b"r", b"x", None)
        deliver_stored(client, sub, None)
        assert client.deliver_now(1, b"ev.b", b"r", b"y", None)
        assert got[0] == (b"ev.a", b"r", b"x") and got[1].subject == "ev.b"

    asyncio.run(run())
