"""The live stream (Server-Sent Events) and the ticket that opens it from a browser."""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromQuery, QueryParameter
from litestar.response import Stream

from services.gateway.events import timeline_filter
from services.gateway.openapi import READ, refusals
from services.gateway.params import only_known
from services.gateway.stream import StreamHub, StreamTicket
from shared.ids import ID_PATTERN
from shared.subjects import Aggregate

Hub = NamedDependency[StreamHub]
STREAM_PATH = "/api/v1/stream"
STREAM_PARAMS = frozenset({"aggregate", "id", "type", "ticket"})


@post(
    "/api/v1/stream/ticket",
    status_code=200,
    summary="A short-lived ticket that opens the live stream (for a browser's EventSource)",
    description="EventSource cannot send an Authorization header: trade the bearer token for a "
    "ticket valid 60 s and open GET /api/v1/stream?ticket=... with it. Signed with HIVE_API_TOKEN, "
    "so every gateway sharing the token accepts it.",
    responses=refusals(401),
)
async def stream_ticket(stream_hub: Hub) -> StreamTicket:
    return stream_hub.ticket(time.time())


@get(
    STREAM_PATH,
    summary="Every event as the gateway applies it, and every metrics sample, as Server-Sent Events",
    description="text/event-stream, open until the gateway stops. Frames: `hello` {seq} first (load "
    "what you show as of then), `event` {seq, subject, type, ts, aggregate, id, event} (the SSE id is "
    "the sequence; `event` null and `truncated` true above 16 KiB), `sample` (a metrics history "
    "sample, every MONITORING_INTERVAL_SECONDS), `resync` {seq, reason} (this stream fell behind: "
    "reload), and `: keep-alive` comments every 15 s. aggregate, id and type narrow the events as "
    "in GET /api/v1/events. Authorization: the bearer token, or `ticket` from "
    "POST /api/v1/stream/ticket (EventSource sends no header).",
    responses={
        200: ResponseSpec(
            data_container=str,
            description="The stream (text/event-stream)",
            media_type="text/event-stream",
            generate_examples=False,
        ),
        **refusals(*READ),
    },
)
async def stream_events(
    request: Request[Any, Any, Any],
    stream_hub: Hub,
    aggregate: FromQuery[Aggregate | None] = None,
    aggregate_id: Annotated[
        str | None,
        QueryParameter(
            name="id", pattern=ID_PATTERN, max_length=64, description="an id within the aggregate"
        ),
    ] = None,
    type_name: Annotated[str | None, QueryParameter(name="type")] = None,
    ticket: Annotated[
        str | None,
        QueryParameter(max_length=200, description="from POST /api/v1/stream/ticket, instead of the header"),
    ] = None,
) -> Stream:
    only_known(request, STREAM_PARAMS)
    selection = timeline_filter(aggregate, aggregate_id, type_name)
    return Stream(
        stream_hub.frames(selection),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


ROUTES = [stream_ticket, stream_events]
