"""Recovery: report a failure, watch and reset circuit breakers, predict failures."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from services.gateway.recovery import RecoveryDesk
from services.gateway.recovery_schemas import (
    BreakerResetRequest,
    BreakerResetResponse,
    CircuitBreakersResponse,
    FailureHandleRequest,
    FailureHandleResponse,
    PredictResponse,
)
from shared.ids import ID_PATTERN

Recovery = NamedDependency[RecoveryDesk]
AgentFilter = Annotated[str | None, Parameter(pattern=ID_PATTERN, description="only this agent")]


@post(
    "/api/v1/orchestration/failure/handle",
    summary="Report a failure; recovery applies the strategy for its type and severity",
    description="200 with what recovery did when it acted within ASSIGN_WAIT_MS, else 202 with the "
    "strategy it will follow. 404 when the agent or task is unknown, 409 on a reused incident_id.",
)
async def handle_failure(
    data: JSONBody[FailureHandleRequest], recovery_desk: Recovery
) -> Response[FailureHandleResponse]:
    answer = await recovery_desk.handle_failure(data)
    return Response(answer, status_code=200 if answer.status == "handled" else 202)


@get("/api/v1/orchestration/circuit-breakers", summary="Circuit breaker of every agent, with its window")
async def circuit_breakers(
    recovery_desk: Recovery,
    status: Annotated[Literal["closed", "open", "half_open"] | None, Parameter(description="filter")] = None,
    agent_id: AgentFilter = None,
) -> CircuitBreakersResponse:
    return recovery_desk.circuit_breakers(status, agent_id)


@post(
    "/api/v1/orchestration/circuit-breakers/{agent_id:str}/reset",
    status_code=200,
    summary="Close an agent's circuit breaker by hand, with an empty window",
)
async def reset_breaker(
    agent_id: FromPath[str], recovery_desk: Recovery, data: JSONBody[BreakerResetRequest | None] = None
) -> BreakerResetResponse:
    return await recovery_desk.reset_breaker(agent_id, data or BreakerResetRequest())


@get(
    "/api/v1/orchestration/recovery/predict",
    summary="Failure probability per agent, with the factors behind it",
)
async def predict_failures(
    recovery_desk: Recovery,
    agent_id: AgentFilter = None,
    time_horizon_minutes: Annotated[
        float, Parameter(ge=1, le=1440, description="minutes the probabilities are over (default 30)")
    ] = 30.0,
) -> PredictResponse:
    return recovery_desk.predictions(agent_id, time_horizon_minutes)


ROUTES = [handle_failure, circuit_breakers, reset_breaker, predict_failures]
