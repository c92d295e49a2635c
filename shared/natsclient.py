"""The NATS client Hive uses: nats-py's, with three per-message hot spots made cheap.

Every event crosses several consumers, so per-message costs add up: header parsing (nats-py
tests every character of every header name for whitespace in a generator), the JetStream
metadata of a delivered message (nats-py also builds a datetime for each) and the socket writes
(one per wake-up of nats-py's flusher; here one per two turns of the event loop). Behaviour is the
same.
"""

from __future__ import annotations

import asyncio
import re

from nats.aio.client import Client
from nats.aio.msg import Msg

_WHITESPACE = re.compile(r"\s")
_CRLF = b"\r\n"


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """``Name: Value`` lines to a dict; names with whitespace or non-ASCII bytes are skipped."""
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _WHITESPACE.search(key):
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


class HiveNatsClient(Client):
    _parse_header_lines = staticmethod(parse_header_lines)

    async def _flusher(self) -> None:
        """Write what is pending once the event loop has run the callbacks already due: what the
        tasks woken with the first command add (appends, acknowledgements, pull requests) leaves in
        the same write. (nats-py writes as soon as the flusher wakes: at saturation a router spent
        a fifth of its CPU in socket writes.)"""
        assert self._flush_queue is not None
        while self.is_connected and not self.is_connecting:
            flushed = await self._flush_queue.get()
            try:
                await asyncio.sleep(0)
                if self._pending_data_size > 0:
                    assert self._transport is not None
                    pending, self._pending, self._pending_data_size = self._pending, [], 0
                    self._transport.writelines(pending)
                    await self._transport.drain()  # type: ignore[no-untyped-call]
            except OSError as exc:
                await self._error_cb(exc)
                await self._process_op_err(exc)
                return
            except (asyncio.CancelledError, RuntimeError, AttributeError):
                return
            finally:
                if not flushed.done():
                    flushed.set_result(None)


def _ack_tokens(msg: Msg) -> list[str]:
    """The tokens of a JetStream delivery's reply subject, in the v1 (9-token) layout.

    v2 subjects (``$JS.ACK.<domain>.<account>.<stream>...``, 12 tokens or more) are cut down to it.
    """
    tokens = msg.reply.split(".")
    if len(tokens) >= 12:
        return tokens[:2] + tokens[4:11]
    if len(tokens) != 9:
        raise ValueError(f"not a JetStream delivery: {msg.reply!r}")
    return tokens


def stream_seq(msg: Msg) -> int:
    """Stream sequence of a JetStream delivery."""
    return int(_ack_tokens(msg)[5])


def delivery_count(msg: Msg) -> int:
    """How many times this message has been delivered to the consumer."""
    return int(_ack_tokens(msg)[4])


def pending_after(msg: Msg) -> int:
    """Messages still pending for the consumer after this one."""
    return int(_ack_tokens(msg)[8])


def stored_at_ns(msg: Msg) -> int:
    """When the server stored the message (Unix nanoseconds, server clock)."""
    return int(_ack_tokens(msg)[7])
