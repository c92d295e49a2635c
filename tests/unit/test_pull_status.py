"""What a status on a pull request's reply says, as ``consume`` and ``consume_stored`` both judge it."""

from __future__ import annotations

from shared.pull import PENDING_MESSAGES, ConsumerLost, after_status


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
