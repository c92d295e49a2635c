"""Stream tickets: a short-lived proof of the API token that fits in a URL.

A browser's ``EventSource`` cannot send an ``Authorization`` header, so the dashboard trades its
bearer token for a ticket (``POST /api/v1/stream/ticket``) and opens the event stream with
``?ticket=...``. A ticket is ``<expiry>.<HMAC-SHA256 of it under HIVE_API_TOKEN>``: stateless, so
every gateway sharing the token accepts it, and useless after ``TICKET_TTL_S`` (only to open a
stream: one already open stays open). The token itself never appears in a URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

TICKET_TTL_S: Final = 60.0
_PURPOSE: Final = b"hive-stream-ticket:"


def _signature(secret: str, expires: int) -> str:
    digest = hmac.new(secret.encode(), _PURPOSE + str(expires).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_ticket(secret: str, now: float, ttl_s: float = TICKET_TTL_S) -> tuple[str, int]:
    """A ticket valid until ``now + ttl_s`` (whole seconds), and that expiry."""
    expires = int(now + ttl_s)
    return f"{expires}.{_signature(secret, expires)}", expires


def ticket_is_valid(secret: str, ticket: str, now: float) -> bool:
    """Signed under `secret` and not expired at `now`; anything malformed is simply not valid."""
    expires_text, _, signature = ticket.partition(".")
    if not expires_text.isdigit() or len(expires_text) > 12 or not signature:
        return False
    expires = int(expires_text)
    if expires < now:
        return False
    return hmac.compare_digest(signature.encode(), _signature(secret, expires).encode())
