"""Identifiers: generated ids and the one rule every id must follow to be a subject token."""

from __future__ import annotations

import re
import uuid

from shared.errors import HiveError

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Ids become NATS subject tokens, so dots, spaces and wildcards are refused."""
ID_RULE = "1-64 characters among letters, digits, '_' and '-'"
"""The rule in words: every id, in a request body or a path, follows it."""

_ID_RE = re.compile(ID_PATTERN)


class InvalidIdError(HiveError, ValueError):
    """An id that cannot be used as a subject token."""


def new_id() -> str:
    """A fresh random id (uuid4, hex)."""
    return uuid.uuid4().hex


def check_id(value: str, what: str = "id") -> str:
    """Return `value` if it is a valid subject token, else raise with a clear message."""
    if not _ID_RE.match(value):
        raise InvalidIdError(f"{what} {value!r} is invalid: use {ID_RULE}")
    return value
