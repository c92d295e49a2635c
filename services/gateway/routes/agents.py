"""Agent registration and listing."""

from __future__ import annotations

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from services.gateway.errors import ApiError
from services.gateway.schemas import AgentOut, RegisterAgentRequest, RegisterAgentResponse
from services.gateway.service import GatewayService

Gateway = NamedDependency[GatewayService]


@post("/api/v1/agents", status_code=201, summary="Register an agent")
async def register_agent(data: JSONBody[RegisterAgentRequest], gateway: Gateway) -> RegisterAgentResponse:
    return await gateway.register_agent(data)


@get("/api/v1/agents", summary="List agents with their load")
async def list_agents(gateway: Gateway) -> list[AgentOut]:
    return gateway.agents_out()


@get("/api/v1/agents/{agent_id:str}", summary="One agent")
async def get_agent(agent_id: FromPath[str], gateway: Gateway) -> AgentOut:
    found = [a for a in gateway.agents_out() if a.agent_id == agent_id]
    if not found:
        raise ApiError(404, "not_found", f"agent {agent_id!r} is not registered")
    return found[0]


ROUTES = [register_agent, list_agents, get_agent]
