"""The pure layer's policies as the settings configure them: where settings meet shared/domain.

The domain modules take plain values (a ``BreakerPolicy``, a list of ``Target``), so they import
no settings; the shells (recovery, the gateway) build those values here from their ``Settings``.
"""

from __future__ import annotations

from shared.domain.breaker_policy import BreakerPolicy
from shared.domain.performance_targets import Target, targets
from shared.settings import Settings


def breaker_policy(settings: Settings) -> BreakerPolicy:
    """The circuit breakers' thresholds and windows (``BREAKER_*``, ``ENABLE_CIRCUIT_BREAKERS``)."""
    return BreakerPolicy(
        enabled=settings.enable_circuit_breakers,
        failure_threshold=settings.breaker_failure_threshold,
        window_size=settings.breaker_window_size,
        window_s=settings.breaker_window_s,
        min_calls=settings.breaker_min_calls,
        open_s=settings.breaker_open_s,
        half_open_probes=settings.breaker_half_open_probes,
    )


def performance_targets(settings: Settings) -> list[Target]:
    """The orchestration figures' targets (``*_TARGET*`` variables)."""
    return targets(
        assignment_latency_ms=settings.task_assignment_latency_target_ms,
        load_balancing_efficiency=settings.load_balancing_efficiency_target,
        routing_accuracy_percent=settings.routing_accuracy_target,
        recovery_time_ms=settings.recovery_time_target_ms,
        throughput_tps=settings.throughput_target_tps,
        workflow_completion_rate=settings.workflow_completion_target,
    )
