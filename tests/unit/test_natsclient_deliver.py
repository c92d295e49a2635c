"""``HiveNatsClient.deliver_now`` leaves a client as ``_process_msg`` does, or declines untouched."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.subscription import Subscription

from shared.natsclient import (
    HiveNatsClient,
    LazyHeaders,
    StatusHeaders,
    deliver_directly,
    inline_status,
    read_headers_lazily,
)

HEADERS = st.sampled_from(
    [
        None,
        b"",
        b"NATS/1.0\r\nNats-Msg-Id: a-1\r\nNats-Expected-Last-Subject-Sequence: 4\r\n\r\n",
        b"NATS/1.0\r\nStatus: 100\r\n\r\n",
        b"NATS/1.0\r\n\r\n",
        b"NATS/1.0 404 No Messages\r\n\r\n",
        b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\n\r\n",
    ]
)
MESSAGE = st.tuples(
    st.integers(1, 7),
    st.sampled_from([b"ev.a", b"_INBOX.x.1"]),
    st.sampled_from([b"", b"$JS.ACK.S.C.1.2.3.4.0"]),
    st.binary(max_size=60),
    HEADERS,
)


async def noop(msg: Any) -> None:
    """A subscription's callback (its task is never started here)."""


def client_with_subscriptions(errors: list[tuple[Any, ...]]) -> HiveNatsClient:
    """Subscriptions 1-6 of every kind ``deliver_now`` must tell apart; 7 is unknown."""
    client = HiveNatsClient()

    async def on_error(exc: Exception) -> None:
        errors.append((type(exc), getattr(exc, "sid", None)))

    client._error_cb = on_error
    kinds: dict[int, dict[str, Any]] = {
        1: {},
        2: {},
        3: {"max_msgs": 3},
        4: {"pending_bytes_limit": 100},
        5: {"pending_msgs_limit": 2},
        6: {"pending_bytes_limit": 0},
    }
    for sid, options in kinds.items():
        sub = Subscription(client, sid, "x", cb=noop, **options)
        client._subs[sid] = sub
        if sid != 2:
            read_headers_lazily(client, sub)
    return client


def snapshot(client: HiveNatsClient, subs: dict[int, Subscription]) -> tuple[Any, ...]:
    queues = {}
    for sid, sub in subs.items():
        queued = []
        while not sub._pending_queue.empty():
            msg = sub._pending_queue.get_nowait()
            queued.append(
                (
                    msg.subject,
                    msg.reply,
                    msg.data,
                    type(msg.headers),
                    dict(msg.headers or {}),
                    msg._sid,
                    msg._client,
                )
            )
        queues[sid] = (queued, sub._received, sub._pending_size)
    return (client.stats["in_msgs"], client.stats["in_bytes"], sorted(client._subs), queues)


def deliver_both(messages: list[tuple[int, bytes, bytes, bytes, bytes | None]]) -> None:
    async def run() -> None:
        old_errors: list[tuple[Any, ...]] = []
        new_errors: list[tuple[Any, ...]] = []
        old = client_with_subscriptions(old_errors)
        new = client_with_subscriptions(new_errors)
        old_subs, new_subs = dict(old._subs), dict(new._subs)
        for sid, subject, reply, data, headers in messages:
            await old._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
            if not new.deliver_now(sid, subject, reply, data, headers):
                await new._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]
        old_state = snapshot(old, old_subs)
        new_state = snapshot(new, new_subs)
        # A message's _client is its own client: compare the rest.
        assert str(new_state).replace(repr(new), "C") == str(old_state).replace(repr(old), "C")
        assert new_errors == old_errors

    asyncio.run(run())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MESSAGE, max_size=25))
def test_deliver_now_leaves_the_client_as_process_msg_does(
    messages: list[tuple[int, bytes, bytes, bytes, bytes | None]],
) -> None:
    deliver_both(messages)


def test_a_request_future_a_status_and_a_full_queue_are_declined_untouched() -> None:
    async def run() -> None:
        client = client_with_subscriptions([])
        client._subs[6]._future = asyncio.get_running_loop().create_future()
        before = dict(client.stats)
        assert not client.deliver_now(6, b"x", b"", b"a", None)
        assert not client.deliver_now(1, b"x", b"", b"", b"NATS/1.0 404 No Messages\r\n\r\n")
        assert not client.deliver_now(2, b"x", b"", b"a", b"NATS/1.0\r\nA: b\r\n\r\n")  # not read lazily
        assert not client.deliver_now(4, b"x", b"", b"a" * 100, None)
        assert client.deliver_now(5, b"x", b"", b"a", None) and client.deliver_now(5, b"x", b"", b"a", None)
        assert not client.deliver_now(5, b"x", b"", b"a", None)
        assert client.stats["in_msgs"] == before["in_msgs"] + 2
        assert client._subs[5]._received == 2

    asyncio.run(run())


def hmsg(sid: int, subject: bytes, reply: bytes, headers: bytes, data: bytes) -> bytes:
    args = b" ".join([b"HMSG", subject, str(sid).encode(), *([reply] if reply else [])])
    return b"%s %d %d\r\n%s%s\r\n" % (args, len(headers), len(headers) + len(data), headers, data)


def test_a_direct_subscription_gets_every_message_in_order_statuses_included_and_none_queued() -> None:
    stored = b"NATS/1.0\r\nNats-Msg-Id: a-1\r\n\r\n"
    status = b"NATS/1.0 404 No Messages\r\n\r\n"

    async def run() -> None:
        client = client_with_subscriptions([])
        sub = client._subs[1]
        handed: list[Any] = []

        def take(msg: Any) -> None:
            handed.append(msg)
            if msg.data == b"boom":
                raise RuntimeError("a handler's failure is logged, not raised in the read loop")

        deliver_directly(client, sub, take)
        stream = (
            hmsg(1, b"ev.a", b"$JS.ACK.S.C.1.1.1.4.2", stored, b"first")
            + b"MSG _INBOX.x.1 1 4\r\nboom\r\n"
            + hmsg(1, b"_INBOX.x.1", b"", status, b"")
            + hmsg(1, b"ev.b", b"$JS.ACK.S.C.1.2.2.4.0", stored, b"last")
        )
        await client._ps.parse(stream)
        assert [(m.subject, m.data) for m in handed] == [
            ("ev.a", b"first"),
            ("_INBOX.x.1", b"boom"),
            ("_INBOX.x.1", b""),
            ("ev.b", b"last"),
        ]
        assert isinstance(handed[0].headers, LazyHeaders) and dict(handed[0].headers) == {
            "Nats-Msg-Id": "a-1"
        }
        assert isinstance(handed[2].headers, StatusHeaders) and inline_status(handed[2].headers) == "404"
        assert sub._pending_queue.empty() and sub._received == 4
        assert client.stats["in_msgs"] == 4

        deliver_directly(client, sub, None)
        await client._ps.parse(hmsg(1, b"ev.c", b"", stored, b"queued again"))
        assert len(handed) == 4 and sub._pending_queue.qsize() == 1

        deliver_directly(client, sub, take)
        del client._subs[1]  # unsubscribed: counted, handed to nobody, as nats-py does
        await client._ps.parse(b"MSG ev.d 1 4\r\nlate\r\n")
        assert len(handed) == 4 and client.stats["in_msgs"] == 6

    asyncio.run(run())
