"""What the Python client raises, all ``HiveError``s (``shared/errors.py``, Hive's one base for the
errors its users see): the gateway's error shape, an unreachable gateway, a wait that ran out, an
answer the client cannot read."""

from __future__ import annotations

from typing import Any

from shared.errors import HiveError

__all__ = ["HiveApiError", "HiveConnectionError", "HiveError", "HiveTimeoutError"]


class HiveApiError(HiveError):
    """The gateway refused or failed a request: its ``{"error": {...}}`` body, as attributes.

    ``status`` is the HTTP status, ``code`` the gateway's code (``invalid_field``, ``not_found``,
    ``conflict``, ``unauthorized``, ``unavailable``...), ``field`` the offending field if any.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details or []

    @property
    def retryable(self) -> bool:
        """503: the event log was unreachable and nothing was stored; the same request may be sent again."""
        return self.status == 503


class HiveConnectionError(HiveError):
    """The gateway could not be reached (refused, reset, timed out on the wire)."""


class HiveTimeoutError(HiveError, TimeoutError):
    """A wait (``wait_for_task``, ``wait_for_workflow``) ended before what it waited for."""
