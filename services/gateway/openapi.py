"""What the OpenAPI description says beyond each handler's own types: refusals, other answers, auth.

Every refusal has the one error shape (``ErrorResponse``); a route lists the statuses it can refuse
with (``refusals(400, 401, 404)``) and any other success it answers with (``also(202, ...)``), so
the description is what the server does (Schemathesis checks it in ``tests/integration/
test_openapi_conformance.py``; ``tests/unit/test_openapi.py`` checks that every route documents
its refusals). The bearer token is the API's one security scheme; health and this description
are public.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, Schema, SecurityRequirement, SecurityScheme
from litestar.typing import FieldDefinition

from services.gateway.schemas import ErrorResponse

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

BEARER: Final = "bearer"
SCHEMA_PATH: Final = "/api/v1/schema"

REFUSALS: Final[dict[int, str]] = {
    400: "Bad input: the body, a field, an id or a parameter named in `error.field` and `error.message`",
    401: "Missing or invalid bearer token (when HIVE_API_TOKEN is set)",
    404: "No such task, workflow or agent",
    409: "Conflict: the id exists already, the thing has already ended, or it keeps changing (try again)",
    413: "The request body is over GATEWAY_MAX_BODY_BYTES, or the event it makes over one NATS message",
    503: "The event log is unavailable; retry after the Retry-After header's seconds",
}

READ: Final = (400, 401)
"""What a read with parameters may be refused with."""
WRITE: Final = (400, 401, 413, 503)
"""What every route with a body may be refused with."""

PUBLIC: Final[list[SecurityRequirement]] = [{}]
"""The security of a public route: anyone, token or not."""


def refusals(*statuses: int, meaning: Mapping[int, str] | None = None) -> dict[int, ResponseSpec]:
    """The statuses a route refuses with, each documented with the one error shape; `meaning`
    replaces the common description of a status where the route says more (what a retry does)."""
    said = {**REFUSALS, **(meaning or {})}
    return {
        status: ResponseSpec(data_container=ErrorResponse, description=said[status], generate_examples=False)
        for status in sorted(set(statuses))
    }


def also(status: int, model: Any, description: str) -> dict[int, ResponseSpec]:
    """Another answer a route gives besides its declared status (e.g. 202 while still pending)."""
    return {status: ResponseSpec(data_container=model, description=description, generate_examples=False)}


class StrictStructs(StructSchemaPlugin):
    """Request bodies as Litestar describes msgspec Structs, plus ``additionalProperties: false`` for
    those that refuse unknown fields, as the server does (a client learns it from the description)."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        config = getattr(field_definition.type_, "__struct_config__", None)
        if isinstance(config, msgspec.structs.StructConfig) and config.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Hive orchestration API",
        version="1.0.0",
        path=SCHEMA_PATH,
        description="Route tasks to AI agents, run workflows, watch the fleet. Every refusal has one "
        'shape: {"error": {"status", "code", "message", "field", "details"}}. With HIVE_API_TOKEN '
        "set, every operation but health needs 'Authorization: Bearer <token>'; this description is "
        "public. Request bodies: at most GATEWAY_MAX_BODY_BYTES (1 MiB by default), nested at most "
        "64 levels. Ids (in paths and bodies): 1-64 letters, digits, '_' or '-'.",
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http", scheme="bearer", description="the value of HIVE_API_TOKEN"
                )
            }
        ),
        security=[{BEARER: []}],
    )
