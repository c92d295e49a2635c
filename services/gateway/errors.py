"""One JSON error shape for every failure, mapped in one place."""

from __future__ import annotations

from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from services.gateway.schemas import ErrorBody, ErrorResponse
from services.gateway.vocabulary import with_allowed_values
from shared.bus import EventTooDeep, EventTooLarge
from shared.command import KeepsChanging
from shared.errors import HiveError
from shared.ids import InvalidIdError, check_id
from shared.logging import get_logger

log = get_logger("hive.gateway")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(HiveError):
    """Raised by handlers: becomes ``{"error": {...}}`` with this status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
        *,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details or []
        self.retry_after_s = retry_after_s
        """Sent as ``Retry-After`` (a 503 the client should retry)."""


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response[ErrorResponse]:
    body = ErrorResponse(
        error=ErrorBody(status=status, code=code, message=message, field=field, details=details or [])
    )
    # The media type is explicit: a handler that serves HTML (the OpenAPI viewers) must still
    # send this error as JSON.
    return Response(body, status_code=status, media_type=MediaType.JSON)


def _field_of(message: str, key: str | None) -> str | None:
    """The offending field: where Litestar says (`key`) or msgspec says (`$.path`), and for an
    unknown or missing field of the object there, ``path.field`` (e.g. ``task.colour``)."""
    where = key if key and key != "data" else None
    marker = "at `$."
    if where is None and marker in message:
        where = message.split(marker, 1)[1].split("`", 1)[0]
    for named in ("unknown field `", "missing required field `"):
        if named in message:
            field = message.split(named, 1)[1].split("`", 1)[0]
            return f"{where}.{field}" if where else field
    return where


def handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorResponse]:
    details = [dict(item) for item in exc.extra] if isinstance(exc.extra, list) else []
    first = details[0] if details else {}
    if first.get("source") == "path":
        key = str(first.get("key"))
        try:
            check_id(str(request.path_params.get(key, "")), key)
        except InvalidIdError as bad:
            return error_response(400, "invalid_id", str(bad), key, details)
    message = str(first.get("message") or exc.detail)
    field = _field_of(message, first.get("key"))
    message = with_allowed_values(message, field)
    if field:
        message = f"invalid field '{field}': {message}"
    return error_response(400, "invalid_field", message, field, details)


def handle_http(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    status = exc.status_code
    if isinstance(exc.__cause__, SerializationException):
        return error_response(400, "malformed_json", f"request body is not valid JSON: {exc.detail}")
    return error_response(status, _CODES.get(status, "error"), str(exc.detail))


def handle_api(_request: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorResponse]:
    response = error_response(exc.status, exc.code, exc.message, exc.field, exc.details)
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def handle_too_large(_request: Request[Any, Any, Any], exc: EventTooLarge) -> Response[ErrorResponse]:
    """The request fits the body limit but the event it makes does not fit one NATS message."""
    return error_response(413, "payload_too_large", f"{exc} (make the payload smaller)")


def handle_too_deep(_request: Request[Any, Any, Any], exc: EventTooDeep) -> Response[ErrorResponse]:
    return error_response(400, "too_deep", str(exc), exc.field)


def handle_keeps_changing(_request: Request[Any, Any, Any], exc: KeepsChanging) -> Response[ErrorResponse]:
    """A command that other writers kept beating: nothing was appended, the client may try again."""
    return error_response(409, "conflict", f"{exc.what} keeps changing; try again")


def handle_decode(_request: Request[Any, Any, Any], exc: msgspec.DecodeError) -> Response[ErrorResponse]:
    message = str(exc)
    field = _field_of(message, None)
    return error_response(400, "invalid_field" if field else "malformed_json", message, field)


def handle_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    """NATS unreachable or JetStream not answering: nothing was lost, the client may retry."""
    log.warning("event_log_unavailable", path=request.url.path, error=repr(exc))
    response = error_response(
        503, "unavailable", f"event log unavailable, retry later ({type(exc).__name__})"
    )
    response.headers["Retry-After"] = "1"
    return response


def handle_internal(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    log.exception("gateway_internal_error", path=request.url.path)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", f"{type(exc).__name__}: {exc}")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationException: handle_validation,
    ApiError: handle_api,
    KeepsChanging: handle_keeps_changing,
    EventTooLarge: handle_too_large,
    EventTooDeep: handle_too_deep,
    msgspec.DecodeError: handle_decode,
    nats.errors.Error: handle_unavailable,
    nats.js.errors.Error: handle_unavailable,
    TimeoutError: handle_unavailable,
    HTTPException: handle_http,
    Exception: handle_internal,
}
