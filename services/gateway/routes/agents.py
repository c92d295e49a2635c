"""Agent registration and listing."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from services.gateway.agents import AgentDesk
from services.gateway.routes.params import only_known
from services.gateway.schemas import AgentOut, RegisterAgentRequest, RegisterAgentResponse
from shared.domain.fleet import AgentStatus

Agents = NamedDependency[AgentDesk]
LIST_AGENTS_PARAMS = frozenset({"status", "capability"})


@post("/api/v1/agents", status_code=201, summary="Register an agent")
async def register_agent(data: JSONBody[RegisterAgentRequest], agent_desk: Agents) -> RegisterAgentResponse:
    return await agent_desk.register(data)


@get(
    "/api/v1/agents",
    summary="List agents with their load",
    description="By agent id. status and capability (an agent offering it, at any proficiency) narrow "
    "the list; an unknown query parameter is refused with 400.",
)
async def list_agents(
    request: Request[Any, Any, Any],
    agent_desk: Agents,
    status: FromQuery[AgentStatus | None] = None,
    capability: FromQuery[str | None] = None,
) -> list[AgentOut]:
    only_known(request, LIST_AGENTS_PARAMS)
    return agent_desk.listed(status, capability)


@get("/api/v1/agents/{agent_id:str}", summary="One agent")
async def get_agent(agent_id: FromPath[str], agent_desk: Agents) -> AgentOut:
    return agent_desk.one(agent_id)


ROUTES = [register_agent, list_agents, get_agent]
