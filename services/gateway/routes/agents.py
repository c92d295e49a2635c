"""Agent registration and listing."""

from __future__ import annotations

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from services.gateway.agents import AgentDesk
from services.gateway.openapi import READ, WRITE, refusals
from services.gateway.params import PathId
from services.gateway.schemas import AgentOut, RegisterAgentRequest, RegisterAgentResponse

Agents = NamedDependency[AgentDesk]


@post(
    "/api/v1/agents",
    status_code=201,
    summary="Register an agent",
    responses=refusals(*WRITE),
)
async def register_agent(data: JSONBody[RegisterAgentRequest], agent_desk: Agents) -> RegisterAgentResponse:
    return await agent_desk.register(data)


@get("/api/v1/agents", summary="List agents with their load", responses=refusals(401))
async def list_agents(agent_desk: Agents) -> list[AgentOut]:
    return agent_desk.listed()


@get("/api/v1/agents/{agent_id:str}", summary="One agent", responses=refusals(*READ, 404))
async def get_agent(agent_id: PathId, agent_desk: Agents) -> AgentOut:
    return agent_desk.one(agent_id)


ROUTES = [register_agent, list_agents, get_agent]
