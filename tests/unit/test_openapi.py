"""The OpenAPI description documents every refusal in the one error shape, and the bearer token."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

import pytest

from services.gateway.app import Desks, create_app
from services.gateway.openapi import BEARER

ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    desks = [None] * len(dataclasses.fields(Desks))
    app = create_app(Desks(*desks))  # type: ignore[arg-type]  # the description needs no desk
    described: dict[str, Any] = app.openapi_schema.to_schema()
    return described


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def test_the_bearer_token_is_the_security_scheme_and_only_health_is_public(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"][BEARER] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the value of HIVE_API_TOKEN",
    }
    assert schema["security"] == [{BEARER: []}]
    public = [path for _method, path, op in operations(schema) if op.get("security") == [{}]]
    assert public == ["/api/v1/orchestration/health"]


def test_every_refusal_is_documented_in_the_one_error_shape(schema: dict[str, Any]) -> None:
    for method, path, op in operations(schema):
        responses = op["responses"]
        public = op.get("security") == [{}]
        expected = set()
        if not public:
            expected.add("401")
        if op.get("parameters") or op.get("requestBody"):
            expected.add("400")
        if op.get("requestBody"):
            expected |= {"413", "503"}
        assert expected <= set(responses), (method, path, sorted(responses))
        for status, response in responses.items():
            if status.startswith("4") or (status == "503" and not public):
                assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (
                    method,
                    path,
                    status,
                )


def test_litestar_s_own_error_shape_is_described_nowhere(schema: dict[str, Any]) -> None:
    text = str(schema)
    assert "status_code" not in text and "'extra'" not in text


def successes(schema: dict[str, Any], method: str, path: str) -> set[str]:
    return {status for status in schema["paths"][path][method]["responses"] if status.startswith("2")}


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/api/v1/orchestration/task/assign", {"200", "202"}),
        ("/api/v1/orchestration/failure/handle", {"200", "202"}),
        ("/api/v1/orchestration/load-balancing/optimize", {"200", "202"}),
        ("/api/v1/orchestration/workflow/execute", {"202"}),
        ("/api/v1/agents", {"201"}),
        ("/api/v1/tasks/{task_id}/cancel", {"200"}),
    ],
)
def test_each_post_documents_the_statuses_it_answers_with(
    schema: dict[str, Any], path: str, statuses: set[str]
) -> None:
    assert successes(schema, "post", path) == statuses


def test_request_bodies_that_refuse_unknown_fields_say_so(schema: dict[str, Any]) -> None:
    assert schema["components"]["schemas"]["TaskAssignRequest"]["additionalProperties"] is False


def test_task_assign_says_a_retry_is_answered_as_the_original_and_what_its_409_and_503_mean(
    schema: dict[str, Any],
) -> None:
    operation = schema["paths"]["/api/v1/orchestration/task/assign"]["post"]
    assert "answered as the original" in operation["description"]
    responses = operation["responses"]
    assert "other content" in responses["409"]["description"]
    assert "may have been stored" in responses["503"]["description"]
    assert "Retry-After" in responses["503"]["description"]


def test_an_app_starts_no_logging_thread_and_leaves_stdlib_logging_as_it_was() -> None:
    """Every log line is structlog's: Litestar's default logging config (a queue-listener thread per
    app, stdlib handlers on its own logger) is not used."""
    before = {thread.ident for thread in threading.enumerate()}
    handlers = list(logging.getLogger("litestar").handlers)
    desks = [None] * len(dataclasses.fields(Desks))
    app = create_app(Desks(*desks))  # type: ignore[arg-type]
    assert app.logging_config is None
    assert {thread.ident for thread in threading.enumerate()} <= before
    assert logging.getLogger("litestar").handlers == handlers
