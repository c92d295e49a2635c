"""Identifiers: generated ids and the one rule every id must follow to be a subject token."""

from __future__ import annotations

import os
import re
import threading

from shared.errors import HiveError

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Ids become NATS subject tokens, so dots, spaces and wildcards are refused."""
ID_RULE = "1-64 characters among letters, digits, '_' and '-'"
"""The rule in words: every id, in a request body or a path, follows it."""

_ID_RE = re.compile(ID_PATTERN)


class InvalidIdError(HiveError, ValueError):
    """An id that cannot be used as a subject token."""


_RANDOM_POOL = 4096
"""Random bytes read at once for ids (256 ids per read)."""
_VERSION_CLEAR = ~(0xF000 << 64) & ~(0xC000 << 48)
_VERSION_SET = (4 << 76) | (0x8000 << 48)
"""``uuid.UUID(bytes=..., version=4)``: version 4, RFC 4122 variant."""


class _Pool(threading.local):
    data = b""
    at = 0


_pool = _Pool()


def _forked() -> None:
    global _pool  # a child must not hand out the ids its parent's pool holds
    _pool = _Pool()


os.register_at_fork(after_in_child=_forked)


def new_id() -> str:
    """A fresh random id: ``uuid.uuid4().hex``, from random bytes read 4 KiB at a time (one read
    of ``os.urandom`` and a ``UUID`` per id cost a few microseconds, and every event has an id).
    Each thread has its own bytes; a forked child starts afresh."""
    pool = _pool
    at = pool.at
    data = pool.data
    if at + 16 > len(data):
        data = pool.data = os.urandom(_RANDOM_POOL)
        at = 0
    pool.at = at + 16
    return "%032x" % (int.from_bytes(data[at : at + 16], "big") & _VERSION_CLEAR | _VERSION_SET)


def check_id(value: str, what: str = "id") -> str:
    """Return `value` if it is a valid subject token, else raise with a clear message."""
    if not _ID_RE.match(value):
        raise InvalidIdError(f"{what} {value!r} is invalid: use {ID_RULE}")
    return value
