"""The gateway's one error shape for a command other writers kept beating."""

from __future__ import annotations

from litestar import post
from litestar.testing import create_test_client

from services.gateway.errors import EXCEPTION_HANDLERS
from shared.command import KeepsChanging


@post("/busy")
async def busy() -> None:
    raise KeepsChanging("task 't1'", 20)


def test_a_command_that_kept_losing_answers_409_naming_what_kept_changing() -> None:
    with create_test_client([busy], exception_handlers=EXCEPTION_HANDLERS) as client:
        reply = client.post("/busy")
    assert reply.status_code == 409
    assert reply.json() == {
        "error": {
            "status": 409,
            "code": "conflict",
            "message": "task 't1' keeps changing; try again",
            "field": None,
            "details": [],
        }
    }
