"""The event log as a timeline over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, Parameter, QueryParameter

from services.gateway.errors import ApiError
from services.gateway.events import EVENTS, EventDesk, timeline_filter
from services.gateway.openapi import READ, refusals
from services.gateway.params import Limit, only_known
from services.gateway.query.filters import DEFAULT_LIMIT, MAX_LIMIT, BadCursor, decode_cursor
from services.gateway.schemas import EventPage
from shared.ids import ID_PATTERN
from shared.subjects import Aggregate

Events = NamedDependency[EventDesk]
LIST_EVENTS_PARAMS = frozenset({"aggregate", "id", "type", "after_seq", "limit", "cursor"})


@get(
    "/api/v1/events",
    summary="The event log as a timeline: one aggregate, one id, one event type, after a sequence",
    description="What `hive replay` shows, read from the log with a consumer filtered on the server "
    "(a page costs the same whatever the log's length). type is `task.completed`, or `completed` "
    "with aggregate; id needs aggregate. Events with a sequence above after_seq (default 0), in log "
    f"order, limit defaults to {DEFAULT_LIMIT}, at most {MAX_LIMIT}; pass next_cursor back as "
    "cursor for the next events (instead of after_seq). An unknown query parameter is refused with 400.",
    responses=refusals(*READ, 503),
)
async def list_events(
    request: Request[Any, Any, Any],
    event_desk: Events,
    aggregate: FromQuery[Aggregate | None] = None,
    aggregate_id: Annotated[
        str | None,
        QueryParameter(
            name="id", pattern=ID_PATTERN, max_length=64, description="an id within the aggregate"
        ),
    ] = None,
    type_name: Annotated[str | None, QueryParameter(name="type")] = None,
    after_seq: Annotated[int | None, Parameter(ge=0)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
) -> EventPage:
    only_known(request, LIST_EVENTS_PARAMS)
    start = after_seq or 0
    if cursor is not None:
        if after_seq is not None:
            raise ApiError(400, "invalid_field", "give cursor or after_seq, not both", "cursor")
        try:
            start = decode_cursor(EVENTS, cursor)
        except BadCursor as exc:
            raise ApiError(400, "invalid_field", f"invalid field 'cursor': {exc}", "cursor") from None
    selection = timeline_filter(aggregate, aggregate_id, type_name)
    return await event_desk.timeline(selection, start, limit)


ROUTES = [list_events]
