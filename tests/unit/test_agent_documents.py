"""What programs and endpoints say back, read the same way by command-line and HTTP agents. Pure."""

from __future__ import annotations

import pytest

from shared.agent import NonRetryableError, TaskOutcome
from shared.agent.document import MAX_TEXT_RESULT, outcome_of_output, parse_outcome
from shared.agent.process import NOT_RETRYABLE_EXIT, ProcessFailed, exit_failure, parse_progress
from shared.agent.webhook import EndpointFailed, outcome_of_response


@pytest.mark.parametrize(
    ("line", "progress"),
    [
        ("progress 40 reading the diff", (40.0, "reading the diff")),
        ("progress 12.5%", (12.5, "")),
        ("  progress 100 done  ", (100.0, "done")),
        ("progress", None),
        ("progress forty", None),
        ("in progress 40", None),
        ("Progress 40", None),
    ],
)
def test_only_a_progress_line_reports_progress(line: str, progress: tuple[float, str] | None) -> None:
    assert parse_progress(line) == progress


def test_the_last_outcome_line_of_stdout_is_the_outcome() -> None:
    output = (
        'thinking...\n{"result": "first"}\n{"not": "an outcome"}\n{"result": {"n": 2}, "quality": 0.8}\nbye\n'
    )
    assert outcome_of_output(output) == TaskOutcome(result={"n": 2}, quality=0.8)


def test_without_an_outcome_line_the_text_is_the_result() -> None:
    assert outcome_of_output("LGTM\n") == TaskOutcome(result="LGTM")
    assert outcome_of_output("  \n") == TaskOutcome(result=None)
    long = "x" * (MAX_TEXT_RESULT + 10)
    assert outcome_of_output(long).result == "x" * MAX_TEXT_RESULT


def test_an_outcome_with_a_bad_quality_fails_for_good() -> None:
    with pytest.raises(NonRetryableError, match="invalid outcome"):
        outcome_of_output('{"result": 1, "quality": 1.5}')
    with pytest.raises(NonRetryableError, match="invalid outcome"):
        parse_outcome('{"result": 1, "quality": "high"}')


def test_exit_code_2_is_final_and_other_failures_are_retried() -> None:
    final = exit_failure("review.sh", NOT_RETRYABLE_EXIT, ["no such file: a.py"])
    assert isinstance(final, NonRetryableError)
    assert str(final) == "review.sh exited with 2: no such file: a.py (exit code 2: not retryable)"
    again = exit_failure("review.sh", 1, ["rate limited", "try later"])
    assert (
        isinstance(again, ProcessFailed) and str(again) == "review.sh exited with 1: rate limited | try later"
    )
    killed = exit_failure("review.sh", -9, [])
    assert isinstance(killed, ProcessFailed) and str(killed) == "review.sh was killed by SIGKILL"


def test_a_2xx_response_completes_with_its_outcome_or_its_body() -> None:
    assert outcome_of_response(200, b'{"result": [1], "quality": 0.4}', "application/json") == TaskOutcome(
        result=[1], quality=0.4
    )
    assert outcome_of_response(200, b'{"comments": 2}', "application/json") == TaskOutcome(
        result={"comments": 2}
    )
    assert outcome_of_response(201, b"done", "text/plain") == TaskOutcome(result="done")
    assert outcome_of_response(204, b"", "") == TaskOutcome()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error", "message"),
    [
        (
            400,
            b'{"error": "no diff"}',
            "application/json",
            NonRetryableError,
            'HTTP 400: {"error": "no diff"}',
        ),
        (404, b"", "", NonRetryableError, "HTTP 404"),
        (302, b"", "", NonRetryableError, "HTTP 302"),
        (200, b"{broken", "application/json", NonRetryableError, "HTTP 200 with invalid JSON"),
        (200, b'{"result": 1, "quality": 9}', "application/json", NonRetryableError, "invalid outcome"),
        (408, b"", "", EndpointFailed, "HTTP 408"),
        (429, b"slow down", "text/plain", EndpointFailed, "HTTP 429: slow down"),
        (503, b"", "", EndpointFailed, "HTTP 503"),
    ],
)
def test_a_failing_response_says_whether_to_retry(
    status: int, body: bytes, content_type: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        outcome_of_response(status, body, content_type)
    assert message in str(raised.value)
