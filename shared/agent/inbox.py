"""An agent's inbox: the durable pull consumer ``agent-<id>`` it reads its assignments from.

One configuration, whoever creates it: a pull consumer on the agent's own aggregate that starts right
after the registration of the agent's current session (a newer session's inbox is never replaced by
an older one's). When the server requires credentials, agents may create no consumer (a consumer's
configuration, a push consumer's ``deliver_subject`` for one, is in the request body, which NATS
permissions cannot see): the router opens each agent's inbox when it reads its registration
(``INBOX_PROVIDER``) and the agent waits for it. Without credentials (tests, benchmarks, a NATS of
your own without authentication) the agent opens its own.
"""

from __future__ import annotations

import asyncio
import contextlib

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


def inbox_config(agent_id: str, start_seq: int, capacity: int) -> ConsumerConfig:
    """The inbox of the session registered at ``start_seq - 1``."""
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


async def open_inbox(js: JetStreamContext, agent_id: str, registered_seq: int, capacity: int) -> bool:
    """Make the agent's inbox start after its registration at `registered_seq`; True if it was
    (re)created, False if it already served that session or a newer one."""
    start_seq = registered_seq + 1
    info = await _info(js, agent_id)
    if serves(info, agent_id, start_seq):
        return False
    if info is not None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(EVENTS_STREAM, agent_durable(agent_id))
    try:
        await js.add_consumer(EVENTS_STREAM, inbox_config(agent_id, start_seq, capacity))
    except nats.js.errors.BadRequestError as exc:
        # Opened meanwhile by another router instance, for this session or a newer one: fine.
        if "already exists" not in str(exc.description):
            raise
    return True


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
