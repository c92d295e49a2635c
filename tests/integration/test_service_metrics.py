"""Every service exposes Prometheus metrics over HTTP (its own port; the gateway on its HTTP port)."""

from __future__ import annotations

import time

import httpx

from services.balancer.service import BalancerService
from services.cli.stack import Stack
from services.gateway.service import GatewayService
from services.recovery.service import RecoveryService
from services.router.service import RouterService
from services.workflow.service import WorkflowService
from shared.bus import EventBus
from shared.events import AgentRegistered, BreakerReset, WorkflowCompleted, WorkflowFailed
from shared.service import Service
from shared.settings import Settings, load_settings
from tests.conftest import running


async def scrape(service: Service) -> str:
    assert service.metrics_port is not None and service.metrics_port > 0
    health = service.health()
    assert health.metrics_port == service.metrics_port, "the health reply says where the metrics are"
    async with httpx.AsyncClient(timeout=5) as client:
        reply = await client.get(f"http://127.0.0.1:{service.metrics_port}/metrics")
    assert reply.status_code == 200
    return reply.text


async def test_every_service_serves_its_orchestration_metrics(settings: Settings, bus: EventBus) -> None:
    await bus.append(
        AgentRegistered(agent_id="a1", capabilities={"review": 1.0}, capacity=4, session="s"), expected=None
    )
    await bus.append(BreakerReset(agent_id="a1"), expected=None)
    await bus.append(WorkflowCompleted(workflow_id="w1"), expected=None)
    await bus.append(WorkflowCompleted(workflow_id="w2"), expected=None)
    await bus.append(WorkflowFailed(workflow_id="w3"), expected=None)
    async with (
        running(RouterService, settings, metrics_port=0) as router,
        running(BalancerService, settings, metrics_port=0, rebalance_interval_s=3600.0) as balancer,
        running(RecoveryService, settings, metrics_port=0) as recovery,
        running(WorkflowService, settings, metrics_port=0) as workflow,
        running(GatewayService, settings, metrics_port=0) as gateway,
    ):
        assert "orchestration_task_assignment_duration_seconds_bucket" in await scrape(router)

        await balancer.tick(time.time())
        text = await scrape(balancer)
        assert 'orchestration_agent_utilization_ratio{agent_id="a1"} 0.0' in text
        assert "orchestration_load_balancing_efficiency_ratio" in text

        text = await scrape(recovery)
        assert 'orchestration_circuit_breaker_state{agent_id="a1"} 0.0' in text
        assert "orchestration_failure_recovery_duration_seconds_bucket" in text

        assert "orchestration_workflow_completion_rate 0.666" in await scrape(workflow)

        text = await scrape(gateway)
        for name in (
            "orchestration_routing_accuracy_ratio",
            "orchestration_system_throughput_tasks_per_second",
            "orchestration_performance_score",
            "hive_agents",
        ):
            assert name in text


def test_a_stack_gives_each_instance_its_own_metrics_port(tmp_path: object) -> None:
    stack = Stack(
        settings=load_settings({}, metrics_port=9100, hive_home=str(tmp_path)),
        scale={"router": 2, "gateway": 2},
    )
    ports = {
        (name, index): stack.child_env(name, index).get("METRICS_PORT")
        for name, count in (("router", 2), ("balancer", 1), ("recovery", 1), ("workflow", 1), ("gateway", 2))
        for index in range(count)
    }
    own = [int(port) for (name, _i), port in ports.items() if name != "gateway" and port is not None]
    assert sorted(own) == list(range(9100, 9105))
    assert ports[("gateway", 1)] == "-1"  # the gateway serves /metrics on its HTTP port


async def test_health_counts_the_messages_each_consumer_received(settings: Settings, bus: EventBus) -> None:
    async with running(RouterService, settings) as router:
        before = router.health().delivered
        await bus.append(
            AgentRegistered(agent_id="a1", capabilities={"review": 1.0}, capacity=4, session="s"),
            expected=None,
        )
        last = (await bus.append(BreakerReset(agent_id="a1"), expected=None)).seq
        await router.view.wait_for(last)
        after = router.health().delivered
    # Both events reach the projection; neither is work (submissions and requeues are).
    assert after["projection:router"] - before["projection:router"] == 2
    assert set(after) == {"projection:router", "work:router", "work:router-requeues"}
    assert after["work:router"] == before["work:router"] == 0


async def test_recovery_shows_a_breaker_that_never_moved_as_closed(settings: Settings, bus: EventBus) -> None:
    await bus.append(
        AgentRegistered(agent_id="fresh", capabilities={"review": 1.0}, session="s"), expected=None
    )
    async with running(RecoveryService, settings, metrics_port=0) as recovery:
        assert 'orchestration_circuit_breaker_state{agent_id="fresh"} 0.0' in await scrape(recovery)
        seq = (
            await bus.append(
                AgentRegistered(agent_id="later", capabilities={"review": 1.0}, session="s"), expected=None
            )
        ).seq
        await recovery.view.wait_for(seq)
        assert 'orchestration_circuit_breaker_state{agent_id="later"} 0.0' in await scrape(recovery)
