"""An event as the log holds it, and the one function that turns stored bytes into one. Pure.

Projections, decisions and the bus all speak of ``Recorded`` items (stream sequence, subject,
decoded event), so the type lives here, beside the event catalogue and below everything else:
pure code can fold the log without importing NATS.
"""

from __future__ import annotations

import msgspec

from shared.events import AnyEvent, EventDecodeError, decode_event, stored_on


class Recorded(msgspec.Struct, frozen=True):
    """An event as the log holds it: its stream sequence, subject and decoded body."""

    seq: int
    subject: str
    event: AnyEvent


class Undecodable(msgspec.Struct, frozen=True):
    """A message in the event stream that is not a valid event (kept in the log, skipped)."""

    seq: int
    subject: str
    reason: str


def decode_recorded(seq: int, subject: str, data: bytes) -> Recorded | Undecodable:
    """Decode a stored message; a body whose subject disagrees with its content is refused too."""
    try:
        event = decode_event(data)
    except EventDecodeError as exc:
        return Undecodable(seq, subject, str(exc))
    if not stored_on(event, subject, data):
        return Undecodable(seq, subject, f"subject {subject} does not match the event's own {event.subject}")
    return Recorded(seq, subject, event)
