"""What every request passes before its handler: the bearer token, then a body within bounds; a
read also waits until the gateway has applied its own acknowledged writes (``before_read``).

One place for every route, so a route added later is covered without doing anything: the token
(when ``HIVE_API_TOKEN`` is set; health and the API description are public), the body's size
(``GATEWAY_MAX_BODY_BYTES``, 413), its nesting (``MAX_NESTING``, 400: a deeper document would make
the JSON decoder recurse without bound) and its presence where the handler needs one (400).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException

from services.gateway.errors import ApiError
from services.gateway.tickets import ticket_is_valid
from shared.nesting import MAX_NESTING, json_nests_deeper

PUBLIC_PATHS = frozenset({"/api/v1/orchestration/health", "/", "/ui"})
PUBLIC_PREFIXES = ("/api/v1/schema", "/ui/")
"""The OpenAPI description and its viewers: public, so a client can learn how to authenticate; the
dashboard's static files: public, the page asks for the token and sends it with every request."""
STREAM_PATH = "/api/v1/stream"
"""The live stream: a browser's EventSource sends no header, so it may show a ticket instead."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
READ_METHODS = frozenset({"GET", "HEAD"})

Guard = Callable[[Request[Any, Any, Any]], Awaitable[Response[Any] | None]]


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def check_token(request: Request[Any, Any, Any], api_token: str) -> None:
    """401 without ``Authorization: Bearer <api_token>`` (no check when no token is configured); the
    live stream also opens with a valid ``?ticket=`` (``tickets.py``)."""
    if not api_token or is_public(request.url.path):
        return
    ticket = request.query_params.get("ticket") if request.url.path == STREAM_PATH else None
    if ticket is not None:
        if ticket_is_valid(api_token, ticket, time.time()):
            return
        raise ApiError(
            401, "unauthorized", "invalid or expired stream ticket: get one at POST /api/v1/stream/ticket"
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_token.encode()):
        raise ApiError(401, "unauthorized", "missing or invalid bearer token")


def _needs_body(request: Request[Any, Any, Any]) -> bool:
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    return data is not None and not data.has_default


async def check_body(request: Request[Any, Any, Any], max_bytes: int) -> None:
    """Read the body once (Litestar keeps it for the handler) and refuse it if it is out of bounds."""
    if request.method not in BODY_METHODS:
        return
    try:
        body = await request.body()
    except HTTPException as exc:
        if exc.status_code == 413:
            raise ApiError(
                413,
                "payload_too_large",
                f"the request body is larger than {max_bytes} bytes, the most this gateway reads "
                "(GATEWAY_MAX_BODY_BYTES)",
            ) from None
        raise
    if not body.strip():
        if _needs_body(request):
            raise ApiError(400, "missing_body", "the request body is missing: send a JSON object")
        return
    if json_nests_deeper(body, MAX_NESTING):
        raise ApiError(400, "too_deep", f"the request body nests deeper than {MAX_NESTING} levels")


def guard(
    api_token: str, max_body_bytes: int, before_read: Callable[[], Awaitable[None]] | None = None
) -> Guard:
    """The ``before_request`` hook of the application: token first, then the body; a read of the
    API (not health, not the dashboard's files) then awaits `before_read` (read-your-writes)."""

    async def before_request(request: Request[Any, Any, Any]) -> Response[Any] | None:
        check_token(request, api_token)
        await check_body(request, max_body_bytes)
        if before_read is not None and request.method in READ_METHODS and not is_public(request.url.path):
            await before_read()
        return None

    return before_request
