"""An agent's inbox: the durable pull consumer ``agent-<id>`` it reads its assignments from.

One configuration, whoever creates it: a pull consumer on the agent's own aggregate that starts right
after the registration of the agent's current session (a newer session's inbox is never replaced by
an older one's). When the server requires credentials, agents may create no consumer (a consumer's
configuration, a push consumer's ``deliver_subject`` for one, is in the request body, which NATS
permissions cannot see): the router opens each agent's inbox when it reads its registration
(``INBOX_PROVIDER``) and the agent waits for it. Without credentials (tests, benchmarks, a NATS of
your own without authentication) the agent opens its own.

An inbox the agent opens itself keeps its state in the server's memory (``mem_storage``): a
durable on file rewrote its state file up to ten times a second whenever its acknowledgement floor
moved (``consumerFileStore.flushLoop``), about 0.1 ms of nats-server's CPU per assignment with 20
agents at 500/s. What that file kept across a server restart, the agent knows itself: every
message up to the last it handled (``received_seq``) is done, so when the restarted server has
forgotten the inbox the agent opens it again right after that one (``InboxPlace``), and what was
delivered but not handled comes again. A delivery lost in transit (a reconnection, a reader being
replaced) shows as a gap in the consumer's delivery sequence; until the server has had time to
deliver it again, the agent reopens from before the gap (``InboxPlace``). The inboxes the router
opens (credentials required) stay on file: the agent could not open them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from shared.permissions import agent_durable
from shared.subjects import EVENTS_STREAM, aggregate_subjects

ACK_WAIT_S = 30.0
ACK_PENDING_HEADROOM = 64
"""Inbox messages that may wait unacknowledged beyond the agent's capacity (``max_ack_pending``)."""
INACTIVE_THRESHOLD_S = 600.0
WAIT_FIRST_S = 0.02
WAIT_MAX_S = 0.5
GAP_HOLD_S = ACK_WAIT_S + 5.0
"""How long after a gap in the deliveries a reopened inbox starts from before it: the server
delivers a message again ``ACK_WAIT_S`` after a delivery that was not acknowledged."""


def inbox_config(agent_id: str, start_seq: int, capacity: int, *, in_memory: bool = False) -> ConsumerConfig:
    """The inbox of the session registered at ``start_seq - 1`` (or resumed at ``start_seq``);
    `in_memory`: its state in the server's memory (an inbox the agent opens itself)."""
    durable = agent_durable(agent_id)
    return ConsumerConfig(
        name=durable,
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start_seq,
        ack_wait=ACK_WAIT_S,
        max_ack_pending=capacity + ACK_PENDING_HEADROOM,
        inactive_threshold=INACTIVE_THRESHOLD_S,
        mem_storage=in_memory or None,
        # Its own aggregate (assignments, cancellations, restart requests; the rest is acked and
        # skipped).
        filter_subject=aggregate_subjects("agent", agent_id),
    )


def pull_batch(capacity: int) -> int:
    """How many messages an agent asks its inbox for at a time: as many as may wait unacknowledged
    (the server refuses a pull request for more). It asks again when half have come, so each pull
    request, a message for the server to handle and answer, serves half that many messages: with
    ``capacity + 16``, an agent of capacity 1 sent one per 8 assignments, now one per 32."""
    return capacity + ACK_PENDING_HEADROOM


def serves(info: ConsumerInfo | None, agent_id: str, start_seq: int) -> bool:
    """Whether an existing consumer is this agent's inbox for a session registered at or after
    ``start_seq - 1``: a pull consumer on its own aggregate (anything else is replaced)."""
    if info is None:
        return False
    config = info.config
    return (
        not config.deliver_subject
        and config.filter_subject == aggregate_subjects("agent", agent_id)
        and (config.opt_start_seq or 0) >= start_seq
    )


async def _info(js: JetStreamContext, agent_id: str) -> ConsumerInfo | None:
    try:
        info: ConsumerInfo = await js.consumer_info(EVENTS_STREAM, agent_durable(agent_id))
    except nats.js.errors.NotFoundError:
        return None
    return info


async def open_inbox(
    js: JetStreamContext,
    agent_id: str,
    registered_seq: int,
    capacity: int,
    *,
    in_memory: bool = False,
    resume_after: int = 0,
) -> bool:
    """Make the agent's inbox start after its registration at `registered_seq`; True if it was
    (re)created, False if it already served that session or a newer one.

    `resume_after`: a new inbox starts after this sequence instead, when later (what the agent
    handled of the session's inbox before the server forgot it); `in_memory`: see ``inbox_config``.
    """
    return await _open(js, agent_id, registered_seq, capacity, in_memory, resume_after) is None


async def _open(
    js: JetStreamContext,
    agent_id: str,
    registered_seq: int,
    capacity: int,
    in_memory: bool,
    resume_after: int,
) -> ConsumerInfo | None:
    """``open_inbox``: the inbox found serving, or None once one was (re)created."""
    info = await _info(js, agent_id)
    if serves(info, agent_id, registered_seq + 1):
        return info
    if info is not None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(EVENTS_STREAM, agent_durable(agent_id))
    start_seq = max(registered_seq, resume_after) + 1
    try:
        await js.add_consumer(EVENTS_STREAM, inbox_config(agent_id, start_seq, capacity, in_memory=in_memory))
    except nats.js.errors.BadRequestError as exc:
        # Opened meanwhile by another router instance, for this session or a newer one: fine.
        if "already exists" not in str(exc.description):
            raise
    return None


class InboxPlace:
    """Where an agent's own (in-memory) inbox must start again if the server forgets it.

    After the last message handled (``handled``), unless a delivery went missing: the consumer
    numbers its deliveries 1, 2, 3..., so a number skipped means one was lost in transit (or went
    to a reader since replaced); the server delivers it again after ``ACK_WAIT_S``, and until
    ``GAP_HOLD_S`` after the last gap the place stays before it (what was handled since is
    delivered again and refused or skipped, as any redelivery). Pure but for the clock given.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.handled = 0
        """Stream sequence of the last message handled (the registration's before the first)."""
        self._next_delivery = 0
        """The consumer's number of the next delivery; 0: unknown (no gap can be told)."""
        self._gap_floor: int | None = None
        self._gap_until = 0.0

    def reset(self, handled: int) -> None:
        """A new session (inbox) whose registration is at `handled`."""
        self.handled = handled
        self._next_delivery = 0
        self._gap_floor = None

    def reading_from(self, delivered: int) -> None:
        """A reader starts on an inbox that has made `delivered` deliveries so far."""
        self._next_delivery = delivered + 1

    def delivered(self, delivery: int) -> None:
        """A delivery numbered `delivery` arrives, before it is handled."""
        expected = self._next_delivery
        if expected and delivery > expected:
            now = self._clock()
            if self._gap_floor is None or now >= self._gap_until:
                self._gap_floor = self.handled
            else:
                self._gap_floor = min(self._gap_floor, self.handled)
            self._gap_until = now + GAP_HOLD_S
        self._next_delivery = delivery + 1

    def resume_after(self) -> int:
        """The sequence a reopened inbox starts after."""
        if self._gap_floor is not None and self._clock() < self._gap_until:
            return self._gap_floor
        return self.handled


async def inbox_ready(js: JetStreamContext, agent_id: str, registered_seq: int) -> bool:
    """Whether the inbox serves the session registered at `registered_seq`."""
    return serves(await _info(js, agent_id), agent_id, registered_seq + 1)


async def wait_for_inbox(
    js: JetStreamContext, agent_id: str, registered_seq: int, stopping: asyncio.Event
) -> bool:
    """Wait until the inbox serves the session registered at `registered_seq` (opened by the
    router), polling with a growing pause; True once it does, False if `stopping` was set first.

    `stopping` ends the wait even when a cancellation is lost: on Python 3.11, ``asyncio.wait_for``
    (inside nats-py's requests) drops a cancellation that arrives with the reply, and an agent
    waiting for a router that never comes would then poll forever instead of exiting.
    """
    pause = WAIT_FIRST_S
    while not stopping.is_set():
        if await inbox_ready(js, agent_id, registered_seq):
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), pause)
        pause = min(pause * 2, WAIT_MAX_S)
    return False


async def open_own_inbox(
    js: JetStreamContext, agent_id: str, registered_seq: int, capacity: int, place: InboxPlace
) -> None:
    """Before a reader starts on the inbox an agent opens itself: open it again if the server
    forgot it (restarted), where `place` says, in memory; tell `place` where its deliveries stand."""
    found = await _open(js, agent_id, registered_seq, capacity, True, place.resume_after())
    delivered = found.delivered if found is not None else None
    place.reading_from(delivered.consumer_seq or 0 if delivered is not None else 0)
