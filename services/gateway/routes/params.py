"""Query parameters of the list endpoints: unknown ones are refused (400 naming them), cursors read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Request

from services.gateway.errors import ApiError
from services.gateway.query.filters import BadCursor, Page, decode_cursor


def only_known(request: Request[Any, Any, Any], known: Iterable[str]) -> None:
    """400 for a query parameter the endpoint does not take (a misspelt filter must not be ignored)."""
    allowed = set(known)
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise ApiError(
            400,
            "unknown_filter",
            f"unknown query parameter(s) {', '.join(repr(name) for name in unknown)}; "
            f"this endpoint takes {', '.join(sorted(allowed))}",
            unknown[0],
        )


def page_of(kind: str, limit: int, cursor: str | None) -> Page:
    if cursor is None:
        return Page(limit=limit)
    try:
        return Page(limit=limit, before_seq=decode_cursor(kind, cursor))
    except BadCursor as exc:
        raise ApiError(400, "invalid_field", f"invalid field 'cursor': {exc}", "cursor") from None
