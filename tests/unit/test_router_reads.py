"""The router decodes each message it reads once and its own appends not at all
(``services/router/reads.py``), and its projection ends the same as one that decodes everything."""

from __future__ import annotations

from typing import Any, cast

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.decide import Assign, Hold, assignment_event, plan
from services.router.reads import APPENDING_PER_SUBJECT, Decodings
from services.router.service import is_current_session
from shared.domain.fleet import AgentView
from shared.domain.routing.policy import RoutingConfig
from shared.domain.routing.view import ROUTER_VIEW, RouterState
from shared.events import (
    AgentRegistered,
    Event,
    Persona,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskProfile,
    TaskQueued,
    TaskSubmitted,
    encode_event,
)
from shared.projection import ProjectionRunner
from shared.recorded import Recorded, decode_recorded

STRATEGIES = [
    None,
    "persona_cognitive_match",
    "load_balanced",
    "performance_first",
    "adaptive",
    "round_robin",
]
STYLES = [None, "analytical", "creative", "meticulous"]
PAYLOADS = st.dictionaries(
    st.text(max_size=4),
    st.one_of(st.integers(-(2**53), 2**53), st.floats(-1e9, 1e9), st.text(), st.lists(st.booleans())),
)
"""What a submission carries as JSON gives (what msgpack snapshots hold: no infinities, 64-bit ints)."""


class Stored:
    """A log as the server holds it: (sequence, subject, bytes)."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, str, bytes]] = []

    def add(self, event: Event) -> tuple[int, str, bytes]:
        message = (len(self.messages) + 1, event.subject, encode_event(event))
        self.messages.append(message)
        return message


def runner(decode: Any = None) -> ProjectionRunner[RouterState]:
    view = ProjectionRunner(cast(Any, None), ROUTER_VIEW)  # applying needs no bus
    if decode is not None:
        view.decode = decode
    return view


def snapshot(view: ProjectionRunner[RouterState]) -> bytes:
    return view.encode_snapshot()


@settings(max_examples=80, deadline=None)
@given(
    agents=st.lists(
        st.tuples(st.integers(1, 3), st.floats(0.1, 1.0), st.sampled_from(STYLES)), min_size=1, max_size=5
    ),
    tasks=st.lists(
        st.tuples(
            st.sampled_from(STRATEGIES),
            st.sampled_from(STYLES),
            st.sampled_from([0.0, 0.3, 0.95]),
            PAYLOADS,
        ),
        max_size=12,
    ),
    outcomes=st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), max_size=12),
    mode=st.sampled_from(["standard", "high_performance", "emergency"]),
)
def test_a_view_that_applies_the_router_s_own_appends_undecoded_ends_as_one_that_decodes_them(
    agents: list[tuple[int, float, str | None]],
    tasks: list[tuple[str | None, str | None, float, dict[str, Any]]],
    outcomes: list[float | None],
    mode: str,
) -> None:
    """Rounds of decisions on a view, each appended as the router does and read back: the view
    handed the events in hand holds, to the byte, what a view decoding every message holds."""
    config = RoutingConfig(mode=cast(Any, mode))
    decodings = Decodings()
    fast = runner(decodings.for_view)
    plain = runner()
    log = Stored()
    appended = 0

    def store(event: Event, own: bool = False) -> None:
        seq, subject, data = log.add(event)
        if own:
            decodings.appending(event, data)
        # What the server delivers is the stored bytes, decoded by each reader it reaches.
        assert fast.apply_message(seq, subject, bytes(data)) is None
        assert plain.apply_message(seq, subject, bytes(data)) is None

    for index, (capacity, skill, style) in enumerate(agents):
        store(
            AgentRegistered(
                agent_id=f"a{index}",
                capabilities={"review": skill, "other": 1.0 - skill / 2},
                capacity=capacity,
                persona=Persona() if style is None else Persona(cognitive_style=cast(Any, style)),
            )
        )
    for index, (strategy, style, threshold, payload) in enumerate(tasks):
        store(
            TaskSubmitted(
                task_id=f"t{index}",
                task_type="review",
                routing_strategy=cast(Any, strategy),
                profile=TaskProfile(preferred_cognitive_style=cast(Any, style)),
                expected_quality_threshold=threshold,
                payload=payload,
            )
        )
    for round_number in range(3):
        now = 1000.0 + round_number
        for step in plan(fast.state, now, config, after_seq=fast.seq, limit=100):
            decision = step.decision
            task = fast.state.fleet.tasks[decision.task_id]
            if isinstance(decision, Assign):
                event: Event = assignment_event(
                    decision,
                    task,
                    task_seq=fast.seen_version("task", decision.task_id) or 0,
                    seen=fast.seq,
                    now=now,
                    mode=mode,
                    assumed=step.assumed,
                    correlation=task.task_id,
                    causation="c",
                )
                decoded = decode_recorded(1, event.subject, encode_event(event))
                assert isinstance(decoded, Recorded)
                assert msgspec.msgpack.encode(decoded.event) == msgspec.msgpack.encode(event)
                store(event, own=True)
                appended += 1
            elif isinstance(decision, Hold):
                store(TaskQueued(task_id=decision.task_id, attempt=1, reason=decision.reason), own=True)
                appended += 1
        for index, quality in enumerate(outcomes[round_number * 4 : round_number * 4 + 4]):
            held = [t for t in fast.state.fleet.tasks.values() if t.status == "assigned" and t.agent_id]
            if index < len(held):
                task = held[index]
                agent_id = cast(str, task.agent_id)
                store(
                    TaskAttemptFailed(task_id=task.task_id, agent_id=agent_id, attempt=1, duration_s=2.0)
                    if quality is None
                    else TaskCompleted(
                        task_id=task.task_id, agent_id=agent_id, attempt=1, quality=quality, duration_s=1.5
                    )
                )
    assert snapshot(fast) == snapshot(plain)
    assert decodings.reused == appended
    assert decodings.decoded == len(log.messages) - appended


def test_other_bytes_on_a_subject_this_router_appended_to_are_decoded() -> None:
    """A rival's assignment of the same attempt stored first (ours refused): the view applies the
    rival's, as stored."""
    decodings = Decodings()
    ours = assignment_like("ours")
    rivals = assignment_like("theirs")
    assert ours.subject == rivals.subject
    decodings.appending(ours, encode_event(ours))
    read = decodings.for_view(7, rivals.subject, encode_event(rivals))
    assert isinstance(read, Recorded) and read.event == rivals and read.seq == 7
    assert (decodings.decoded, decodings.reused) == (1, 0)


def test_an_appended_event_read_back_is_the_one_in_hand_at_its_stored_sequence() -> None:
    decodings = Decodings()
    ours = assignment_like("ours")
    data = encode_event(ours)
    decodings.appending(ours, data)
    read = decodings.for_view(12, ours.subject, bytes(data))
    assert (
        isinstance(read, Recorded) and read.event is ours and (read.seq, read.subject) == (12, ours.subject)
    )
    assert (decodings.decoded, decodings.reused, decodings.kept()) == (0, 1, 0)


def test_several_appends_to_one_agent_in_flight_are_each_read_back_undecoded() -> None:
    """Assignments to one agent share its subject (version 3): each one on its way is kept, the one
    read back found by its bytes; one never read back (refused) goes with the next read after it."""
    decodings = Decodings()
    sent = [TaskAssigned(agent_id="a1", task_id=f"t{index}", attempt=1) for index in range(4)]
    assert len({event.subject for event in sent}) == 1
    for event in sent:
        decodings.appending(event, encode_event(event))
    assert decodings.kept() == 4
    second = decodings.for_view(20, sent[1].subject, encode_event(sent[1]))
    assert isinstance(second, Recorded) and second.event is sent[1]
    assert decodings.kept() == 2, "the first was sent before it and not read back: refused"
    fourth = decodings.for_view(21, sent[3].subject, encode_event(sent[3]))
    assert isinstance(fourth, Recorded) and fourth.event is sent[3]
    assert (decodings.decoded, decodings.reused, decodings.kept()) == (0, 2, 0)
    late = decodings.for_view(22, sent[2].subject, encode_event(sent[2]))
    assert isinstance(late, Recorded) and late.event == sent[2] and decodings.decoded == 1


def test_appends_kept_per_subject_are_bounded() -> None:
    decodings = Decodings()
    for index in range(APPENDING_PER_SUBJECT + 5):
        event = TaskAssigned(agent_id="a1", task_id=f"t{index}", attempt=1)
        decodings.appending(event, encode_event(event))
    assert decodings.kept() == APPENDING_PER_SUBJECT


def test_a_submission_is_decoded_once_whichever_reader_comes_first() -> None:
    decodings = Decodings()
    first, second = TaskSubmitted(task_id="a", task_type="x"), TaskSubmitted(task_id="b", task_type="x")
    one = decodings.for_work(5, first.subject, encode_event(first), view_at=4)
    assert decodings.for_view(5, first.subject, encode_event(first)) is one
    two = decodings.for_view(6, second.subject, encode_event(second))
    assert decodings.for_work(6, second.subject, encode_event(second), view_at=6) is two
    assert (decodings.decoded, decodings.reused, decodings.kept()) == (2, 2, 0)


def test_a_redelivered_claim_is_counted_as_given_again_and_decoded_at_most_once_more() -> None:
    """The claim's acknowledgement wait ran out: the server gives sequence 5 again after 6. The
    projection read 5 meanwhile and kept nothing for the work consumer (it had gone past 5)."""
    decodings = Decodings()
    first, second = TaskSubmitted(task_id="a", task_type="x"), TaskSubmitted(task_id="b", task_type="x")
    decodings.for_work(5, first.subject, encode_event(first), view_at=4)
    decodings.for_work(6, second.subject, encode_event(second), view_at=4)
    decodings.for_view(5, first.subject, encode_event(first))
    decodings.for_view(6, second.subject, encode_event(second))
    assert decodings.work_again == 0
    again = decodings.for_work(5, first.subject, encode_event(first), view_at=6)
    assert isinstance(again, Recorded) and again.event == first
    assert (decodings.work_again, decodings.decoded, decodings.reused) == (1, 3, 2)


def test_what_a_reader_will_not_ask_for_is_not_kept() -> None:
    """The projection read a submission already: the work consumer keeps nothing for it. The work
    consumer went past a submission (another instance's): the projection keeps nothing for it."""
    decodings = Decodings()
    event = TaskSubmitted(task_id="a", task_type="x")
    decodings.for_work(9, event.subject, encode_event(event), view_at=9)
    decodings.for_work(10, event.subject, encode_event(event), view_at=9)
    assert decodings.kept() == 1
    decodings.for_view(10, event.subject, encode_event(event))
    decodings.for_view(8, event.subject, encode_event(event))  # before the work consumer's place
    completed = TaskCompleted(task_id="a", agent_id="x", attempt=1)
    decodings.for_view(11, completed.subject, encode_event(completed))  # not a work event
    assert decodings.kept() == 0


def test_kept_events_are_bounded_and_those_the_work_consumer_went_past_go_first() -> None:
    events = [TaskSubmitted(task_id=f"t{i}", task_type="x") for i in range(12)]
    for_view = Decodings(for_view_max=4)
    for seq, event in enumerate(events, start=1):
        for_view.for_work(seq, event.subject, encode_event(event), view_at=0)
    assert for_view.kept() <= 4
    for_work = Decodings(for_work_max=4)
    for seq, event in enumerate(events[:5], start=1):
        for_work.for_view(seq, event.subject, encode_event(event))
    assert for_work.kept() == 4  # full: the fifth is not kept
    for_work.for_work(2, events[1].subject, encode_event(events[1]), view_at=12)  # went past 1 and 2
    for seq, event in enumerate(events[5:7], start=6):
        for_work.for_view(seq, event.subject, encode_event(event))
    assert for_work.kept() == 4  # 3, 4, 6 and 7: 1 was forgotten, gone past
    for seq in (3, 4, 6, 7):
        event = events[seq - 1]
        assert for_work.for_work(seq, event.subject, encode_event(event), view_at=12) is not None
    assert (for_work.reused, for_work.kept()) == (5, 0)


def assignment_like(explanation: str) -> Event:
    return TaskAssigned(
        agent_id="a", task_id="t", attempt=1, explanation=explanation, payload={"k": [1, 2.5]}
    )


class _KeptBeforeRouterdec(Decodings):
    """``Decodings`` as it kept work events before they were known to be kept in stream order:
    when full, a walk over every one kept (the reference the new walk must agree with)."""

    def _keep_for_work(self, recorded: Recorded) -> None:
        kept = self._for_work
        if len(kept) >= self.for_work_max:
            for seq in [seq for seq in kept if seq <= self._work_at]:
                del kept[seq]
            if len(kept) >= self.for_work_max:
                return
        kept[recorded.seq] = recorded


class _CountingDict(dict[int, Recorded]):
    """A dict that counts the keys its iteration yields."""

    walked = 0

    def __iter__(self) -> Any:
        for key in super().__iter__():
            _CountingDict.walked += 1
            yield key


def test_a_full_store_for_the_work_consumer_is_not_walked_whole_for_every_submission() -> None:
    """A backlog: the projection reads thousands of submissions the work consumer has not reached.
    Once full, keeping (or not) one more looks at the events gone past, not at all of them."""
    decodings = Decodings(for_work_max=500)
    decodings._for_work = _CountingDict()
    _CountingDict.walked = 0
    for seq in range(1, 1501):
        event = TaskSubmitted(task_id=f"t{seq}", task_type="x")
        decodings.for_view(seq, event.subject, encode_event(event))
    assert decodings.kept() == 500
    assert _CountingDict.walked < 5 * 1000  # a walk over all of them per submission: 500,000


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["view", "work", "again"]), st.integers(0, 6), st.integers(0, 8)),
        max_size=120,
    ),
    st.integers(1, 6),
)
def test_kept_work_events_are_the_ones_the_walk_over_all_of_them_kept(
    steps: list[tuple[str, int, int]], most: int
) -> None:
    """Against the walk over every event kept: the same events kept, in the same order, the same
    answers and counts, whatever the interleaving of the readers (and a view reading some again)."""
    new, old = Decodings(for_work_max=most), _KeptBeforeRouterdec(for_work_max=most)
    view_at = work_at = 0
    for reader, step, back in steps:
        if reader == "work":
            work_at += step
            seq, at = work_at, view_at
        else:
            view_at = max(1, view_at - back) if reader == "again" else view_at + step + 1
            seq, at = view_at, 0
        event = TaskSubmitted(task_id=f"t{seq}", task_type="x")
        data = encode_event(event)
        if reader == "work":
            answers = [d.for_work(seq, event.subject, data, at) for d in (new, old)]
        else:
            answers = [d.for_view(seq, event.subject, data) for d in (new, old)]
        assert answers[0] == answers[1]
        assert list(new._for_work) == list(old._for_work)
        assert list(new._for_view) == list(old._for_view)
        assert (new.decoded, new.reused) == (old.decoded, old.reused)


def test_an_inbox_opens_only_for_the_agents_current_session() -> None:
    current = AgentView(agent_id="a", registered_seq=7)
    assert is_current_session(current, 7)
    assert not is_current_session(current, 3)  # a later registration replaced it
    assert not is_current_session(None, 7)  # unknown to the view
    assert not is_current_session(AgentView(agent_id="a", registered_seq=7, status="deregistered"), 7)
