"""Each environment variable of the specification, written as it writes it, does what it says.

One test per variable of SPEC_API.md's list; each reads the variable from an environment mapping
(as a process would) and checks its effect on a running service or on the decision it drives.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from services.balancer.service import BalancerService
from services.gateway.history import MetricsHistory
from services.gateway.service import GatewayService
from services.router.service import RouterService
from shared.bus import EventBus
from shared.configured import breaker_policy, performance_targets
from shared.domain.breaker_policy import Trip, breaker_transition
from shared.domain.breakers import BreakersState, apply_breakers
from shared.domain.outcomes import OutcomesState, apply_outcomes
from shared.domain.performance_metrics import Figure, OrchestrationFigures
from shared.domain.performance_targets import check_targets
from shared.events import (
    AnyEvent,
    PerformanceAlert,
    ScaleRecommended,
    TaskAttemptFailed,
    TaskSubmitted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
)
from shared.recorded import Recorded
from shared.settings import Settings, load_settings
from tests.conftest import EventLog, running, watching_logs
from tests.integration.workflow_helpers import EXECUTE, hive, task, workflow_url

KEPT = ("nats_url", "hive_home", "gateway_port", "assign_wait_ms", "work_ack_wait_s")
"""What the test fixtures set (a private nats-server, a temp folder, a free port)."""


def from_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    """`settings` as the fixtures made them, plus the variables of `env` read as a process reads them."""
    return load_settings(env, **{name: getattr(settings, name) for name in KEPT})


# --- ORCHESTRATION_MODE=production --------------------------------------------------------------


async def test_orchestration_mode_production_routes_in_standard_mode_and_guards_the_api(
    settings: Settings,
) -> None:
    production = from_env(settings, {"ORCHESTRATION_MODE": "production", "HIVE_API_TOKEN": "tok"})
    async with (
        running(RouterService, production) as router,
        running(GatewayService, production) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http,
    ):
        assert router.details()["orchestration_mode"] == "standard"
        assert (await http.get("/api/v1/agents")).status_code == 401
        reply = await http.get("/api/v1/agents", headers={"Authorization": "Bearer tok"})
        assert reply.status_code == 200
        health = (await http.get("/api/v1/orchestration/health")).json()
        (details,) = [instance["details"] for instance in health["services"]["gateway"]]
        assert details["integration_mode"] == "production" and details["performance_alerts"] is True


def test_a_production_gateway_without_a_token_exits_2_saying_why(settings: Settings) -> None:
    env = dict(os.environ, ORCHESTRATION_MODE="production", NATS_URL=settings.nats_url, GATEWAY_PORT="0")
    env.pop("HIVE_API_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "services.gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "requires HIVE_API_TOKEN" in done.stderr
    assert "orchestration_mode_is_an_integration_mode" in done.stderr


def test_a_service_given_a_value_it_cannot_use_exits_2_naming_the_variable(settings: Settings) -> None:
    env = dict(os.environ, NATS_URL=settings.nats_url, ROUTING_ACCURACY_TARGET="150")
    done = subprocess.run(
        [sys.executable, "-m", "services.router"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "invalid_settings" in done.stderr and "ROUTING_ACCURACY_TARGET=150.0" in done.stderr


# --- MAX_CONCURRENT_WORKFLOWS -------------------------------------------------------------------


async def test_max_concurrent_workflows_bounds_the_workflows_running_at_once(
    settings: Settings, event_log: EventLog
) -> None:
    assert load_settings({"MAX_CONCURRENT_WORKFLOWS": "50"}).max_concurrent_workflows == 50
    one_at_a_time = from_env(settings, {"MAX_CONCURRENT_WORKFLOWS": "1"})
    async with hive(one_at_a_time, max_concurrent_workflows=one_at_a_time.max_concurrent_workflows) as h:
        for workflow_id in ("first", "second"):
            body = {"workflow_id": workflow_id, "tasks": [task("a")]}
            assert (await h.http.post(EXECUTE, json=body)).status_code == 202
        await event_log.wait_for(lambda evs: any(isinstance(e, WorkflowStarted) for e in evs))
        await h.workflow.view.wait_for(max(event_log.seqs))
        status = (await h.http.get(workflow_url("second"), params={"after_seq": max(event_log.seqs)})).json()
    assert [e.workflow_id for e in event_log.of_type(WorkflowStarted)] == ["first"]
    assert (status["status"], status["queue_position"]) == ("waiting", 1), "no agent: first never ends"


# --- ENABLE_CIRCUIT_BREAKERS --------------------------------------------------------------------


def failing_agent_log() -> tuple[BreakersState, OutcomesState]:
    breakers, outcomes = BreakersState(), OutcomesState()
    events: list[AnyEvent] = [
        TaskAttemptFailed(task_id=f"t{i}", agent_id="a", attempt=1, ts=100.0) for i in range(20)
    ]
    for seq, event in enumerate(events, start=1):
        apply_breakers(breakers, Recorded(seq, event.subject, event))
        apply_outcomes(outcomes, Recorded(seq, event.subject, event))
    return breakers, outcomes


def test_enable_circuit_breakers_decides_whether_a_failing_agent_is_cut_off() -> None:
    breakers, outcomes = failing_agent_log()
    for written, trips in (("true", True), ("false", False)):
        policy = breaker_policy(load_settings({"ENABLE_CIRCUIT_BREAKERS": written}))
        decision = breaker_transition(breakers.breakers.get("a"), outcomes.agents.get("a"), 101.0, policy)
        assert isinstance(decision, Trip) is trips, written


# --- ENABLE_PREDICTIVE_SCALING ------------------------------------------------------------------


async def test_enable_predictive_scaling_turns_the_balancers_scale_advice_on_and_off(
    settings: Settings, bus: EventBus
) -> None:
    for index in range(3):
        await bus.append(TaskSubmitted(task_id=f"g{index}", task_type="golang"), expected=0)
    quiet = {"ENABLE_REBALANCING": "false", "REBALANCE_INTERVAL_S": "3600"}
    off = from_env(settings, {**quiet, "ENABLE_PREDICTIVE_SCALING": "false"})
    async with running(BalancerService, off) as balancer:
        await balancer.view.catch_up()
        await balancer.tick(time.time())
        assert balancer.details()["predictive_scaling"] is False
        assert balancer.details()["scale_recommendations"] == {}
    advice, _ = await bus.read_aggregate("system", "scale-golang")
    assert advice == [], "no advice while predictive scaling is off"
    on = from_env(settings, {**quiet, "ENABLE_PREDICTIVE_SCALING": "true"})
    async with running(BalancerService, on) as balancer:
        await balancer.view.catch_up()
        await balancer.tick(time.time())
    advice, _ = await bus.read_aggregate("system", "scale-golang")
    assert [type(r.event) for r in advice] == [ScaleRecommended]


# --- the four targets ---------------------------------------------------------------------------


def measured(**values: float) -> OrchestrationFigures:
    def figure(name: str) -> Figure:
        return Figure(value=values.get(name), samples=10 if name in values else 0)

    return OrchestrationFigures(
        window_s=300.0,
        task_assignment_latency_ms=figure("task_assignment_latency_ms"),
        load_balancing_efficiency=figure("load_balancing_efficiency"),
        routing_accuracy_percent=figure("routing_accuracy_percent"),
        failure_recovery_time_ms=figure("failure_recovery_time_ms"),
        system_throughput_tasks_per_second=figure("system_throughput_tasks_per_second"),
        workflow_completion_rate=figure("workflow_completion_rate"),
        assignment_latency_ms={},
        recovery_time_ms={},
    )


def met(env: Mapping[str, str], metric: str, value: float) -> bool | None:
    checks = check_targets(measured(**{metric: value}), performance_targets(load_settings(env)))
    return next(c.met for c in checks if c.metric == metric)


def test_task_assignment_latency_target_ms_is_the_bound_of_the_assignment_latency() -> None:
    env = {"TASK_ASSIGNMENT_LATENCY_TARGET_MS": "2000"}
    assert met(env, "task_assignment_latency_ms", 1500.0) is True
    assert met(env, "task_assignment_latency_ms", 2500.0) is False


def test_load_balancing_efficiency_target_is_the_floor_of_the_efficiency() -> None:
    for written in ("0.85", "85"):
        env = {"LOAD_BALANCING_EFFICIENCY_TARGET": written}
        assert met(env, "load_balancing_efficiency", 0.9) is True
        assert met(env, "load_balancing_efficiency", 0.8) is False


def test_routing_accuracy_target_as_a_ratio_is_95_percent_not_trivially_met() -> None:
    env = {"ROUTING_ACCURACY_TARGET": "0.95"}
    assert met(env, "routing_accuracy_percent", 94.0) is False
    assert met(env, "routing_accuracy_percent", 96.0) is True


def test_recovery_time_target_ms_is_the_bound_of_the_recovery_time() -> None:
    env = {"RECOVERY_TIME_TARGET_MS": "120000"}
    assert met(env, "failure_recovery_time_ms", 90_000.0) is True
    assert met(env, "failure_recovery_time_ms", 130_000.0) is False


# --- MONITORING_INTERVAL_SECONDS and METRICS_RETENTION_HOURS ------------------------------------


async def test_monitoring_interval_seconds_spaces_the_gateways_samples(settings: Settings) -> None:
    every_fifth = from_env(settings, {"MONITORING_INTERVAL_SECONDS": "0.2"})
    async with running(GatewayService, every_fifth) as gateway:
        await gateway.monitor.wait_for_ticks(4, timeout=10)
        samples = list(gateway.monitor.history.samples)
    gaps = [later.ts - earlier.ts for earlier, later in itertools.pairwise(samples)]
    assert len(samples) >= 4 and all(gap >= 0.19 for gap in gaps), gaps


async def test_metrics_retention_hours_bounds_how_long_the_history_is_kept(settings: Settings) -> None:
    assert MetricsHistory(72 * 3600, 10.0).samples.maxlen == 72 * 360 + 1  # the document's 72 h at 10 s
    short = from_env(settings, {"METRICS_RETENTION_HOURS": "0.0001", "MONITORING_INTERVAL_SECONDS": "0.05"})
    async with (
        running(GatewayService, short) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http,
    ):
        await gateway.monitor.wait_for_ticks(15, timeout=20)
        history = (await http.get("/api/v1/orchestration/metrics/history")).json()
    stamps = [sample["ts"] for sample in history["samples"]]
    assert history["retention_hours"] == 0.0001 and history["interval_s"] == 0.05
    assert stamps and stamps[-1] - stamps[0] <= 0.36, "nothing older than 0.36 s is kept"
    assert len(stamps) <= math.ceil(0.36 / 0.05) + 1 < 15


# --- ENABLE_PERFORMANCE_ALERTS ------------------------------------------------------------------


@dataclass
class Webhook:
    """A real HTTP server on a free port that keeps every JSON body POSTed to it."""

    bodies: list[dict[str, object]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        self.bodies.append(json.loads(await reader.readexactly(length)))
        self.arrived.set()
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def next_body(self, count: int) -> dict[str, object]:
        while len(self.bodies) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        return self.bodies[count - 1]


@asynccontextmanager
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    server = await asyncio.start_server(hook.handle, "127.0.0.1", 0)
    hook.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/alerts"
    async with server:
        yield hook


ALERTING = {"MONITORING_INTERVAL_SECONDS": "3600", "WORKFLOW_COMPLETION_TARGET": "0.5"}


async def test_enable_performance_alerts_records_logs_and_posts_a_missed_target_and_its_recovery(
    settings: Settings, bus: EventBus
) -> None:
    async with webhook() as hook:
        env = {**ALERTING, "ENABLE_PERFORMANCE_ALERTS": "true", "PERFORMANCE_ALERT_WEBHOOK_URL": hook.url}
        with watching_logs("performance_target_missed") as logs:
            async with running(GatewayService, from_env(settings, env)) as gateway:
                seq = (await bus.append(WorkflowFailed(workflow_id="w0"), expected=None)).seq
                await gateway.view.wait_for(seq)
                (fired,) = await gateway.monitor.tick(time.time())
                assert fired.status == "firing" and fired.metric == "workflow_completion_rate"
                (line,) = logs.named("performance_target_missed")
                assert line["log_level"] == "warning" and line["variable"] == "WORKFLOW_COMPLETION_TARGET"
                posted = await hook.next_body(1)
                assert (posted["type"], posted["status"], posted["measured"]) == (
                    "system.performance_alert",
                    "firing",
                    0.0,
                )
                await gateway.view.wait_for(line["seq"])
                assert await gateway.monitor.tick(time.time()) == [], "still missed: alerted once"
                for index in range(3):
                    seq = (
                        await bus.append(WorkflowCompleted(workflow_id=f"w{index + 1}"), expected=None)
                    ).seq
                await gateway.view.wait_for(seq)
                (resolved,) = await gateway.monitor.tick(time.time())
                assert resolved.status == "resolved" and resolved.measured == 0.75
                assert (await hook.next_body(2))["status"] == "resolved"
        assert len(logs.named("performance_target_met_again")) == 1
    stored, _ = await bus.read_aggregate("system", "target-workflow_completion_rate")
    assert [(type(r.event), getattr(r.event, "status", "")) for r in stored] == [
        (PerformanceAlert, "firing"),
        (PerformanceAlert, "resolved"),
    ]


async def test_without_performance_alerts_a_missed_target_appends_nothing(
    settings: Settings, bus: EventBus
) -> None:
    env = {**ALERTING, "ENABLE_PERFORMANCE_ALERTS": "false"}
    async with running(GatewayService, from_env(settings, env)) as gateway:
        seq = (await bus.append(WorkflowFailed(workflow_id="w0"), expected=None)).seq
        await gateway.view.wait_for(seq)
        assert await gateway.monitor.tick(time.time()) == []
        assert gateway.monitor.history.samples[-1].orchestration_metrics["workflow_completion_rate"] == 0.0
    stored, _ = await bus.read_aggregate("system", "target-workflow_completion_rate")
    assert stored == []


async def test_an_unreachable_webhook_is_logged_and_the_alert_stays_in_the_log(
    settings: Settings, bus: EventBus
) -> None:
    closed = socket_that_refuses()
    env = {**ALERTING, "ENABLE_PERFORMANCE_ALERTS": "true", "PERFORMANCE_ALERT_WEBHOOK_URL": closed}
    with watching_logs("performance_alert_webhook_failed") as logs:
        async with running(GatewayService, from_env(settings, env)) as gateway:
            seq = (await bus.append(WorkflowFailed(workflow_id="w0"), expected=None)).seq
            await gateway.view.wait_for(seq)
            assert len(await gateway.monitor.tick(time.time())) == 1
            await asyncio.wait_for(logs.arrived.wait(), 10)
    (line,) = logs.named("performance_alert_webhook_failed")
    assert line["url"] == closed and line["metric"] == "workflow_completion_rate"
    stored, _ = await bus.read_aggregate("system", "target-workflow_completion_rate")
    assert [type(r.event) for r in stored] == [PerformanceAlert]


def socket_that_refuses() -> str:
    """A URL on a port nothing listens on (bound, then released)."""
    from shared.embedded import free_port

    return f"http://127.0.0.1:{free_port()}/alerts"
