"""The gateway's monitor: every MONITORING_INTERVAL_SECONDS, the figures, the gauges, history, alerts.

Each tick computes the orchestration figures over METRICS_WINDOW_S from the projection, refreshes
the windowed ``orchestration_*`` gauges of ``/metrics``, keeps a history sample (``history.py``) and,
with ENABLE_PERFORMANCE_ALERTS, appends ``system.performance_alert`` when a target stops being met
or is met again (``alerts.py`` decides), logs a warning and POSTs the alert to
PERFORMANCE_ALERT_WEBHOOK_URL if set. Alerts are appended against their target's last sequence
with a message id derived from it, so several gateways alert once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Gauge

from services.gateway.alerts import alerts_due
from services.gateway.core import GatewayCore
from services.gateway.fleet_collector import FleetCollector
from services.gateway.history import HistorySample, MetricsHistory
from services.gateway.performance import PerformanceDesk
from services.gateway.performance_schemas import MetricsHistoryResponse
from shared.background import cancel_and_wait
from shared.bus import ConcurrencyConflict
from shared.domain.message_ids import alert_msg_id
from shared.domain.performance_metrics import OrchestrationFigures
from shared.domain.performance_targets import TargetCheck, performance_score
from shared.events import PerformanceAlert, encode_event

FIGURE_GAUGES: dict[str, tuple[str, str, float]] = {
    "load_balancing_efficiency": (
        "orchestration_load_balancing_efficiency_ratio",
        "Load-balancing efficiency over METRICS_WINDOW_S (1 - misplaced / in-flight tasks)",
        1.0,
    ),
    "routing_accuracy_percent": (
        "orchestration_routing_accuracy_ratio",
        "Share of first attempts the first chosen agent completed at the required quality, over "
        "METRICS_WINDOW_S",
        0.01,
    ),
    "workflow_completion_rate": (
        "orchestration_workflow_completion_rate",
        "Completed / (completed + failed) workflows ended over METRICS_WINDOW_S",
        1.0,
    ),
    "system_throughput_tasks_per_second": (
        "orchestration_system_throughput_tasks_per_second",
        "Tasks completed per second over METRICS_WINDOW_S",
        1.0,
    ),
}
"""figure -> (gauge, help, factor): the windowed figures the monitor exports (NaN: not measured)."""

WEBHOOK_TIMEOUT_S = 5.0


class MonitorDesk:
    """Takes the core, the performance desk (whose figures and checks it samples), the registry of
    ``/metrics`` and the service's logger."""

    def __init__(
        self, core: GatewayCore, performance: PerformanceDesk, registry: CollectorRegistry, log: Any
    ) -> None:
        self.core = core
        self.performance = performance
        self.log = log
        settings = core.settings
        self.interval_s = settings.monitoring_interval_seconds
        self.history = MetricsHistory(settings.metrics_retention_hours * 3600, self.interval_s)
        self.alerts_appended = 0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None
        self._webhooks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._ticked = asyncio.Condition()
        self.sample_listeners: list[Callable[[HistorySample], None]] = []
        """Called with each new history sample (the live stream)."""
        self.figure_gauges = {
            figure: (Gauge(name, doc, registry=registry), factor)
            for figure, (name, doc, factor) in FIGURE_GAUGES.items()
        }
        self.score_gauge = Gauge(
            "orchestration_performance_score",
            "100 x mean attainment of the measured figures against their targets",
            registry=registry,
        )
        self.targets_met_gauge = Gauge(
            "orchestration_targets_met", "Targets met over METRICS_WINDOW_S", registry=registry
        )
        self.target_met_gauge = Gauge(
            "orchestration_target_met",
            "Per target: 1 met, 0 not met, NaN not measured over METRICS_WINDOW_S",
            ["metric"],
            registry=registry,
        )
        for gauge, _factor in self.figure_gauges.values():
            gauge.set(math.nan)
        self.score_gauge.set(math.nan)
        registry.register(FleetCollector(lambda: core.view.state))

    async def start(self) -> None:
        await self.tick(time.time())
        self._task = asyncio.create_task(self._loop(), name="gateway-monitor")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._webhooks:
            await asyncio.wait(self._webhooks, timeout=WEBHOOK_TIMEOUT_S)
        if self._http is not None:
            await self._http.aclose()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick(time.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("monitor_tick_failed")

    async def tick(self, now: float) -> list[PerformanceAlert]:
        """One look: gauges, a history sample, and the alerts this instance appended."""
        found = self.performance.figures(None, now)
        checks = self.performance.checks(found)
        self._refresh_gauges(found, checks)
        sample = HistorySample(
            ts=now,
            performance_score=performance_score(checks),
            targets_met=sum(1 for check in checks if check.met),
            targets_measured=sum(1 for check in checks if check.met is not None),
            total_targets=len(checks),
            orchestration_metrics={check.metric: check.measured for check in checks},
            assignment_latency_p50_ms=found.assignment_latency_ms.get("p50"),
        )
        self.history.add(sample)
        for listener in self.sample_listeners:
            listener(sample)
        appended = []
        if self.core.settings.enable_performance_alerts:
            appended = await self.raise_alerts(checks, found.window_s)
        async with self._ticked:
            self.ticks += 1
            self._ticked.notify_all()
        return appended

    async def wait_for_ticks(self, count: int, timeout: float) -> None:
        """Until this desk has looked `count` times since it started (tools and tests)."""
        async with self._ticked:
            await asyncio.wait_for(self._ticked.wait_for(lambda: self.ticks >= count), timeout)

    def _refresh_gauges(self, found: OrchestrationFigures, checks: list[TargetCheck]) -> None:
        for figure, (gauge, factor) in self.figure_gauges.items():
            value = getattr(found, figure).value
            gauge.set(math.nan if value is None else value * factor)
        score = performance_score(checks)
        self.score_gauge.set(math.nan if score is None else score)
        self.targets_met_gauge.set(sum(1 for check in checks if check.met))
        for check in checks:
            self.target_met_gauge.labels(check.metric).set(
                math.nan if check.met is None else float(check.met)
            )

    async def raise_alerts(self, checks: list[TargetCheck], window_s: float) -> list[PerformanceAlert]:
        view = self.core.view
        appended = []
        for alert in alerts_due(checks, view.state.alerts.standing, window_s):
            version = await view.expected_version("system", alert.scope)
            try:
                result = await self.core.bus.append(
                    alert, expected=version, msg_id=alert_msg_id(alert.scope, version)
                )
            except ConcurrencyConflict:
                continue  # another gateway alerted first; the view will show its alert
            if result.duplicate:
                continue
            self.alerts_appended += 1
            appended.append(alert)
            self.log.warning(
                "performance_target_missed" if alert.status == "firing" else "performance_target_met_again",
                metric=alert.metric,
                measured=alert.measured,
                target=alert.target,
                comparison=alert.comparison,
                variable=alert.variable,
                detail=alert.detail,
                seq=result.seq,
            )
            self._post_webhook(alert)
        return appended

    def history_out(self, since_s: float | None) -> MetricsHistoryResponse:
        settings = self.core.settings
        since = time.time() - since_s if since_s is not None else -math.inf
        return MetricsHistoryResponse(
            interval_s=self.interval_s,
            retention_hours=settings.metrics_retention_hours,
            window_s=settings.metrics_window_s,
            samples=self.history.since(since),
        )

    # --- webhook --------------------------------------------------------------------------------

    def _post_webhook(self, alert: PerformanceAlert) -> None:
        url = self.core.settings.performance_alert_webhook_url
        if not url:
            return
        task = asyncio.create_task(self._send(url, alert), name="alert-webhook")
        self._webhooks.add(task)
        task.add_done_callback(self._webhooks.discard)

    async def _send(self, url: str, alert: PerformanceAlert) -> None:
        """One POST of the alert's JSON; a failure is logged, never retried (the log keeps the alert)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
        try:
            reply = await self._http.post(
                url, content=encode_event(alert), headers={"content-type": "application/json"}
            )
            reply.raise_for_status()
        except httpx.HTTPError as exc:
            self.log.warning(
                "performance_alert_webhook_failed", url=url, metric=alert.metric, error=repr(exc)
            )
