"""Recovery: report a failure, watch and reset circuit breakers, predict failures."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from services.gateway.openapi import READ, WRITE, also, refusals
from services.gateway.params import IdFilter, PathId
from services.gateway.recovery import RecoveryDesk
from services.gateway.recovery_schemas import (
    BreakerResetRequest,
    BreakerResetResponse,
    CircuitBreakersResponse,
    FailureHandleRequest,
    FailureHandleResponse,
    PredictResponse,
)

Recovery = NamedDependency[RecoveryDesk]


@post(
    "/api/v1/orchestration/failure/handle",
    summary="Report a failure; recovery applies the strategy for its type and severity",
    description="200 with what recovery did when it acted within ASSIGN_WAIT_MS, else 202 with the "
    "strategy it will follow. 404 when the agent or task is unknown, 409 on a reused incident_id.",
    status_code=200,
    responses={
        **also(202, FailureHandleResponse, "Reported: recovery has not acted; the strategy it will follow"),
        **refusals(*WRITE, 404, 409),
    },
)
async def handle_failure(
    data: JSONBody[FailureHandleRequest], recovery_desk: Recovery
) -> Response[FailureHandleResponse]:
    answer = await recovery_desk.handle_failure(data)
    return Response(answer, status_code=200 if answer.status == "handled" else 202)


@get(
    "/api/v1/orchestration/circuit-breakers",
    summary="Circuit breaker of every agent, with its window",
    responses=refusals(*READ, 404),
)
async def circuit_breakers(
    recovery_desk: Recovery,
    status: Annotated[Literal["closed", "open", "half_open"] | None, Parameter(description="filter")] = None,
    agent_id: IdFilter = None,
) -> CircuitBreakersResponse:
    return recovery_desk.circuit_breakers(status, agent_id)


@post(
    "/api/v1/orchestration/circuit-breakers/{agent_id:str}/reset",
    status_code=200,
    summary="Close an agent's circuit breaker by hand, with an empty window",
    responses=refusals(*WRITE, 404, 409),
)
async def reset_breaker(
    agent_id: PathId, recovery_desk: Recovery, data: JSONBody[BreakerResetRequest | None] = None
) -> BreakerResetResponse:
    return await recovery_desk.reset_breaker(agent_id, data or BreakerResetRequest())


@get(
    "/api/v1/orchestration/recovery/predict",
    summary="Failure probability per agent, with the factors behind it",
    responses=refusals(*READ, 404),
)
async def predict_failures(
    recovery_desk: Recovery,
    agent_id: IdFilter = None,
    time_horizon_minutes: Annotated[
        float, Parameter(ge=1, le=1440, description="minutes the probabilities are over (default 30)")
    ] = 30.0,
) -> PredictResponse:
    return recovery_desk.predictions(agent_id, time_horizon_minutes)


ROUTES = [handle_failure, circuit_breakers, reset_breaker, predict_failures]
