"""NATS's wire protocol read without regular expressions: nats-py's parser, made cheap per message.

nats-py's ``Parser`` tries a regular expression per kind of line (a ``HMSG`` first fails ``MSG``'s),
copies the buffer three times and deletes each line and payload from the front of it: a service
reading thousands of events a second spent half its CPU there. ``WireParser`` finds each line's end
with ``bytearray.find``, splits a ``MSG``/``HMSG`` line on whitespace, keeps an offset into the
buffer and compacts it once per read.

What it hands the client is exactly what nats-py's parser hands it, in the same order, however the
bytes are split (tests/unit/test_wire.py compares the two on random streams). A ``MSG``/``HMSG`` line
is taken on the fast path only when it is in the form whose regular-expression match is certain;
any other line (``PING``, ``PONG``, ``+OK``, ``-ERR``, ``INFO``, a malformed line) goes through
nats-py's own expressions, in nats-py's order, with its errors.
"""

from __future__ import annotations

import json

from nats.errors import ProtocolError
from nats.protocol.parser import (
    AWAITING_CONTROL_LINE,
    AWAITING_MSG_PAYLOAD,
    ERR_RE,
    HMSG_RE,
    INFO_RE,
    MAX_CONTROL_LINE_SIZE,
    MSG_RE,
    OK_RE,
    PING_RE,
    PONG_RE,
    Parser,
)

_CRLF = b"\r\n"
_MESSAGE_OPS = frozenset(b"HM")
_HMSG = b"HMSG"
_MSG = b"MSG"
_CR = b"\r"
_LF = b"\n"
_CR_BYTE = ord("\r")
_LF_BYTE = ord("\n")
_SIDS_KEPT = 4096
_DIGITS = frozenset(b"0123456789")
_WHITESPACE_OR_DIGIT = frozenset(b" \t\n\r\x0b\x0c0123456789")
"""After a ``HMSG`` line without a reply subject, a byte that could make nats-py's expression read
the line as having one (its ``\\s+(\\d+)`` may run past the line's end)."""


class WireParser(Parser):
    """nats-py's ``Parser``, same calls on the client, without a regular expression per message.

    The client (``nc``) gets ``_process_msg``, ``_process_err``, ``_process_ping``,
    ``_process_pong`` and ``_process_info`` as from nats-py's parser; a client with a
    ``deliver_now`` (``HiveNatsClient``) is offered each message there first, without a coroutine,
    and gets ``_process_msg`` only when that declines it. A ``reset()`` while one of
    them runs (a reconnect) ends the ``parse`` call in progress, as nats-py's does (its buffer is
    then empty). The buffer is ``bytes`` (a slice of it is the message's own ``bytes``, one copy);
    while a large payload is still arriving it is a ``bytearray``, grown in place.
    """

    buf: bytes | bytearray  # type: ignore[assignment]

    def reset(self) -> None:
        super().reset()
        self.subject = b""
        self.sid = 0
        self.reply = b""
        self.resets = getattr(self, "resets", 0) + 1
        self._sids: dict[bytes, int] = {}

    async def parse(self, data: bytes = b"") -> None:
        held = self.buf
        joined: bytes | bytearray
        if not held:
            joined = data if type(data) is bytes else bytes(data)
        elif isinstance(held, bytearray):
            held += data
            joined = held
        else:
            joined = held + data
        if self.state == AWAITING_MSG_PAYLOAD and len(joined) < self.needed + 2:
            # A payload still arriving: grown in place, not copied whole for each read.
            self.buf = joined if isinstance(joined, bytearray) else bytearray(joined)
            return
        buf = joined if type(joined) is bytes else bytes(joined)
        resets = self.resets
        nc = self.nc
        deliver = getattr(nc, "deliver_now", None)
        pos = 0
        size = len(buf)
        try:
            while pos < size:
                if self.state == AWAITING_MSG_PAYLOAD:
                    needed = self.needed
                    if size - pos < needed + 2:
                        break
                    header_needed = self.header_needed
                    if header_needed > 0:
                        headers: bytes | None = buf[pos : pos + header_needed]
                        payload = buf[pos + header_needed : pos + needed]
                        self.header_needed = 0
                    else:
                        headers = None
                        payload = buf[pos : pos + needed]
                    pos += needed + 2
                    self.state = AWAITING_CONTROL_LINE
                    if deliver is None or not deliver(self.sid, self.subject, self.reply, payload, headers):
                        await nc._process_msg(self.sid, self.subject, self.reply, payload, headers)
                        if self.resets != resets:
                            return
                    continue
                end = buf.find(_LF, pos)
                if end < 0:
                    break  # no line end: nats-py's expressions all need a CRLF
                if (
                    buf[pos] in _MESSAGE_OPS
                    and end > pos + 1
                    and buf[end - 1] == _CR_BYTE
                    and self._message_line(buf, pos, end - 1)
                ):
                    pos = end + 1
                    continue
                taken = await self._other_line(buf[pos:])
                if self.resets != resets:
                    return
                if taken is None:
                    break
                pos += taken
        finally:
            if self.resets == resets:
                self.buf = buf[pos:] if pos else buf

    def _message_line(self, buf: bytes, pos: int, end: int) -> bool:
        """Take a ``MSG``/``HMSG`` line in the form nats-py's expression matches one way only;
        False (nothing taken) for any other, which nats-py's expressions then judge."""
        line = buf[pos:end]
        if line[-1] not in _DIGITS or _CR_BYTE in line or _LF_BYTE in line:
            return False
        parts = line.split()
        count = len(parts)
        op = parts[0]
        if op == _HMSG:
            if count == 5:
                after = end + 2
                if after < len(buf) and buf[after] in _WHITESPACE_OR_DIGIT:
                    return False
                reply = b""
            elif count == 6:
                reply = parts[3]
            else:
                return False
            header_size = parts[-2]
            if not header_size.isdigit():
                return False
        elif op == _MSG:
            if count == 4:
                reply = b""
            elif count == 5:
                reply = parts[3]
            else:
                return False
            header_size = b""
        else:
            return False
        needed = parts[-1]
        if not needed.isdigit():
            return False
        token = parts[2]
        sid = self._sids.get(token)
        if sid is None:
            try:
                sid = int(token)
            except ValueError:
                raise ProtocolError("nats: malformed MSG") from None
            if len(self._sids) >= _SIDS_KEPT:
                self._sids.clear()
            self._sids[token] = sid
        self.sid = sid
        self.subject = parts[1]
        self.reply = reply
        self.needed = int(needed)
        if header_size:
            self.header_needed = int(header_size)
        self.state = AWAITING_MSG_PAYLOAD
        return True

    async def _other_line(self, rest: bytes) -> int | None:
        """nats-py's handling of the line that starts `rest`: how many bytes it took, or None to
        wait for more bytes."""
        msg = MSG_RE.match(rest)
        if msg:
            try:
                subject, sid, _, reply, needed_bytes = msg.groups()
                self.subject = subject
                self.sid = int(sid)
                self.reply = reply if reply else b""
                self.needed = int(needed_bytes)
                self.state = AWAITING_MSG_PAYLOAD
                return msg.end()
            except Exception:
                raise ProtocolError("nats: malformed MSG") from None
        msg = HMSG_RE.match(rest)
        if msg:
            try:
                subject, sid, _, reply, header_size, needed_bytes = msg.groups()
                self.subject = subject
                self.sid = int(sid)
                self.reply = reply if reply else b""
                self.needed = int(needed_bytes)
                self.header_needed = int(header_size)
                self.state = AWAITING_MSG_PAYLOAD
                return msg.end()
            except Exception:
                raise ProtocolError("nats: malformed MSG") from None
        ok = OK_RE.match(rest)
        if ok:
            return ok.end()
        err = ERR_RE.match(rest)
        if err:
            await self.nc._process_err(err.groups()[0].decode().lower())
            return err.end()
        ping = PING_RE.match(rest)
        if ping:
            await self.nc._process_ping()
            return ping.end()
        pong = PONG_RE.match(rest)
        if pong:
            await self.nc._process_pong()
            return pong.end()
        info = INFO_RE.match(rest)
        if info:
            await self.nc._process_info(json.loads(info.groups()[0].decode()))
            return info.end()
        if len(rest) < MAX_CONTROL_LINE_SIZE and _CRLF in rest:
            raise ProtocolError("nats: unknown protocol")
        return None
