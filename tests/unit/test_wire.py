"""``WireParser`` hands the client exactly what nats-py's ``Parser`` does, however the bytes come."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from shared.wire import WireParser

RESETTING_SID = 13
"""A message to this sid makes the fake client reset its parser while it is handled (a reconnect)."""


class Recorder:
    """The client side of a parser: records every call, in order, with the types of its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.parser: Parser | None = None

    def _reset(self) -> None:
        assert self.parser is not None
        self.parser.reset()

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        self.calls.append(("msg", sid, type(subject), subject, type(reply), reply, type(data), data, headers))
        if sid == RESETTING_SID:
            self._reset()

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))
        if err == "'stale connection'":
            self._reset()

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))


def run(
    parser_class: type[Parser], chunks: list[bytes]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Feed `chunks` to a parser; the calls it made, then its state after each chunk (and what it raised)."""
    client = Recorder()
    parser = parser_class(client)
    client.parser = parser
    states: list[tuple[Any, ...]] = []

    async def feed() -> None:
        for chunk in chunks:
            try:
                await parser.parse(chunk)
            except Exception as exc:  # compared below: both parsers must raise the same
                states.append(("raised", type(exc), exc.args))
                return
            states.append((bytes(parser.buf), parser.state, parser.needed, parser.header_needed))

    asyncio.run(feed())
    return client.calls, states


def assert_same(chunks: list[bytes]) -> list[tuple[Any, ...]]:
    old = run(Parser, chunks)
    new = run(WireParser, chunks)
    assert new == old
    return new[0]


TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-$>*+\x1c",
    min_size=1,
    max_size=12,
)
SEP = st.sampled_from([b" ", b" ", b" ", b" ", b"  ", b"\t", b" \t"])
PAYLOAD = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [b"", b"\r\n", b"MSG a 1 2\r\nxy", b"HMSG a 1 2 3\r\n", b"12 34\r\n", b"PING\r\n", b"\r\nMSG "]
    ),
    st.binary(max_size=10).map(lambda b: b + b"\r\nMSG x 1 3\r\n" + b),
)


@st.composite
def header_block(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([b"", b" 404 No Messages", b" 100 Idle Heartbeat", b" 408", b" 503"]))
    pairs = draw(st.lists(st.tuples(TOKEN, st.text(max_size=12)), max_size=3))
    lines = b"".join(
        k.encode() + b": " + v.encode("utf-8", "replace").replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
        for k, v in pairs
    )
    return b"NATS/1.0" + status + b"\r\n" + lines + b"\r\n"


ANY_SID = st.one_of(st.integers(0, 40), st.sampled_from([RESETTING_SID]), st.integers(0, 2**40))


@st.composite
def message(draw: st.DrawFn, sids: st.SearchStrategy[int] = ANY_SID) -> bytes:
    subject = draw(TOKEN).encode()
    sid = draw(sids)
    reply = draw(st.one_of(st.none(), TOKEN)) or ""
    payload = draw(PAYLOAD)
    sep = draw(SEP)
    head = [subject, str(sid).encode()] + ([reply.encode()] if reply else [])
    if draw(st.booleans()):
        headers = draw(header_block())
        sizes = [str(len(headers)).encode(), str(len(headers) + len(payload)).encode()]
        return sep.join([b"HMSG", *head, *sizes]) + b"\r\n" + headers + payload + b"\r\n"
    return sep.join([b"MSG", *head, str(len(payload)).encode()]) + b"\r\n" + payload + b"\r\n"


OTHER = st.sampled_from(
    [
        b"PING\r\n",
        b"PONG\r\n",
        b"PING \r\n",
        b"+OK\r\n",
        b"+OK  \r\n",
        b"-ERR 'Unknown Protocol Operation'\r\n",
        b"-ERR 'Stale Connection'\r\n",
        b"-ERR 'Permissions Violation for Subscription to \"x\"'\r\n",
        b'INFO {"server_id":"x","max_payload":1048576,"headers":true}\r\n',
        b'INFO {"connect_urls":["a:1"]}\r\n',
    ]
)
TRICKY = [
    b"MSG a 1 r\r5\r\nhello\r\n",
    b"MSG a 1 r\x0b5\r\nhello\r\n",
    b"HMSG a 1 r\n12 17\r\nNATS/1.0\r\n\r\nhello\r\n",
    b"HMSG a 1 r\t12\t17\r\nNATS/1.0\r\n\r\nhello\r\n",
    b"HMSG a 1 12 17\r\n\t9 9\r\nNATS/1.0\r\n\r\nhello\r\n",
    b"MSG a b 5\r\nhello\r\n",
    b"MSG a 1 5 \r\nhello\r\n",
    b"MSG a 1 x 5 6\r\nhello\r\n",
    b"MSG a 1\r5\r\nhello\r\n",
    b"MSG a 1 r\n5\r\nhello\r\n",
    b"MSG\r\na 1 5\r\nhello\r\n",
    b"MSG a 1_0 5\r\nhello\r\n",
    b"MSG a +1 5\r\nhello\r\n",
    b"HMSG a 1 x 5\r\n",
    b"HMSG a 1 5 5\r\n 7 9\r\n",
    b"HMSG a 1 5 5\r\n7\r\nNATS/\r\n",
    b"HMSG a 1 12 12\r\n3NATS/1.0\r\n\r\n\r\n",
    b"HMSGX a 1 2 3\r\n",
    b"MSGX a 1 2\r\n",
    b"HMSG a 1 2\r\n",
    b"-ERR \r\n",
    b"-ERR 'x\r\n",
    b"INFO {bad json\r\n",
    b"FOO bar\r\n",
    b"\r\n",
    b"MSG a 1 99999999",
]
MALFORMED = st.sampled_from(TRICKY)
OP = st.one_of(message(), message(), message(), OTHER, MALFORMED, st.binary(max_size=12))


@st.composite
def split_stream(draw: st.DrawFn, ops: st.SearchStrategy[bytes]) -> list[bytes]:
    stream = b"".join(draw(st.lists(ops, min_size=1, max_size=12)))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)] + [b""]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_stream(OP))
def test_any_stream_split_anywhere_gives_the_calls_nats_py_gives(chunks: list[bytes]) -> None:
    assert_same(chunks)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(message(sids=st.integers(0, 12)), min_size=1, max_size=12), st.data())
def test_well_formed_streams_deliver_every_message(messages: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    calls = assert_same([stream[a:b] for a, b in itertools.pairwise(bounds)])
    assert len(calls) == len(messages)


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (b"MSG a b 5\r\nhello\r\n", "nats: malformed MSG"),
        (b"HMSG a b 1 5\r\nhello\r\n", "nats: malformed MSG"),
        (b"FOO bar\r\n", "nats: unknown protocol"),
        (b"MSG a 1 5 \r\nhello\r\n", "nats: unknown protocol"),
    ],
)
def test_a_malformed_line_raises_a_protocol_error_like_nats_py(stream: bytes, error: str) -> None:
    for parser_class in (Parser, WireParser):
        _, states = run(parser_class, [stream])
        assert states == [("raised", ProtocolError, (error,))]


@pytest.mark.parametrize("stream", TRICKY)
def test_each_tricky_line_is_judged_as_nats_py_judges_it_whole_or_byte_by_byte(stream: bytes) -> None:
    assert_same([stream + b"PING\r\n"])
    assert_same([stream[i : i + 1] for i in range(len(stream))] + [b"PING\r\n"])


def test_a_message_split_byte_by_byte_arrives_once_whole() -> None:
    headers = b"NATS/1.0\r\nNats-Msg-Id: a\r\n\r\n"
    payload = b'{"x": "\r\nMSG y 1 2\r\n"}'
    stream = b"HMSG ev.a 7 $JS.ACK.S.C.1.2.3.4.0 %d %d\r\n%s%s\r\n" % (
        len(headers),
        len(headers) + len(payload),
        headers,
        payload,
    )
    calls = assert_same([stream[i : i + 1] for i in range(len(stream))])
    assert calls == [("msg", 7, bytes, b"ev.a", bytes, b"$JS.ACK.S.C.1.2.3.4.0", bytes, payload, headers)]


def test_an_info_line_is_handed_over_decoded() -> None:
    info = {"server_id": "x", "headers": True}
    calls = assert_same([b"INFO " + json.dumps(info).encode() + b"\r\nPING\r\n"])
    assert calls == [("info", info), ("ping",)]
