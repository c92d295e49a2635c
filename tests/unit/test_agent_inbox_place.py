"""Where an agent's own in-memory inbox starts again once the server forgot it (``InboxPlace``):
after the last message handled, or before a delivery lost in transit until it can have come again."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.agent.inbox import GAP_HOLD_S, InboxPlace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def take(place: InboxPlace, delivery: int, seq: int) -> None:
    """What the agent's reader does with each delivery: note it, handle it."""
    place.delivered(delivery)
    place.handled = max(place.handled, seq)


def test_without_a_gap_the_inbox_starts_again_after_the_last_message_handled() -> None:
    place = InboxPlace(Clock())
    place.reset(10)
    place.reading_from(0)
    for delivery, seq in enumerate((12, 15, 19), start=1):
        take(place, delivery, seq)
    assert place.resume_after() == 19


def test_a_delivery_lost_in_transit_keeps_the_place_before_it_until_it_can_have_come_again() -> None:
    clock = Clock()
    place = InboxPlace(clock)
    place.reset(10)
    place.reading_from(0)
    take(place, 1, 12)
    take(place, 3, 20)  # delivery 2 (some message after 12) never arrived
    take(place, 4, 21)
    assert place.resume_after() == 12
    clock.now += GAP_HOLD_S - 0.1
    assert place.resume_after() == 12
    clock.now += 0.2  # the server has delivered it again meanwhile (ack_wait), or it is pending
    assert place.resume_after() == 21


def test_a_second_gap_within_the_hold_keeps_the_earliest_place_and_extends_the_hold() -> None:
    clock = Clock()
    place = InboxPlace(clock)
    place.reset(10)
    place.reading_from(4)  # a reader starting on an inbox that delivered 4 messages
    take(place, 6, 12)  # delivery 5 lost
    clock.now += 20
    take(place, 8, 30)  # delivery 7 lost
    clock.now += GAP_HOLD_S - 1
    assert place.resume_after() == 10  # the first gap's place, held from the second gap on
    clock.now += 2
    assert place.resume_after() == 30


def test_a_new_session_forgets_the_old_inbox_and_its_gaps() -> None:
    place = InboxPlace(Clock())
    place.reset(10)
    place.reading_from(0)
    take(place, 2, 12)
    place.reset(50)
    assert place.resume_after() == 50
    take(place, 7, 51)  # numbers of the new inbox are unknown until a reader starts on it
    assert place.resume_after() == 51


@given(
    st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=1, max_size=60),
    st.lists(st.floats(0, 10), min_size=60, max_size=60),
)
def test_no_message_delivered_but_not_handled_is_before_the_place(
    steps: list[tuple[int, bool]], pauses: list[float]
) -> None:
    """Deliveries in stream order, some lost in transit: a reopened inbox starts at or before
    every lost message the server has not had ``ack_wait`` to deliver again."""
    clock = Clock()
    place = InboxPlace(clock)
    place.reset(0)
    place.reading_from(0)
    seq = 0
    lost: list[tuple[int, float]] = []  # stream sequence, when it was lost
    for delivery, ((step, arrives), pause) in enumerate(zip(steps, pauses, strict=False), start=1):
        clock.now += pause
        seq += step
        if arrives:
            take(place, delivery, seq)
        else:
            lost.append((seq, clock.now))
        # Only a delivery that arrived after a lost one can reveal it, as on the wire.
        revealed = [(s, at) for s, at in lost if s < seq and arrives]
        for lost_seq, at in revealed:
            if clock.now - at < 30.0:  # not yet delivered again
                assert place.resume_after() < lost_seq
