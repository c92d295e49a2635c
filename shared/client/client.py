"""``HiveClient``: Hive's HTTP gateway from async Python, one typed method per endpoint.

It needs only ``httpx`` and ``msgspec`` (no NATS, Litestar, Prometheus or OpenTelemetry), so an
application that submits work imports nothing of the server. Errors are ``HiveError``s: the
gateway's ``{"error": {...}}`` as ``HiveApiError``, an unreachable gateway as ``HiveConnectionError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from shared.client.errors import HiveApiError, HiveConnectionError, HiveError, HiveTimeoutError
from shared.client.models import (
    Agent,
    AgentRegistration,
    BreakerResetDone,
    BreakerStatus,
    Cancelled,
    CircuitBreakers,
    ErrorResponse,
    EventPage,
    FailureEvent,
    FailureHandled,
    Health,
    KeyState,
    LimitChange,
    Limits,
    LoadOptimization,
    Metrics,
    MetricsHistory,
    OptimizeRequest,
    Predictions,
    RegisteredAgent,
    Schedule,
    ScheduleChange,
    ScheduleRequest,
    ScheduleSummary,
    Task,
    TaskAssignment,
    TaskPage,
    TaskRequest,
    TaskSummary,
    Validation,
    WorkflowAccepted,
    WorkflowChange,
    WorkflowPage,
    WorkflowRequest,
    WorkflowStatus,
    WorkflowTask,
)

T = TypeVar("T")
Body = msgspec.Struct | Mapping[str, Any]

API = "/api/v1"
ORCHESTRATION = f"{API}/orchestration"
DEFAULT_URL = "http://127.0.0.1:8000"


def _segment(value: str) -> str:
    """An id as one path segment (ids are letters, digits, '_' and '-'; anything else is escaped)."""
    return quote(value, safe="")


class HiveClient:
    """Async client of a Hive gateway. Use it as ``async with HiveClient(url, token=...) as hive:``.

    `token` is the gateway's HIVE_API_TOKEN (sent as ``Authorization: Bearer``); `timeout` bounds
    each HTTP request; `http` lets you bring your own ``httpx.AsyncClient`` (its base URL is used).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        headers = {"user-agent": "hive-client"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._owned = http is None
        self._http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._http.headers.update(headers)

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    async def __aenter__(self) -> HiveClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    # --- tasks ----------------------------------------------------------------------------------

    async def assign_task(self, task: TaskRequest | Mapping[str, Any]) -> TaskAssignment:
        """Submit a task; the answer says which agent got it and why, or why it waits (``status``)."""
        return await self._call("POST", f"{ORCHESTRATION}/task/assign", TaskAssignment, body=task)

    async def get_task(self, task_id: str, *, after_seq: int | None = None) -> Task:
        """A task's status and every routing decision; `after_seq` waits until the gateway read that far."""
        params = {"after_seq": after_seq}
        return await self._call("GET", f"{API}/tasks/{_segment(task_id)}", Task, params=params)

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        task_type: str | None = None,
        agent_id: str | None = None,
        workflow_id: str | None = None,
        priority: str | None = None,
        submitted_after: float | None = None,
        submitted_before: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        after_seq: int | None = None,
    ) -> TaskPage:
        """One page of tasks of any age, newest submission first; pass ``next_cursor`` as `cursor`."""
        params = {
            "status": status,
            "task_type": task_type,
            "agent_id": agent_id,
            "workflow_id": workflow_id,
            "priority": priority,
            "submitted_after": submitted_after,
            "submitted_before": submitted_before,
            "limit": limit,
            "cursor": cursor,
            "after_seq": after_seq,
        }
        return await self._call("GET", f"{API}/tasks", TaskPage, params=params)

    async def iter_tasks(self, **filters: Any) -> AsyncIterator[TaskSummary]:
        """Every task the filters of ``list_tasks`` match, page after page (each task once)."""
        cursor: str | None = None
        while True:
            page = await self.list_tasks(**filters, cursor=cursor)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
            filters.pop("after_seq", None)

    async def events(
        self,
        *,
        aggregate: str | None = None,
        aggregate_id: str | None = None,
        type: str | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> EventPage:
        """The log as a timeline (what ``hive replay`` prints): one aggregate, id or type, in order."""
        params = {
            "aggregate": aggregate,
            "id": aggregate_id,
            "type": type,
            "after_seq": after_seq,
            "limit": limit,
            "cursor": cursor,
        }
        return await self._call("GET", f"{API}/events", EventPage, params=params)

    async def cancel_task(self, task_id: str, reason: str | None = None) -> Cancelled:
        body = {"reason": reason} if reason is not None else {}
        return await self._call("POST", f"{API}/tasks/{_segment(task_id)}/cancel", Cancelled, body=body)

    async def wait_for_task(self, task_id: str, *, timeout: float = 60.0, poll_s: float = 0.1) -> Task:
        """Poll until the task has ended (completed, failed, cancelled); HiveTimeoutError after `timeout`."""
        return await _poll(
            lambda: self.get_task(task_id), lambda t: t.ended, timeout, poll_s, f"task {task_id}"
        )

    # --- agents ---------------------------------------------------------------------------------

    async def register_agent(self, agent: AgentRegistration | Mapping[str, Any]) -> RegisteredAgent:
        return await self._call("POST", f"{API}/agents", RegisteredAgent, body=agent)

    async def list_agents(self, *, status: str | None = None, capability: str | None = None) -> list[Agent]:
        params = {"status": status, "capability": capability}
        return await self._call("GET", f"{API}/agents", list[Agent], params=params)

    async def get_agent(self, agent_id: str) -> Agent:
        return await self._call("GET", f"{API}/agents/{_segment(agent_id)}", Agent)

    # --- workflows ------------------------------------------------------------------------------

    async def execute_workflow(self, workflow: WorkflowRequest | Mapping[str, Any]) -> WorkflowAccepted:
        """Submit a DAG of tasks; checked in full before anything is stored."""
        return await self._call("POST", f"{ORCHESTRATION}/workflow/execute", WorkflowAccepted, body=workflow)

    async def workflow_status(self, workflow_id: str, *, after_seq: int | None = None) -> WorkflowStatus:
        path = f"{ORCHESTRATION}/workflow/{_segment(workflow_id)}"
        return await self._call("GET", path, WorkflowStatus, params={"after_seq": after_seq})

    async def list_workflows(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        submitted_after: float | None = None,
        submitted_before: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        after_seq: int | None = None,
    ) -> WorkflowPage:
        """One page of workflows of any age, most recently submitted first."""
        params = {
            "status": status,
            "name": name,
            "submitted_after": submitted_after,
            "submitted_before": submitted_before,
            "limit": limit,
            "cursor": cursor,
            "after_seq": after_seq,
        }
        return await self._call("GET", f"{ORCHESTRATION}/workflows", WorkflowPage, params=params)

    async def add_workflow_task(
        self, workflow_id: str, task: WorkflowTask | Mapping[str, Any]
    ) -> WorkflowChange:
        path = f"{ORCHESTRATION}/workflow/{_segment(workflow_id)}/tasks"
        return await self._call("POST", path, WorkflowChange, body=task)

    async def cancel_workflow_task(
        self, workflow_id: str, task_id: str, reason: str | None = None
    ) -> WorkflowChange:
        path = f"{ORCHESTRATION}/workflow/{_segment(workflow_id)}/tasks/{_segment(task_id)}/cancel"
        body = {"reason": reason} if reason is not None else {}
        return await self._call("POST", path, WorkflowChange, body=body)

    async def cancel_workflow(self, workflow_id: str, reason: str | None = None) -> WorkflowChange:
        path = f"{ORCHESTRATION}/workflow/{_segment(workflow_id)}/cancel"
        body = {"reason": reason} if reason is not None else {}
        return await self._call("POST", path, WorkflowChange, body=body)

    async def wait_for_workflow(
        self, workflow_id: str, *, timeout: float = 60.0, poll_s: float = 0.2
    ) -> WorkflowStatus:
        """Poll until the workflow has ended; HiveTimeoutError after `timeout`."""
        return await _poll(
            lambda: self.workflow_status(workflow_id),
            lambda w: w.ended,
            timeout,
            poll_s,
            f"workflow {workflow_id}",
        )

    # --- schedules ------------------------------------------------------------------------------

    async def create_schedule(self, schedule: ScheduleRequest | Mapping[str, Any]) -> Schedule:
        """A cron or interval schedule firing a task or a workflow; checked in full before it is stored."""
        return await self._call("POST", f"{API}/schedules", Schedule, body=schedule)

    async def get_schedule(self, schedule_id: str, *, after_seq: int | None = None) -> Schedule:
        """A schedule with its next and recent firings."""
        path = f"{API}/schedules/{_segment(schedule_id)}"
        return await self._call("GET", path, Schedule, params={"after_seq": after_seq})

    async def list_schedules(
        self, *, status: str | None = None, limit: int | None = None
    ) -> list[ScheduleSummary]:
        params = {"status": status, "limit": limit}
        return await self._call("GET", f"{API}/schedules", list[ScheduleSummary], params=params)

    async def pause_schedule(self, schedule_id: str, reason: str | None = None) -> ScheduleChange:
        body = {"reason": reason} if reason is not None else {}
        path = f"{API}/schedules/{_segment(schedule_id)}/pause"
        return await self._call("POST", path, ScheduleChange, body=body)

    async def resume_schedule(self, schedule_id: str, reason: str | None = None) -> ScheduleChange:
        body = {"reason": reason} if reason is not None else {}
        path = f"{API}/schedules/{_segment(schedule_id)}/resume"
        return await self._call("POST", path, ScheduleChange, body=body)

    async def delete_schedule(self, schedule_id: str, reason: str | None = None) -> ScheduleChange:
        path = f"{API}/schedules/{_segment(schedule_id)}"
        return await self._call("DELETE", path, ScheduleChange, params={"reason": reason})

    # --- key limits -----------------------------------------------------------------------------

    async def set_concurrency_limit(
        self, pattern: str, max_running: int, *, strategy: str = "queue"
    ) -> LimitChange:
        """At most `max_running` tasks of each key matching `pattern` (a key or a glob) at once,
        fleet-wide; `strategy` over it: queue, cancel_newest or cancel_oldest."""
        body = {"pattern": pattern, "max_running": max_running, "strategy": strategy}
        return await self._call("PUT", f"{API}/limits/concurrency", LimitChange, body=body)

    async def remove_concurrency_limit(self, pattern: str) -> LimitChange:
        params = {"pattern": pattern}
        return await self._call("DELETE", f"{API}/limits/concurrency", LimitChange, params=params)

    async def set_rate_limit(
        self, pattern: str, limit: int, *, period_seconds: float = 60.0, burst: int | None = None
    ) -> LimitChange:
        """A token bucket per key matching `pattern`: `limit` units per `period_seconds`, at most
        `burst` (default `limit`) at once, shared by every router."""
        body: dict[str, Any] = {"pattern": pattern, "limit": limit, "period_seconds": period_seconds}
        if burst is not None:
            body["burst"] = burst
        return await self._call("PUT", f"{API}/limits/rate", LimitChange, body=body)

    async def remove_rate_limit(self, pattern: str) -> LimitChange:
        return await self._call("DELETE", f"{API}/limits/rate", LimitChange, params={"pattern": pattern})

    async def limits(self, *, after_seq: int | None = None) -> Limits:
        return await self._call("GET", f"{API}/limits", Limits, params={"after_seq": after_seq})

    async def key(self, key: str, *, after_seq: int | None = None) -> KeyState:
        """A key now: its limits, the tasks holding its slots, its waiting tasks, tokens, agent."""
        path = f"{API}/keys/{_segment(key)}"
        return await self._call("GET", path, KeyState, params={"after_seq": after_seq})

    # --- failures, breakers, prediction ---------------------------------------------------------

    async def handle_failure(self, event: FailureEvent | Mapping[str, Any]) -> FailureHandled:
        """Report a failure; the answer says what recovery did (``handled``) or will do (``reported``)."""
        return await self._call("POST", f"{ORCHESTRATION}/failure/handle", FailureHandled, body=event)

    async def circuit_breakers(
        self, *, status: BreakerStatus | None = None, agent_id: str | None = None
    ) -> CircuitBreakers:
        params = {"status": status, "agent_id": agent_id}
        return await self._call("GET", f"{ORCHESTRATION}/circuit-breakers", CircuitBreakers, params=params)

    async def reset_circuit_breaker(
        self, agent_id: str, *, requested_by: str | None = None
    ) -> BreakerResetDone:
        path = f"{ORCHESTRATION}/circuit-breakers/{_segment(agent_id)}/reset"
        body = {"requested_by": requested_by} if requested_by is not None else {}
        return await self._call("POST", path, BreakerResetDone, body=body)

    async def predict_failures(
        self, *, agent_id: str | None = None, time_horizon_minutes: float | None = None
    ) -> Predictions:
        params = {"agent_id": agent_id, "time_horizon_minutes": time_horizon_minutes}
        return await self._call("GET", f"{ORCHESTRATION}/recovery/predict", Predictions, params=params)

    # --- performance ----------------------------------------------------------------------------

    async def metrics(self, *, window_s: float | None = None) -> Metrics:
        params = {"window_s": window_s}
        return await self._call("GET", f"{ORCHESTRATION}/metrics", Metrics, params=params)

    async def metrics_history(self, *, since_s: float | None = None) -> MetricsHistory:
        params = {"since_s": since_s}
        return await self._call("GET", f"{ORCHESTRATION}/metrics/history", MetricsHistory, params=params)

    async def validate_performance(self, *, window_s: float | None = None) -> Validation:
        params = {"window_s": window_s}
        return await self._call("GET", f"{ORCHESTRATION}/performance/validate", Validation, params=params)

    async def optimize_load(
        self, request: OptimizeRequest | Mapping[str, Any] | None = None, **fields: Any
    ) -> LoadOptimization:
        """Ask the balancer to move work that waits unstarted: ``optimize_load(dry_run=True)``."""
        body: Body = request if request is not None else OptimizeRequest(**fields)
        return await self._call(
            "POST", f"{ORCHESTRATION}/load-balancing/optimize", LoadOptimization, body=body
        )

    # --- health and the rest --------------------------------------------------------------------

    async def health(self) -> Health:
        """Every service instance and NATS; ``status`` is ``degraded`` (HTTP 503) when one is missing."""
        return await self._call("GET", f"{ORCHESTRATION}/health", Health, also_ok=(503,))

    async def prometheus_metrics(self) -> str:
        """The gateway's ``/metrics`` in Prometheus's text format."""
        response = await self._send("GET", "/metrics", None, None)
        self._raise_for(response)
        return response.text

    async def openapi(self) -> dict[str, Any]:
        return await self._call("GET", f"{API}/schema/openapi.json", dict[str, Any])

    # --- plumbing -------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        body: Body | None = None,
        params: Mapping[str, str | int | float | None] | None = None,
        also_ok: tuple[int, ...] = (),
    ) -> T:
        response = await self._send(method, path, body, params)
        if response.status_code not in also_ok:
            self._raise_for(response)
        try:
            return msgspec.json.decode(response.content, type=answer)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise HiveError(f"{method} {path}: unexpected answer ({exc}): {response.text[:300]}") from exc

    async def _send(
        self, method: str, path: str, body: Body | None, params: Mapping[str, str | int | float | None] | None
    ) -> httpx.Response:
        query = {name: value for name, value in (params or {}).items() if value is not None}
        content = msgspec.json.encode(body) if body is not None else None
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            return await self._http.request(method, path, content=content, params=query, headers=headers)
        except httpx.TransportError as exc:
            raise HiveConnectionError(f"{method} {self._http.base_url}{path}: {exc!r}") from exc

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            error = msgspec.json.decode(response.content, type=ErrorResponse).error
        except msgspec.DecodeError:
            raise HiveApiError(
                response.status_code, "http_error", response.text[:300] or response.reason_phrase
            ) from None
        raise HiveApiError(error.status, error.code, error.message, error.field, error.details)


class _Status(Protocol):
    @property
    def status(self) -> str: ...


S = TypeVar("S", bound=_Status)


async def _poll(
    fetch: Callable[[], Awaitable[S]], done: Callable[[S], bool], timeout: float, poll_s: float, what: str
) -> S:
    """Fetch until `done(answer)`; the gateway has no push channel, so a client polls."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await fetch()
        if done(answer):
            return answer
        if time.monotonic() >= deadline:
            raise HiveTimeoutError(f"{what} still {answer.status} after {timeout}s")
        await asyncio.sleep(poll_s)
