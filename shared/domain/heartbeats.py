"""Heartbeats as an observer sees them: a table of when each agent was last heard. Pure.

Heartbeats are signals, never stored; every observer (each recovery instance, the gateway) keeps its
own table, fed from ``hive.hb.<agent_id>`` and from NATS disconnect advisories. Times are the
observer's own clock (``now`` passed in): an agent's clock may disagree, so its ``ts`` is only shown.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

JITTER_SAMPLES = 32
"""Inter-arrival intervals kept per agent to measure heartbeat jitter."""


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Body of a heartbeat on ``hive.hb.<agent_id>``: a signal, never stored."""

    agent_id: str
    session: str
    ts: float
    in_flight: int
    capacity: int
    seq: int = 0
    """Beat number within the session (1, 2, ...)."""
    interval_s: float = 0.0
    """The period the agent beats at (0: unknown, the observer's own setting applies)."""
    connection: str = ""
    """``<server id>/<client id>`` of the agent's NATS connection: ties a disconnect advisory to it."""
    received_seq: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """Stream sequence of the last message the agent took from its inbox (its registration's before
    the first); None: the agent does not say, and is never judged stalled."""


class HeartbeatDecodeError(ValueError):
    """A message on a heartbeat subject that is not a heartbeat of that agent."""


_decoder = msgspec.json.Decoder(Heartbeat)


def decode_heartbeat(subject: str, data: bytes) -> Heartbeat:
    """Decode a heartbeat and check it speaks for the agent its subject names."""
    try:
        beat = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise HeartbeatDecodeError(f"not a heartbeat: {exc}") from exc
    if subject.rsplit(".", 1)[-1] != beat.agent_id:
        raise HeartbeatDecodeError(f"heartbeat of {beat.agent_id!r} on subject {subject}")
    return beat


class _AdvisoryServer(msgspec.Struct):
    id: str = ""


class _AdvisoryClient(msgspec.Struct):
    id: int = 0


class _DisconnectAdvisory(msgspec.Struct):
    server: _AdvisoryServer = msgspec.field(default_factory=_AdvisoryServer)
    client: _AdvisoryClient = msgspec.field(default_factory=_AdvisoryClient)
    reason: str = ""


_advisory_decoder = msgspec.json.Decoder(_DisconnectAdvisory)

DISCONNECT_ADVISORIES = "$SYS.ACCOUNT.*.DISCONNECT"
"""nats-server's client-disconnect advisories (io.nats.server.advisory.v1.client_disconnect)."""


def parse_disconnect(data: bytes) -> tuple[str, str] | None:
    """(connection key, reason) of a disconnect advisory, or None if it is not one."""
    try:
        advisory = _advisory_decoder.decode(data)
    except msgspec.DecodeError:
        return None
    if not advisory.server.id or not advisory.client.id:
        return None
    return f"{advisory.server.id}/{advisory.client.id}", advisory.reason


@dataclass
class Liveness:
    """What one observer knows of one agent's heartbeats."""

    session: str
    connection: str
    last_seen: float
    """Observer time of the last beat."""
    last_ts: float
    """The agent's own timestamp in that beat."""
    interval_s: float = 0.0
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=JITTER_SAMPLES))
    disconnected_at: float | None = None
    """Observer time at which the connection carrying the beats closed (None: open)."""
    disconnect_reason: str = ""
    received_seq: int | None = None
    """What the last beat said the agent took from its inbox (None: it does not say)."""
    in_flight: int = 0
    capacity: int = 1
    """The last beat's own count of the attempts in hand, and its capacity."""


@dataclass(frozen=True)
class JitterStats:
    samples: int
    mean_interval_s: float
    stdev_s: float
    since_last_s: float


class HeartbeatTable:
    """Last beat per agent, and the observer's own blind spots (it cannot hear while stalled)."""

    def __init__(self, started_at: float) -> None:
        self.resumed_at = started_at
        """Silence is only counted from here: before it the observer itself was not listening."""
        self.agents: dict[str, Liveness] = {}
        self._last_tick = started_at

    def record(self, beat: Heartbeat, now: float) -> None:
        found = self.agents.get(beat.agent_id)
        if found is None or found.session != beat.session:
            self.agents[beat.agent_id] = Liveness(
                session=beat.session,
                connection=beat.connection,
                last_seen=now,
                last_ts=beat.ts,
                interval_s=beat.interval_s,
                received_seq=beat.received_seq,
                in_flight=beat.in_flight,
                capacity=beat.capacity,
            )
            return
        found.intervals.append(max(0.0, now - found.last_seen))
        found.last_seen = now
        found.last_ts = beat.ts
        found.interval_s = beat.interval_s
        found.received_seq = beat.received_seq
        found.in_flight = beat.in_flight
        found.capacity = beat.capacity
        if beat.connection != found.connection:
            found.connection = beat.connection
            found.disconnected_at = None
            found.disconnect_reason = ""

    def connection_closed(self, connection: str, reason: str, now: float) -> list[str]:
        """Mark the agents whose beats came over `connection`; returns their ids."""
        hit = []
        for agent_id, liveness in self.agents.items():
            if connection and liveness.connection == connection and liveness.disconnected_at is None:
                liveness.disconnected_at = now
                liveness.disconnect_reason = reason
                hit.append(agent_id)
        return hit

    def tick(self, now: float, stall_s: float) -> bool:
        """Note that the observer looked at `now`; after a gap over `stall_s` it was deaf meanwhile.

        Returns True when a stall was detected: silence before ``now`` then proves nothing, so
        counting restarts (a paused observer must not declare healthy agents dead).
        """
        stalled = now - self._last_tick > stall_s
        self._last_tick = now
        if stalled:
            self.resumed_at = now
        return stalled

    def jitter(self, agent_id: str, now: float) -> JitterStats | None:
        found = self.agents.get(agent_id)
        if found is None:
            return None
        samples = list(found.intervals)
        mean = statistics.fmean(samples) if samples else 0.0
        stdev = statistics.pstdev(samples) if len(samples) >= 2 else 0.0
        return JitterStats(
            samples=len(samples), mean_interval_s=mean, stdev_s=stdev, since_last_s=now - found.last_seen
        )
