"""The gateway's core: what every desk reads and writes through.

The bus (appends, and reads of the log), the gateway's projection (answers about work in flight,
without the log), the query model (every task, workflow and agent of any age, in SQLite), the
settings, and the reads more than one desk needs: read-your-writes (``wait_for_seq``,
``own_writes_applied``, ``query_ready``), a task from the projection or the query model
(``find_task``), and the 404 that says why something is not there (``missing``). The desks
(tasks, agents, workflows, events, recovery, performance, health, monitor) each take the core (the
monitor also the performance desk, whose figures it samples); none knows the service that
assembles them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from services.gateway.errors import ApiError
from services.gateway.query.model import QueryModel
from services.gateway.view import GatewayState
from shared.bus import EventBus
from shared.domain.fleet import TaskView
from shared.projection import ProjectionRunner
from shared.settings import Settings
from shared.subjects import aggregate_subjects

READ_WAIT_S = 5.0
"""How long a read may wait for this gateway to catch up (with ``after_seq``), by default."""


class GatewayCore:
    def __init__(
        self, bus: EventBus, view: ProjectionRunner[GatewayState], query: QueryModel, settings: Settings
    ) -> None:
        self.bus = bus
        self.view = view
        self.query = query
        self.settings = settings
        self.read_wait_s = READ_WAIT_S

    async def wait_for_seq(self, seq: int) -> None:
        """Read-your-writes: wait until this gateway has applied the log up to `seq` (503 if it does
        not within ``read_wait_s``; 400 at once when the log does not reach `seq`)."""
        if seq <= self.view.seq:
            return
        last = await self.bus.last_sequence()
        if seq > last:
            raise ApiError(
                400,
                "invalid_field",
                f"after_seq {seq} is beyond the end of the log (its last sequence is {last})",
                "after_seq",
            )
        await self._applied(seq)

    async def _applied(self, seq: int) -> None:
        timeout = self.read_wait_s
        try:
            await self.view.wait_for(seq, timeout)
        except TimeoutError:
            raise ApiError(503, "unavailable", f"not caught up to sequence {seq} within {timeout}s") from None

    async def own_writes_applied(self) -> None:
        """Before a read answers: this gateway has applied every write it acknowledged (503 if not
        within ``read_wait_s``). Its projection reads the log in bursts (``READ_LINGER_S``), so a
        read right after a write through the same gateway would otherwise miss it; writes made
        elsewhere show within the linger, or at once with ``after_seq``."""
        written = self.bus.last_appended
        if written > self.view.seq:
            await self._applied(written)

    async def caught_up_on(self, aggregate: str, aggregate_id: str) -> bool:
        """Whether the log holds events of the aggregate, once this gateway has applied all of them
        (waited for, 503 if they do not come in time). Before a command decides, and before a read
        answers 404: an answer never comes from a view that is behind the log. True even when they
        were applied already: a caller that missed the aggregate a moment ago looks again (the view
        may have applied it between that look and this question)."""
        last = await self.bus.aggregate_version(aggregate, aggregate_id)
        if last > self.view.seq:
            await self.wait_for_seq(last)
        return last > 0

    async def knows_agent(self, agent_id: str) -> bool:
        """Whether the agent is registered, as the log says now (one registered a moment ago, not
        yet applied here, is waited for)."""
        if agent_id in self.view.state.fleet.agents:
            return True
        return await self.caught_up_on("agent", agent_id) and agent_id in self.view.state.fleet.agents

    async def query_ready(self, after_seq: int | None = None) -> None:
        """Before reading the query model: wait until it holds everything this gateway has applied
        (and `after_seq`, a sequence a write elsewhere returned: see ``wait_for_seq``); 503 if it
        does not in time."""
        if after_seq is not None:
            await self.wait_for_seq(after_seq)
        target = max(after_seq or 0, self.view.seq)
        timeout = self.read_wait_s
        try:
            await self.query.flushed_to(target, timeout)
        except TimeoutError:
            state = "rebuilding from the log" if not self.query.attached else "behind"
            raise ApiError(
                503,
                "unavailable",
                f"not caught up to sequence {target} within {timeout}s (the query model is {state}, "
                f"at sequence {self.query.flushed}); retry later",
            ) from None

    async def find_task(self, task_id: str) -> TaskView:
        """The task as the projection keeps it (every task not ended is there), else as the query
        model holds it; 404 with the reason when neither does."""
        task = self.view.state.fleet.tasks.get(task_id)
        if task is not None:
            return task
        return await self.stored_task(task_id)

    async def stored_task(self, task_id: str, after_seq: int | None = None) -> TaskView:
        """The task as the query model holds it, once it holds what this gateway has applied (and
        `after_seq`); a task the log holds but this gateway has not read yet is waited for."""
        await self.query_ready(after_seq)
        found = await self.query.store.task(task_id)
        if found is None and await self.caught_up_on("task", task_id):
            await self.query_ready()
            found = await self.query.store.task(task_id)
        if found is None:
            raise await self.missing("task", task_id)
        return found

    async def missing(self, aggregate: str, aggregate_id: str) -> ApiError:
        """A 404 saying why: unknown, or ended before the query model's retention (and whether the
        log still holds its events), or older than the log itself."""
        name = f"{aggregate} {aggregate_id!r}"
        purged_before = self.query.purged_before_ts
        bounds = await self.bus.log_bounds()
        in_log = await self.bus.last_sequence_of(aggregate_subjects(aggregate, aggregate_id)) > 0
        retention = self.settings.query_retention_s
        if in_log and purged_before:
            return ApiError(
                404,
                "not_found",
                f"{name} ended before {_iso(purged_before)} and is no longer kept by the query model "
                f"(QUERY_RETENTION_S={retention:g}); its events are still in the log: "
                f"GET /api/v1/events?aggregate={aggregate}&id={aggregate_id}",
                details=[{"reason": "retention", "ended_before_ts": purged_before, "in_log": True}],
            )
        if purged_before or bounds.first_seq > 1:
            kept = []
            if purged_before:
                kept.append(
                    f"the query model forgets work ended before {_iso(purged_before)} "
                    f"(QUERY_RETENTION_S={retention:g})"
                )
            if bounds.first_seq > 1:
                kept.append(
                    f"the log no longer holds its first {bounds.first_seq - 1} events "
                    f"(STREAM_MAX_AGE_S={self.settings.stream_max_age_s:g})"
                )
            return ApiError(
                404,
                "not_found",
                f"{name} does not exist, or is older than what is kept: {'; '.join(kept)}",
                details=[
                    {
                        "reason": "unknown_or_forgotten",
                        "ended_before_ts": purged_before or None,
                        "log_first_seq": bounds.first_seq,
                    }
                ],
            )
        return ApiError(404, "not_found", f"{name} does not exist", details=[{"reason": "unknown"}])


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")
