"""What a status on a pull request's reply says, as ``consume`` and ``consume_stored`` both judge it; when
a burst read the log to its end."""

from __future__ import annotations

from shared.pull import PENDING_MESSAGES, SUSPECT_END_S, ConsumerLost, after_status, at_the_end


def test_a_request_that_expired_or_was_cut_gives_back_the_messages_it_did_not_deliver() -> None:
    assert after_status("408", {PENDING_MESSAGES: "30"}, 100) == 70
    assert after_status("409", {PENDING_MESSAGES: "100"}, 100) == 0


def test_no_messages_leaves_nothing_pending() -> None:
    assert after_status("404", {}, 57) == 0


def test_any_other_status_or_one_without_a_count_is_the_consumer_lost_with_its_description() -> None:
    verdict = after_status("409", {"Description": "Consumer Deleted"}, 10)
    assert isinstance(verdict, ConsumerLost)
    assert str(verdict) == "status 409: Consumer Deleted"
    assert isinstance(after_status("503", {}, 0), ConsumerLost)


def test_a_burst_ends_at_an_empty_answer_or_nothing_pending_after_a_message_stored_just_before() -> None:
    """A busy server says "nothing pending" of a consumer seconds behind the log: a burst whose last
    message was stored well before it was asked for is followed by another request at once."""
    assert at_the_end(received=0, left=0, asked_at=100.0, stored_at=0.0)
    assert at_the_end(received=40, left=0, asked_at=100.0, stored_at=100.0 - SUSPECT_END_S / 2)
    assert not at_the_end(received=40, left=3, asked_at=100.0, stored_at=100.0)
    assert not at_the_end(received=1, left=0, asked_at=100.0, stored_at=97.5)
    assert not at_the_end(received=1, left=0, asked_at=100.0, stored_at=100.0 - 2 * SUSPECT_END_S)
