"""Performance alerts: when a target stops being met, and when it is met again. Pure.

The standing state of each target's alert is folded from the log (``system.performance_alert``), so
every gateway instance decides from the same facts and a restart does not alert twice. A target not
measured in the window (nothing to measure) changes nothing: an alert stays firing until the target
is measured as met.
"""

from __future__ import annotations

import msgspec

from shared.domain.performance_targets import TargetCheck
from shared.events import AlertStatus, PerformanceAlert
from shared.recorded import Recorded


class AlertsState(msgspec.Struct, kw_only=True):
    standing: dict[str, PerformanceAlert] = {}
    """metric -> its last alert."""


def apply_alerts(state: AlertsState, recorded: Recorded) -> AlertsState:
    event = recorded.event
    if isinstance(event, PerformanceAlert):
        state.standing[event.metric] = event
    return state


def alert_scope(metric: str) -> str:
    return f"target-{metric}"


def _describe(check: TargetCheck, firing: bool) -> str:
    bound = "below" if check.comparison == "<" else "at least"
    verdict = "no longer met" if firing else "met again"
    return (
        f"{check.metric} is {check.measured} {check.unit}: target {bound} {check.target} {check.unit} "
        f"({check.variable}) {verdict}"
    )


def alerts_due(
    checks: list[TargetCheck], standing: dict[str, PerformanceAlert], window_s: float
) -> list[PerformanceAlert]:
    """The alerts to append now: a measured target that is missed and not firing, or met and firing."""
    due = []
    for check in checks:
        if check.met is None:
            continue
        last = standing.get(check.metric)
        firing = last is not None and last.status == "firing"
        if check.met != firing:
            continue  # met and quiet, or missed and already firing
        status: AlertStatus = "resolved" if check.met else "firing"
        due.append(
            PerformanceAlert(
                scope=alert_scope(check.metric),
                metric=check.metric,
                status=status,
                measured=check.measured,
                target=check.target,
                comparison=check.comparison,
                unit=check.unit,
                variable=check.variable,
                window_s=window_s,
                samples=check.samples,
                detail=_describe(check, firing=not check.met),
            )
        )
    return due
