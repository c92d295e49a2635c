"""The gateway's core: what every desk reads and writes through.

The bus (appends, and reads of the log), the gateway's projection (answers without the log), the
settings, and the reads more than one desk needs: a task from the projection or, once the
projection no longer keeps it, from the task's own events (``find_task``); and read-your-writes
(``wait_for_seq``). The desks (tasks, agents, workflows, recovery, performance, health, monitor) each
take the core (the monitor also the performance desk, whose figures it samples); none knows the
service that assembles them.
"""

from __future__ import annotations

from services.gateway.errors import ApiError
from services.gateway.view import GatewayState
from shared.bus import EventBus
from shared.domain.fleet import FLEET_SPEC, TaskView
from shared.projection import ProjectionRunner
from shared.projection_spec import fold
from shared.settings import Settings

READ_WAIT_S = 5.0
"""How long a read with ``after_seq`` may wait for this gateway to catch up, by default."""


class GatewayCore:
    def __init__(self, bus: EventBus, view: ProjectionRunner[GatewayState], settings: Settings) -> None:
        self.bus = bus
        self.view = view
        self.settings = settings
        self.read_wait_s = READ_WAIT_S

    async def find_task(self, task_id: str) -> TaskView:
        """The task as the projection keeps it, else folded from its events; 404 when it never was."""
        task = self.view.state.fleet.tasks.get(task_id)
        if task is not None:
            return task
        events, _last = await self.bus.read_aggregate("task", task_id)
        if not events:
            raise ApiError(404, "not_found", f"task {task_id!r} does not exist")
        fleet = fold(FLEET_SPEC, events)
        found = fleet.tasks.get(task_id)
        if found is None:
            raise ApiError(404, "not_found", f"task {task_id!r} does not exist")
        return found

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
        timeout = self.read_wait_s
        try:
            await self.view.wait_for(seq, timeout)
        except TimeoutError:
            raise ApiError(503, "unavailable", f"not caught up to sequence {seq} within {timeout}s") from None
