"""Acknowledgements of inbox messages, without a socket write of their own.

An agent acknowledges each inbox message once it is handled (an assignment once its handler runs,
or once its start is stored when it arrived late): never earlier, so what is lost in transit comes
again. Sent at once, each acknowledgement took a socket write of its own on the agent's side and a
read of its own on the server's whenever assignments arrive apart (the usual case: a few a second
per agent). On Hive's client an acknowledgement is queued on the connection (``publish_soon``) and
leaves with its next write: the agent's next append (a task's completion, mostly), pull request or
heartbeat, or ``DEFERRED_WRITE_S`` (50 ms) later if none comes. Before, they were held for
``ACK_LINGER_S`` and then left together in a write of their own (a timer and a task per batch, a
coroutine per acknowledgement): at 500 assignments a second, one write in six of the agents'
process carried acknowledgements only.

On another client (nats-py's own) the acknowledgements due on one connection are held for at most
``ACK_LINGER_S`` and leave in one turn of the event loop, hence in one write.

Nothing waits for them: the server redelivers only after the inbox's ``ack_wait`` (30 s), and the
agent's heartbeats say what it handled (``received_seq``). ``flush`` sends what is held at once
(an agent stopping). An acknowledgement that cannot be sent (the connection closed) is dropped:
the message comes again after ``ack_wait`` if the inbox still exists, and an assignment already in
hand or superseded is then only acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Final

import nats.errors
from nats.aio.client import Client as NatsClient

from shared.logging import get_logger
from shared.natsclient import HiveNatsClient

ACK_LINGER_S: Final = 0.02
"""How long an acknowledgement may wait for others to leave with it (another client than Hive's)."""
ACK_HELD_MAX: Final = 64
"""Sent at once when this many are held: an inbox lets capacity + 64 messages wait unacknowledged."""

log = get_logger("hive.agent.acks")


class AckBatch:
    """The acknowledgements of one connection."""

    def __init__(self, *, linger_s: float | None = None, held_max: int | None = None) -> None:
        self.linger_s = ACK_LINGER_S if linger_s is None else linger_s
        self.held_max = ACK_HELD_MAX if held_max is None else held_max
        self._held: list[tuple[NatsClient, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._queued: weakref.WeakSet[NatsClient] = weakref.WeakSet()
        """Hive's connections an acknowledgement was queued on since the last ``flush``."""

    @property
    def held(self) -> int:
        return len(self._held)

    def add(self, nc: NatsClient, reply: str) -> None:
        """Acknowledge the delivery whose reply subject is `reply`, received on `nc`: with the
        connection's next write (Hive's client), else within ``linger_s`` with whatever else is
        due by then."""
        if isinstance(nc, HiveNatsClient):
            try:
                nc.publish_soon(reply)
            except nats.errors.Error as exc:  # closed or draining: the message comes again if it must
                log.debug("ack_dropped", reply=reply, error=repr(exc))
                return
            if nc not in self._queued:  # a new weak reference for each add otherwise
                self._queued.add(nc)
            return
        self._held.append((nc, reply))
        if len(self._held) >= self.held_max:
            self._send_held()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._send_held)

    async def flush(self) -> None:
        """Send what is held or queued now, and wait until every acknowledgement taken so far has
        been sent."""
        self._send_held()
        queued = list(self._queued)
        self._queued = weakref.WeakSet()
        for client in queued:
            if isinstance(client, HiveNatsClient) and client.is_connected:
                with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                    await client.flush(timeout=2)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _send_held(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._held:
            return
        held, self._held = self._held, []
        task = asyncio.get_running_loop().create_task(_send(held))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)


async def _send(held: list[tuple[NatsClient, str]]) -> None:
    """Publish every acknowledgement in one go (no await yields between them: one write)."""
    for nc, reply in held:
        try:
            await nc.publish(reply)
        except nats.errors.Error as exc:  # closed or draining: the message comes again if it must
            log.debug("ack_dropped", reply=reply, error=repr(exc))


_batches: weakref.WeakKeyDictionary[NatsClient, AckBatch] = weakref.WeakKeyDictionary()


def ack_batch(nc: NatsClient) -> AckBatch:
    """The batch of the connection `nc`, shared by every agent on it."""
    batch = _batches.get(nc)
    if batch is None:
        batch = _batches[nc] = AckBatch()
    return batch


__all__ = ["ACK_HELD_MAX", "ACK_LINGER_S", "AckBatch", "ack_batch"]
