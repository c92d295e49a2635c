"""Balancer shell: keeps the load view and reports it in health (rebalancing comes later)."""

from __future__ import annotations

from typing import Any

from services.balancer.view import BALANCER_VIEW
from shared.service import Service


class BalancerService(Service):
    name = "balancer"

    async def setup(self) -> None:
        self.view = self.projection(BALANCER_VIEW)

    def details(self) -> dict[str, Any]:
        agents = [a for a in self.view.state.fleet.agents.values() if a.status == "active"]
        return {
            "active_agents": len(agents),
            "in_flight": sum(a.load for a in agents),
            "capacity": sum(a.capacity for a in agents),
        }
