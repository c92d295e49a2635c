"""Agent registration and listing."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody

from services.gateway.agents import AgentDesk
from services.gateway.openapi import READ, WRITE, refusals
from services.gateway.params import AfterSeq, PathId, only_known
from services.gateway.schemas import AgentOut, RegisterAgentRequest, RegisterAgentResponse
from shared.domain.fleet import AgentStatus
from shared.events import Capability

Agents = NamedDependency[AgentDesk]
LIST_AGENTS_PARAMS = frozenset({"status", "capability", "after_seq"})


@post(
    "/api/v1/agents",
    status_code=201,
    summary="Register an agent",
    responses=refusals(*WRITE),
)
async def register_agent(data: JSONBody[RegisterAgentRequest], agent_desk: Agents) -> RegisterAgentResponse:
    return await agent_desk.register(data)


@get(
    "/api/v1/agents",
    summary="List agents with their load",
    description="By agent id. status and capability (an agent offering it, at any proficiency) narrow "
    "the list; with after_seq, once the gateway has read the log that far (an agent registered "
    "elsewhere); an unknown query parameter is refused with 400.",
    responses=refusals(*READ),
)
async def list_agents(
    request: Request[Any, Any, Any],
    agent_desk: Agents,
    status: FromQuery[AgentStatus | None] = None,
    capability: FromQuery[Capability | None] = None,
    after_seq: AfterSeq = None,
) -> list[AgentOut]:
    only_known(request, LIST_AGENTS_PARAMS)
    if after_seq is not None:
        await agent_desk.core.wait_for_seq(after_seq)
    return agent_desk.listed(status, capability)


@get("/api/v1/agents/{agent_id:str}", summary="One agent", responses=refusals(*READ, 404))
async def get_agent(agent_id: PathId, agent_desk: Agents) -> AgentOut:
    return agent_desk.one(agent_id)


ROUTES = [register_agent, list_agents, get_agent]
