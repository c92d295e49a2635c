"""HTTP agents: each task posted to a URL (``hive agent http --url URL``).

For services that cannot hold a NATS connection (serverless functions, services in other stacks):
the agent holds it for them and, per task, sends ``POST URL`` with the task document
(``shared/agent/document.py``) as JSON and the headers ``Hive-Task-Id``, ``Hive-Task-Type``,
``Hive-Attempt`` and ``Idempotency-Key: <task_id>:<attempt>`` (the same for a redelivery of the same
attempt). The response is the outcome:

* **2xx**: completed; a JSON body ``{"result": ..., "quality": 0..1}`` gives both, any other
  body is the result itself (JSON, or text), an empty one none;
* **408, 429, 5xx**, no answer, a refused connection, or no response before the task's deadline:
  failed, retryable (Hive retries per the task's retry policy, maybe with another agent);
* **any other status** (4xx, a redirect): failed, not retryable (the service says the task
  itself is wrong, or the URL is).

Taken away by Hive (recovery, a cancelled task) or the agent stopping, the request is abandoned
(its connection closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import httpx
import msgspec

from shared.agent.context import TaskContext, TaskOutcome
from shared.agent.document import encode_task, parse_outcome, shorten
from shared.agent.errors import NonRetryableError
from shared.agent.handlers import Handler
from shared.logging import get_logger

RETRYABLE_4XX: Final = frozenset({408, 429})
"""Client errors that mean "not now" (timeout, rate limit) rather than "never"."""

log = get_logger("hive.agent.http")


class EndpointFailed(Exception):
    """The endpoint failed in a way another try may not (5xx, 408, 429, timeout, no connection)."""


@dataclass(frozen=True)
class EndpointSpec:
    """Where tasks go.

    Args:
        url: The endpoint every task is posted to.
        headers: Extra request headers (e.g. ``Authorization``).
        connect_timeout_s: How long to wait for a connection; the whole request is bounded by the
            task's deadline.
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    connect_timeout_s: float = 10.0


def outcome_of_response(status: int, body: bytes, content_type: str) -> TaskOutcome:
    """What a response means: an outcome (2xx) or the failure to raise (``EndpointFailed`` retries,
    ``NonRetryableError`` does not). Pure."""
    text = body.decode("utf-8", "replace")
    if 200 <= status < 300:
        if not text.strip():
            return TaskOutcome()
        try:
            value = msgspec.json.decode(body)
        except msgspec.DecodeError:
            if "json" in content_type:
                raise NonRetryableError(f"HTTP {status} with invalid JSON: {shorten(text)!r}") from None
            return TaskOutcome(result=text)
        if isinstance(value, dict) and "result" in value:
            return parse_outcome(text)
        return TaskOutcome(result=value)
    said = f"HTTP {status}" + (f": {shorten(text)}" if text.strip() else "")
    if status in RETRYABLE_4XX or status >= 500:
        raise EndpointFailed(said)
    raise NonRetryableError(said)


async def post_task(client: httpx.AsyncClient, spec: EndpointSpec, task: TaskContext) -> TaskOutcome:
    """Post one task and return its outcome, or raise what the response means."""
    headers = {
        **spec.headers,
        "Content-Type": "application/json",
        "Hive-Task-Id": task.task_id,
        "Hive-Task-Type": task.task_type,
        "Hive-Attempt": str(task.attempt),
        "Idempotency-Key": f"{task.task_id}:{task.attempt}",
    }
    # The SDK ends the attempt at its deadline; this bound only keeps a request from outliving it.
    timeout = httpx.Timeout(
        task.remaining_s() + 1.0, connect=min(spec.connect_timeout_s, task.remaining_s() + 1.0)
    )
    try:
        response = await client.post(spec.url, content=encode_task(task), headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise EndpointFailed(f"no response from {spec.url} in time ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise EndpointFailed(f"{spec.url} unreachable: {type(exc).__name__}: {exc}") from None
    log.info("endpoint_answered", task_id=task.task_id, attempt=task.attempt, status=response.status_code)
    return outcome_of_response(
        response.status_code, response.content, response.headers.get("content-type", "")
    )


def endpoint_handler(spec: EndpointSpec, client: httpx.AsyncClient) -> Handler:
    """A handler posting every task to `spec`'s URL through `client` (one pool for all tasks)."""

    async def handle(task: TaskContext) -> TaskOutcome:
        return await post_task(client, spec, task)

    return handle
