"""HTTP bodies of the performance endpoints: metrics, target validation, load-balancing optimize."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.gateway.history import HistorySample
from shared.domain.performance_targets import TargetCheck
from shared.events import Id, LoadBalancingStrategy


class OrchestrationMetricsOut(msgspec.Struct, kw_only=True):
    """Each figure over the window; null when the window holds nothing to measure it on."""

    task_assignment_latency_ms: float | None
    load_balancing_efficiency: float | None
    routing_accuracy_percent: float | None
    failure_recovery_time_ms: float | None
    system_throughput_tasks_per_second: float | None
    workflow_completion_rate: float | None


class ScaleAdviceOut(msgspec.Struct, kw_only=True):
    capability: str
    additional_agents: int
    current_agents: int
    current_slots: int
    needed_slots: float
    arrival_rate_per_s: float
    queue_depth: int
    mean_duration_s: float
    reason: str
    ts: float


class SystemMetricsOut(msgspec.Struct, kw_only=True):
    """The fleet now (from the gateway's projection) and the gateway host's CPU and memory."""

    active_agents: int
    total_tasks: int
    """Tasks submitted since the start of the log."""
    completed_tasks: int
    failed_tasks: int
    active_workflows: int
    """Workflows running (holding one of the MAX_CONCURRENT_WORKFLOWS slots)."""
    cpu_utilization_percent: float | None
    """Of the machine the gateway runs on, since the previous request (null without /proc)."""
    memory_utilization_percent: float | None
    """Of the machine the gateway runs on: 1 - MemAvailable / MemTotal (null without /proc)."""


class MetricsResponse(msgspec.Struct, kw_only=True):
    timestamp: str
    """When the figures were computed (ISO-8601 UTC; ``ts`` in epoch seconds)."""
    ts: float
    window_s: float
    performance_score: float | None
    """100 x the mean attainment of the measured figures against their targets (null: none measured)."""
    targets_met: int
    total_targets: int
    orchestration_metrics: OrchestrationMetricsOut
    samples: dict[str, int]
    """What each figure was measured on (assignments, tasks in flight summed over samples, ...)."""
    percentiles: dict[str, dict[str, float | None]]
    scale_recommendations: list[ScaleAdviceOut]
    seq: int
    """The last event the figures include."""
    system_metrics: SystemMetricsOut


class ValidateResponse(msgspec.Struct, kw_only=True):
    timestamp: str
    """When the targets were checked (ISO-8601 UTC; ``ts`` in epoch seconds)."""
    ts: float
    window_s: float
    status: Literal["met", "not_met", "no_data"]
    """met: every measured target is met; not_met: at least one is not; no_data: none measured."""
    performance_score: float | None
    targets_met: int
    targets_measured: int
    total_targets: int
    targets: list[TargetCheck]
    seq: int
    overall_score: float | None
    """The specification's name of ``performance_score``."""
    target_results: dict[str, bool | None]
    """Per target: met, not met, or null (not measured in the window)."""
    current_metrics: dict[str, float | None]
    """Per target: the figure measured over the window."""
    performance_targets: dict[str, float]
    """Per target: its value (``targets`` says which side of it is met)."""
    improvement_recommendations: list[str]
    """One per target measured and missed: what to look at."""
    validation_timestamp: str
    """The specification's name of ``timestamp``."""


class MetricsHistoryResponse(msgspec.Struct, kw_only=True):
    interval_s: float
    """MONITORING_INTERVAL_SECONDS: one sample per interval."""
    retention_hours: float
    """METRICS_RETENTION_HOURS: older samples are dropped."""
    window_s: float
    """METRICS_WINDOW_S: what each sample's figures cover, ending at its ``ts``."""
    samples: list[HistorySample]
    """Oldest first; this gateway instance's own (a restart starts them again)."""


class OptimizeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Ask the balancer to move assigned work that waits unstarted, now."""

    request_id: Id | None = None
    """Your id for the request (default: a new one); the same id twice is a 409."""
    dry_run: bool = False
    """Only say what would move."""
    max_moves: Annotated[int, Meta(ge=0, le=10_000)] = 100
    unstarted_after_s: Annotated[float, Meta(ge=0, le=86_400)] | None = None
    """Move attempts unstarted for at least this long (default: REBALANCE_AFTER_S)."""
    requested_by: Annotated[str, Meta(max_length=200)] = ""
    strategy: LoadBalancingStrategy = "adaptive_hybrid"
    """How a move's target is chosen (README, Balancer)."""


class MoveOut(msgspec.Struct, kw_only=True):
    task_id: str
    attempt: int
    """The new attempt (the old one is superseded: a late start or result from it is refused)."""
    from_agent_id: str
    to_agent_id: str
    """Preferred for the new attempt; the router takes another if it filled up meanwhile."""
    waited_s: float
    quality_from: float
    quality_to: float


class OptimizeResponse(msgspec.Struct, kw_only=True):
    request_id: str
    status: Literal["done", "requested"]
    """done: the balancer answered within ASSIGN_WAIT_MS; requested: not yet (is a balancer running?)."""
    dry_run: bool
    moves: list[MoveOut] = []
    efficiency_before: float | None = None
    efficiency_after: float | None = None
    """Fleet-wide, once the moved attempts land on their targets."""
    notes: list[str] = []
    detail: str = ""
    seq: int = 0
