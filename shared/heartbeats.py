"""Feeds a HeartbeatTable from core NATS: ``hive.hb.*`` beats and nats-server disconnect advisories.

The table (``shared/domain/heartbeats.py``) is pure; this is its only I/O. Advisories arrive only
when the server publishes them into the client's account (the embedded server does, see
``shared/embedded.py``); without them, missed heartbeats remain the way a dead agent is noticed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from shared.domain.heartbeats import (
    DISCONNECT_ADVISORIES,
    HeartbeatDecodeError,
    HeartbeatTable,
    decode_heartbeat,
    parse_disconnect,
)
from shared.subjects import ALL_HEARTBEATS

BadBeat = Callable[[str, bytes, str], Awaitable[None]]
"""(subject, data, reason) of a message on a heartbeat subject that is not a valid heartbeat."""


class HeartbeatListener:
    def __init__(
        self,
        nc: NatsClient,
        table: HeartbeatTable,
        *,
        clock: Callable[[], float] = time.time,
        on_bad: BadBeat | None = None,
        on_disconnect: Callable[[list[str]], None] | None = None,
        on_recorded: Callable[[str], None] | None = None,
    ) -> None:
        self.nc = nc
        self.table = table
        self.clock = clock
        self.on_bad = on_bad
        self.on_disconnect = on_disconnect
        self.on_recorded = on_recorded
        self.beats = 0
        self.bad = 0
        self.disconnects = 0
        self._subs: list[Any] = []

    async def start(self) -> None:
        self._subs.append(await self.nc.subscribe(ALL_HEARTBEATS, cb=self._on_beat))
        self._subs.append(await self.nc.subscribe(DISCONNECT_ADVISORIES, cb=self._on_advisory))
        await self.nc.flush()

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        self._subs.clear()

    async def _on_beat(self, msg: Msg) -> None:
        try:
            beat = decode_heartbeat(msg.subject, msg.data)
        except HeartbeatDecodeError as exc:
            self.bad += 1
            if self.on_bad is not None:
                await self.on_bad(msg.subject, msg.data, str(exc))
            return
        self.beats += 1
        self.table.record(beat, self.clock())
        if self.on_recorded is not None:
            self.on_recorded(beat.agent_id)

    async def _on_advisory(self, msg: Msg) -> None:
        parsed = parse_disconnect(msg.data)
        if parsed is None:
            return
        self.disconnects += 1
        connection, reason = parsed
        agents = self.table.connection_closed(connection, reason, self.clock())
        if agents and self.on_disconnect is not None:
            self.on_disconnect(agents)
