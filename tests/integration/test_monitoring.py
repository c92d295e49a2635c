"""One scrape target: the gateway's /metrics carries all seven orchestration_* series of the fleet, and
every query of the provisioned Grafana dashboard names a series it actually exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from services.gateway.service import GatewayService
from shared.bus import EventBus
from shared.events import AgentRegistered, BreakerOpened, TaskAssigned, TaskSubmitted
from shared.settings import Settings
from tests.conftest import running

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "hive-orchestration.json"
SEVEN = (
    "orchestration_task_assignment_duration_seconds",
    "orchestration_load_balancing_efficiency_ratio",
    "orchestration_routing_accuracy_ratio",
    "orchestration_failure_recovery_duration_seconds",
    "orchestration_workflow_completion_rate",
    "orchestration_circuit_breaker_state",
    "orchestration_agent_utilization_ratio",
)
DOCUMENT_PANELS = (
    "Real-time orchestration performance",
    "Load-balancing efficiency",
    "Routing accuracy trend",
    "Failure recovery statistics",
    "Circuit breaker status",
    "Agent utilisation heatmap",
)


def samples(exposition: str) -> dict[str, float]:
    """``name{labels}`` -> value of every sample line."""
    found = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def names(exposition: str) -> set[str]:
    return {key.split("{", 1)[0] for key in samples(exposition)}


async def fleet_of_two(bus: EventBus) -> None:
    """Two agents, one of whose breakers opened; one task assigned 12 ms after its submission."""
    for agent_id in ("calm", "tripped"):
        registered = AgentRegistered(agent_id=agent_id, capabilities={"x": 1.0}, capacity=4, session="s")
        await bus.append(registered, expected=None)
    await bus.append(BreakerOpened(agent_id="tripped", reason="test"), expected=None)
    await bus.append(TaskSubmitted(task_id="t", task_type="x", ts=100.0), expected=0)
    await bus.append(TaskAssigned(agent_id="calm", task_id="t", attempt=1, ts=100.012), expected=None)


async def scrape(settings: Settings, bus: EventBus) -> str:
    async with running(GatewayService, settings) as gateway:
        await gateway.view.catch_up()
        async with httpx.AsyncClient(timeout=5) as client:
            reply = await client.get(f"http://127.0.0.1:{gateway.port}/metrics")
    assert reply.status_code == 200
    return reply.text


async def test_the_gateway_alone_exports_all_seven_and_a_closed_breaker_shows_zero(
    settings: Settings, bus: EventBus
) -> None:
    await fleet_of_two(bus)
    text = await scrape(settings, bus)
    assert set(SEVEN) <= {re.sub(r"_(bucket|sum|count)$", "", name) for name in names(text)}
    found = samples(text)
    assert found['orchestration_circuit_breaker_state{agent_id="calm"}'] == 0.0, "closed: 0, not absent"
    assert found['orchestration_circuit_breaker_state{agent_id="tripped"}'] == 2.0
    assert found['orchestration_agent_utilization_ratio{agent_id="calm"}'] == 0.25
    assert found['orchestration_agent_utilization_ratio{agent_id="tripped"}'] == 0.0
    assert found['orchestration_task_assignment_duration_seconds_bucket{le="0.01"}'] == 0.0
    assert found['orchestration_task_assignment_duration_seconds_bucket{le="0.015"}'] == 1.0
    assert found["orchestration_task_assignment_duration_seconds_count"] == 1.0
    assert found['orchestration_failure_recovery_duration_seconds_bucket{le="+Inf"}'] == 0.0


async def test_every_dashboard_query_names_a_series_the_gateway_exports(
    settings: Settings, bus: EventBus
) -> None:
    await fleet_of_two(bus)
    exported = names(await scrape(settings, bus))
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert set(DOCUMENT_PANELS) <= set(titles), "the document's panels"
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            used = set(re.findall(r"\b(?:orchestration|hive)_[a-z_]+\b", target["expr"]))
            assert used, f"{panel['title']!r}: {target['expr']!r} names no Hive series"
            assert used <= exported, f"{panel['title']!r} queries {sorted(used - exported)}, not exported"
            queried |= used
    assert {re.sub(r"_(bucket|sum|count)$", "", name) for name in queried} >= set(SEVEN)
