"""What a list request asks for (filters, a page) and the opaque cursor that continues it. Pure.

Pages are ordered newest submission first and cut by the submission's stream sequence (keyset
pagination): a cursor is the sequence of the last item shown, so tasks submitted while a client
pages have higher sequences and never shift the pages it has not read yet: each task shows once.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

import msgspec

from shared.errors import HiveError

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
CURSOR_VERSION: Final = 1


class BadCursor(HiveError, ValueError):
    """A cursor this gateway did not give out (or of another kind of list)."""


class _Cursor(msgspec.Struct, array_like=True):
    v: int
    kind: str
    seq: int


def encode_cursor(kind: str, seq: int) -> str:
    raw = msgspec.msgpack.encode(_Cursor(CURSOR_VERSION, kind, seq))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> int:
    """The sequence a cursor of this kind of list continues before."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found = msgspec.msgpack.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadCursor("not a cursor this API gave out; pass next_cursor as it was returned") from None
    if found.v != CURSOR_VERSION or found.kind != kind or found.seq < 0:
        raise BadCursor(f"not a cursor of this list ({kind}); pass next_cursor as it was returned")
    return found.seq


@dataclass(frozen=True)
class TaskFilter:
    """Each filter matches the field of the same name in the answer (all must match)."""

    status: str | None = None
    task_type: str | None = None
    agent_id: str | None = None
    workflow_id: str | None = None
    priority: str | None = None
    submitted_after: float | None = None
    """Unix seconds: submitted at or after."""
    submitted_before: float | None = None
    """Unix seconds: submitted before."""


@dataclass(frozen=True)
class WorkflowFilter:
    status: str | None = None
    name: str | None = None
    submitted_after: float | None = None
    submitted_before: float | None = None


@dataclass(frozen=True)
class Page:
    """Items newer than nothing (first page) or older than `before_seq`, at most `limit`."""

    limit: int = DEFAULT_LIMIT
    before_seq: int | None = None


def next_cursor(kind: str, seqs: list[int], limit: int) -> str | None:
    """A cursor after the last item when the page is full (there may be more), else None."""
    return encode_cursor(kind, seqs[-1]) if len(seqs) >= limit and seqs else None
