"""The task as JSON for programs outside Python, and their answer back as an outcome. Pure.

Command-line agents (``hive agent exec``) get the task document on stdin, HTTP agents
(``hive agent http``) as the request body; both answer with an outcome document
``{"result": <any JSON>, "quality": <0..1 or null>}``. One shape for both, written here once.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from shared.agent.context import TaskContext, TaskOutcome
from shared.agent.errors import NonRetryableError
from shared.events import Unit

MAX_TEXT_RESULT: Final = 64 * 1024
"""Characters of plain-text output kept as the result when a program answers no outcome document."""


class TaskDocument(msgspec.Struct, frozen=True, kw_only=True):
    """What a program is given: one attempt of one task."""

    task_id: str
    task_type: str
    attempt: int
    agent_id: str
    payload: dict[str, Any]
    timeout_s: float
    deadline: float
    """Unix time by which the attempt must end: the program is stopped then."""


class OutcomeDocument(msgspec.Struct, frozen=True, kw_only=True):
    """What a program answers; other fields are ignored."""

    result: Any = None
    quality: Unit | None = None


_outcome = msgspec.json.Decoder(OutcomeDocument)


def task_document(task: TaskContext) -> TaskDocument:
    return TaskDocument(
        task_id=task.task_id,
        task_type=task.task_type,
        attempt=task.attempt,
        agent_id=task.agent_id,
        payload=task.payload,
        timeout_s=task.timeout_s,
        deadline=task.deadline,
    )


def encode_task(task: TaskContext) -> bytes:
    return msgspec.json.encode(task_document(task))


def is_outcome_line(line: str) -> bool:
    """A JSON object with a ``result`` key: how an outcome document is told from other output."""
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return False
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return False
    return isinstance(value, dict) and "result" in value


def parse_outcome(text: str) -> TaskOutcome:
    """An outcome document; NonRetryableError naming the fault when it is not a valid one."""
    try:
        document = _outcome.decode(text)
    except msgspec.DecodeError as exc:
        raise NonRetryableError(f"invalid outcome {shorten(text)!r}: {exc}") from None
    return TaskOutcome(result=document.result, quality=document.quality)


def outcome_of_output(output: str) -> TaskOutcome:
    """The outcome in a program's output: its last outcome line, else the text itself as the result
    (its last ``MAX_TEXT_RESULT`` characters; None when empty), without a quality."""
    lines = output.splitlines()
    for line in reversed(lines):
        if is_outcome_line(line):
            return parse_outcome(line)
    text = output.strip()
    return TaskOutcome(result=text[-MAX_TEXT_RESULT:] if text else None)


def shorten(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
