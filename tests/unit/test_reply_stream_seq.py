"""A stored message's sequence read off its raw reply subject is the one ``ack_tokens`` reads off
the decoded subject, in both layouts; what is not a delivery's reply fails alike."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.natsclient import ack_tokens, reply_stream_seq

TOKEN = st.text(alphabet="abcXYZ019-_", min_size=1, max_size=6)
NUMBER = st.integers(0, 2**63).map(str)


@given(st.booleans(), TOKEN, TOKEN, TOKEN, TOKEN, NUMBER, NUMBER, NUMBER, NUMBER, NUMBER, TOKEN)
def test_the_sequence_read_raw_is_the_one_ack_tokens_reads(
    v2: bool,
    domain: str,
    account: str,
    stream: str,
    consumer: str,
    delivered: str,
    seq: str,
    consumer_seq: str,
    ts: str,
    pending: str,
    token: str,
) -> None:
    head = ["$JS", "ACK", domain, account] if v2 else ["$JS", "ACK"]
    tail = [token] if v2 else []
    reply = ".".join([*head, stream, consumer, delivered, seq, consumer_seq, ts, pending, *tail])
    assert reply_stream_seq(reply.encode()) == int(ack_tokens(reply)[5])


@pytest.mark.parametrize("reply", [b"_INBOX.abc", b"$JS.ACK.s.c.1.x.1.1.0", b"a.b.c.d.e.f.g.h.i.j"])
def test_what_is_not_a_deliverys_reply_fails_as_ack_tokens_does(reply: bytes) -> None:
    with pytest.raises(ValueError):
        int(ack_tokens(reply.decode())[5])
    with pytest.raises(ValueError):
        reply_stream_seq(reply)
