"""Fleet-wide Prometheus series read from the gateway's projection at each scrape.

The gateway folds the whole log, so its ``/metrics`` alone carries every ``orchestration_*`` series
(one scrape target): here the per-agent states (breaker, utilisation) and the cumulative histograms
(assignment latency, failure recovery); the windowed figures are gauges the monitor refreshes
(``monitoring.py``). Per-agent series cover every agent not deregistered, so a closed breaker
shows 0 rather than nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from services.gateway.view import GatewayState
from shared.domain.breakers import BREAKER_STATE_VALUES
from shared.domain.histogram import CumulativeHistogram

BREAKER_STATE = "orchestration_circuit_breaker_state"
UTILISATION = "orchestration_agent_utilization_ratio"
ASSIGNMENT_DURATION = "orchestration_task_assignment_duration_seconds"
RECOVERY_DURATION = "orchestration_failure_recovery_duration_seconds"

HELP = {
    BREAKER_STATE: "Circuit breaker per agent: 0 closed, 1 half-open, 2 open",
    UTILISATION: "Tasks in flight / capacity, per agent",
    ASSIGNMENT_DURATION: "Time from an attempt becoming routable to its assignment (attempts held for "
    "lack of an agent excluded), every assignment in the log",
    RECOVERY_DURATION: "From a failure (an unresponsive agent's last heartbeat, a stalled agent's "
    "unreceived assignment first seen pending, a reported failure) until all the work it took away "
    "runs again elsewhere or has ended, every incident in the log",
}


def _histogram(name: str, histogram: CumulativeHistogram) -> HistogramMetricFamily:
    buckets = [
        ("+Inf" if bound == float("inf") else repr(bound), count) for bound, count in histogram.cumulative()
    ]
    return HistogramMetricFamily(name, HELP[name], buckets=buckets, sum_value=histogram.total)


class FleetCollector(Collector):
    def __init__(self, state: Callable[[], GatewayState]) -> None:
        self.state = state

    def describe(self) -> Iterator[Metric]:
        """The names only: registering must not read the projection."""
        yield GaugeMetricFamily(BREAKER_STATE, HELP[BREAKER_STATE], labels=["agent_id"])
        yield GaugeMetricFamily(UTILISATION, HELP[UTILISATION], labels=["agent_id"])
        yield HistogramMetricFamily(ASSIGNMENT_DURATION, HELP[ASSIGNMENT_DURATION])
        yield HistogramMetricFamily(RECOVERY_DURATION, HELP[RECOVERY_DURATION])

    def collect(self) -> Iterator[Metric]:
        state = self.state()
        breakers = GaugeMetricFamily(BREAKER_STATE, HELP[BREAKER_STATE], labels=["agent_id"])
        utilisation = GaugeMetricFamily(UTILISATION, HELP[UTILISATION], labels=["agent_id"])
        for agent_id, agent in sorted(state.fleet.agents.items()):
            if agent.status == "deregistered":
                continue
            breaker = state.breakers.breakers.get(agent_id)
            breakers.add_metric([agent_id], BREAKER_STATE_VALUES[breaker.status if breaker else "closed"])
            utilisation.add_metric([agent_id], agent.utilisation)
        yield breakers
        yield utilisation
        yield _histogram(ASSIGNMENT_DURATION, state.metrics.assignment_s)
        yield _histogram(RECOVERY_DURATION, state.metrics.recovery.seconds)
