"""Parameters routes declare the same way: ids in paths, the sequence a read waits for, pages.

Every id in a path becomes a NATS subject token (``hive.evt.task.<id>.>``), so every one is held to
the one id rule (``shared/ids.py``) before a handler sees it: a route declares ``task_id: PathId``
and a malformed id is a 400 naming it (a well-formed id that does not exist is the handler's 404).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from litestar import Request
from litestar.params import Parameter, PathParameter

from services.gateway.errors import ApiError
from services.gateway.query.filters import MAX_LIMIT, BadCursor, Page, decode_cursor
from shared.ids import ID_PATTERN, ID_RULE

PathId = Annotated[
    str,
    PathParameter(pattern=ID_PATTERN, min_length=1, max_length=64, description=f"an id: {ID_RULE}"),
]
AfterSeq = Annotated[
    int | None,
    Parameter(
        ge=0,
        description="answer once the gateway has applied the log up to this sequence (read your "
        "writes: the seq an earlier answer returned); 400 when the log does not reach it",
    ),
]
IdFilter = Annotated[
    str | None, Parameter(pattern=ID_PATTERN, max_length=64, description=f"only this one (an id: {ID_RULE})")
]
Limit = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description=f"items per page, 1 to {MAX_LIMIT}")]


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
    """The page a list request asks for; a cursor it was not given is a 400."""
    if cursor is None:
        return Page(limit=limit)
    try:
        return Page(limit=limit, before_seq=decode_cursor(kind, cursor))
    except BadCursor as exc:
        raise ApiError(400, "invalid_field", f"invalid field 'cursor': {exc}", "cursor") from None
