"""Performance alerts fire once when a target stops being met and resolve once it is met again;
the metric history keeps its retention and its bound."""

from __future__ import annotations

from services.gateway.alerts import AlertsState, alert_scope, alerts_due, apply_alerts
from services.gateway.history import HistorySample, MetricsHistory
from shared.domain.performance_targets import TargetCheck
from shared.events import PerformanceAlert
from shared.recorded import Recorded


def check(metric: str, met: bool | None, measured: float | None = 1.0) -> TargetCheck:
    return TargetCheck(
        metric=metric,
        measured=None if met is None else measured,
        target=0.97,
        comparison=">=",
        unit="ratio",
        met=met,
        attainment=None,
        samples=0 if met is None else 10,
        variable="LOAD_BALANCING_EFFICIENCY_TARGET",
        definition="",
    )


def standing_after(*alerts: PerformanceAlert) -> dict[str, PerformanceAlert]:
    state = AlertsState()
    for seq, alert in enumerate(alerts, start=1):
        apply_alerts(state, Recorded(seq, alert.subject, alert))
    return state.standing


def test_a_missed_target_fires_once_and_resolves_once_when_met_again() -> None:
    missed = [check("load_balancing_efficiency", met=False, measured=0.8)]
    (fired,) = alerts_due(missed, {}, window_s=300.0)
    assert fired.status == "firing" and fired.scope == alert_scope("load_balancing_efficiency")
    assert fired.measured == 0.8 and fired.target == 0.97 and fired.window_s == 300.0
    assert fired.variable == "LOAD_BALANCING_EFFICIENCY_TARGET"
    assert "no longer met" in fired.detail and "0.8" in fired.detail
    assert fired.subject == "hive.evt.system.target-load_balancing_efficiency.performance_alert"
    standing = standing_after(fired)
    assert alerts_due(missed, standing, 300.0) == [], "still missed: no second alert"
    (resolved,) = alerts_due([check("load_balancing_efficiency", met=True)], standing, 300.0)
    assert resolved.status == "resolved" and "met again" in resolved.detail
    met_again = [check("load_balancing_efficiency", met=True)]
    assert alerts_due(met_again, standing_after(fired, resolved), 300.0) == []


def test_a_target_met_from_the_start_or_not_measured_raises_nothing() -> None:
    assert alerts_due([check("a", met=True), check("b", met=None)], {}, 300.0) == []
    fired = alerts_due([check("b", met=False)], {}, 300.0)
    assert alerts_due([check("b", met=None)], standing_after(*fired), 300.0) == [], (
        "nothing measured: the alert stays firing until the target is measured as met"
    )


def sample(ts: float) -> HistorySample:
    return HistorySample(
        ts=ts,
        performance_score=None,
        targets_met=0,
        targets_measured=0,
        total_targets=6,
        orchestration_metrics={},
    )


def test_history_drops_samples_older_than_its_retention_and_never_holds_more_than_it_can_need() -> None:
    history = MetricsHistory(retention_s=60.0, interval_s=10.0)
    for second in range(0, 200, 10):
        history.add(sample(float(second)))
    kept = [s.ts for s in history.samples]
    assert kept == [130.0, 140.0, 150.0, 160.0, 170.0, 180.0, 190.0]
    assert [s.ts for s in history.since(175.0)] == [180.0, 190.0]
    bounded = MetricsHistory(retention_s=60.0, interval_s=10.0)
    for _ in range(100):
        bounded.add(sample(5.0))  # a clock standing still cannot grow it either
    assert len(bounded.samples) == 7
