"""How a handler's end becomes a report: a completion or a failed attempt. Pure.

One mapping for the SDK and the testing helper, so a test of a handler sees what Hive would store.
A result Hive could not store (not JSON, too large, a quality outside 0..1) fails the attempt for
good, with the reason, instead of being refused downstream and leaving the task to time out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from shared.agent.context import TaskOutcome
from shared.agent.errors import NonRetryableError
from shared.events import FailureType

MAX_RESULT_BYTES: Final = 512 * 1024
"""A result's size once JSON-encoded, at most: the whole event must fit in one NATS message (1 MiB
by default)."""


@dataclass(frozen=True)
class Failure:
    """A failed attempt as ``task.attempt_failed`` says it."""

    error: str
    failure_type: FailureType = "agent_error"
    retryable: bool = True


def describe(exc: BaseException) -> str:
    """``Type: message`` (or the type alone when the message is empty)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def failure_of(exc: BaseException) -> Failure:
    """The failure a handler's exception stands for; only ``NonRetryableError`` is final."""
    return Failure(error=describe(exc), retryable=not isinstance(exc, NonRetryableError))


def timed_out(timeout_s: float) -> Failure:
    """The handler ran past the task's timeout (it was cancelled then); another attempt may do better."""
    return Failure(
        error=f"TimeoutError: the attempt ran past its timeout of {timeout_s:g} s",
        failure_type="task_timeout",
    )


def settle(value: Any) -> TaskOutcome | Failure:
    """What a handler returned, as a completion; a result Hive cannot store, as a final failure."""
    outcome = value if isinstance(value, TaskOutcome) else TaskOutcome(result=value)
    quality = outcome.quality
    if quality is not None:
        if isinstance(quality, bool) or not isinstance(quality, int | float) or not 0.0 <= quality <= 1.0:
            return Failure(error=f"quality must be from 0 to 1 or None, not {quality!r}", retryable=False)
        outcome = TaskOutcome(result=outcome.result, quality=float(quality))
    try:
        size = len(msgspec.json.encode(outcome.result))
    except (TypeError, ValueError, OverflowError) as exc:
        return Failure(error=f"the result is not JSON-encodable: {exc}", retryable=False)
    if size > MAX_RESULT_BYTES:
        return Failure(
            error=f"the result is {size} bytes encoded, more than {MAX_RESULT_BYTES}: store it elsewhere "
            "and return where",
            retryable=False,
        )
    return outcome


def missing_handler(agent_id: str, task_type: str, handled: Iterable[str]) -> Failure:
    """An assignment of a type the agent has no handler for: final (retrying here cannot help)."""
    known = ", ".join(sorted(handled)) or "none"
    return Failure(
        error=f"agent {agent_id!r} has no handler for task type {task_type!r} (it handles: {known}); "
        f"add one with @agent.handles({task_type!r}) or remove the capability",
        retryable=False,
    )
