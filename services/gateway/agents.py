"""The gateway's agent desk: register an agent (a new session each time), list agents with their load
(and, for a stalled agent, why)."""

from __future__ import annotations

from collections.abc import Callable

from services.gateway.core import GatewayCore
from services.gateway.errors import ApiError
from services.gateway.schemas import AgentOut, AgentStallOut, RegisterAgentRequest, RegisterAgentResponse
from shared.domain.fleet import AgentStall
from shared.events import AgentRegistered
from shared.ids import new_id


def _never_heard(_agent_id: str) -> float | None:
    return None


class AgentDesk:
    """Takes the core and `heard`: when an agent's last heartbeat reached this gateway (heartbeats
    are signals, not events: the recovery desk listens to them)."""

    def __init__(self, core: GatewayCore, heard: Callable[[str], float | None] = _never_heard) -> None:
        self.core = core
        self.heard = heard

    async def register(self, data: RegisterAgentRequest) -> RegisterAgentResponse:
        """A registration is a fact that cannot conflict: appended without a concurrency check."""
        agent_id = data.agent_id or new_id()
        capabilities = (
            {c: 1.0 for c in data.capabilities} if isinstance(data.capabilities, list) else data.capabilities
        )
        session = new_id()
        result = await self.core.bus.append(
            AgentRegistered(
                agent_id=agent_id,
                name=data.name or agent_id,
                capabilities=capabilities,
                persona=data.persona,
                capacity=data.capacity,
                session=session,
                metadata=data.metadata,
                labels=data.labels,
            ),
            expected=None,
        )
        return RegisterAgentResponse(agent_id=agent_id, session=session, seq=result.seq)

    def listed(self, status: str | None = None, capability: str | None = None) -> list[AgentOut]:
        """Every agent (the fleet is small: all of it is in memory), by id; `status` and `capability`
        (offered, at any proficiency) narrow it."""
        agents = [
            a
            for a in self.core.view.state.fleet.agents.values()
            if (status is None or a.status == status) and (capability is None or capability in a.capabilities)
        ]
        return [
            AgentOut(
                agent_id=a.agent_id,
                name=a.name,
                status=a.status,
                capabilities=a.capabilities,
                persona=a.persona,
                capacity=a.capacity,
                in_flight=a.load,
                utilisation=round(a.utilisation, 4),
                assigned_total=a.assigned_total,
                completed=a.completed,
                failed=a.failed,
                labels=a.labels,
                last_assigned_seq=a.last_assigned_seq,
                stall=_stall_out(a.stall),
                last_heartbeat_ts=self.heard(a.agent_id),
            )
            for a in sorted(agents, key=lambda a: a.agent_id)
        ]

    def one(self, agent_id: str) -> AgentOut:
        found = [a for a in self.listed() if a.agent_id == agent_id]
        if not found:
            raise ApiError(404, "not_found", f"agent {agent_id!r} is not registered")
        return found[0]


def _stall_out(stall: AgentStall | None) -> AgentStallOut | None:
    if stall is None:
        return None
    return AgentStallOut(
        since=stall.ts,
        seq=stall.seq,
        received_seq=stall.received_seq,
        pending_seq=stall.pending_seq,
        reason=stall.reason,
    )
