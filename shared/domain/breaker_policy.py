"""Circuit breaker decisions, pure: (breaker view, agent outcomes, now, policy) -> transition.

closed -> open when, over the sliding window (the newest ``window_size`` calls that are at most
``window_s`` old and came after the breaker's last transition), at least ``min_calls`` calls were
made and the failure rate reached ``failure_threshold``. open -> half_open after ``open_s``.
half_open lets ``half_open_probes`` tasks through and closes, or opens again, as soon as their
outcomes decide it at that same threshold. Recovery appends what this returns; the gateway shows
``window_stats`` as is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import msgspec
from msgspec import Meta

from shared.domain.breakers import BreakerView
from shared.domain.outcomes import MAX_OUTCOMES, AgentOutcomes, Outcome, counts_against_agent


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool = True
    failure_threshold: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.5
    window_size: Annotated[int, Meta(ge=1, le=MAX_OUTCOMES)] = 20
    window_s: Annotated[float, Meta(gt=0.0)] = 60.0
    min_calls: Annotated[int, Meta(ge=1)] = 10
    open_s: Annotated[float, Meta(ge=0.0)] = 30.0
    half_open_probes: Annotated[int, Meta(ge=1)] = 3


class WindowStats(msgspec.Struct, frozen=True, kw_only=True):
    calls: int
    failures: int
    failure_rate: float


class Trip(msgspec.Struct, frozen=True, kw_only=True):
    """closed/half_open -> open."""

    failure_rate: float
    calls: int
    reason: str
    retry_after_ts: float


class Probe(msgspec.Struct, frozen=True, kw_only=True):
    """open -> half_open."""

    probes_allowed: int


class Close(msgspec.Struct, frozen=True, kw_only=True):
    """half_open (or anything, when breakers are disabled) -> closed."""

    reason: str


Transition = Trip | Probe | Close


def window_stats(
    record: AgentOutcomes | None,
    since_seq: int,
    now: float,
    policy: BreakerPolicy,
    until_seq: int | None = None,
) -> WindowStats:
    """Calls and failures in the sliding window (ending at the outcome stored at `until_seq`, if
    given); outcomes that say nothing of the agent are skipped."""
    if record is None:
        return WindowStats(calls=0, failures=0, failure_rate=0.0)
    oldest = now - policy.window_s
    relevant: list[Outcome] = []
    # Newest first: outcomes are in log order, so the walk stops at the breaker's last transition
    # or once the window is full, instead of reading every outcome kept for the agent.
    for outcome in reversed(record.outcomes):
        if until_seq is not None and outcome.seq > until_seq:
            continue
        if outcome.seq <= since_seq or len(relevant) == policy.window_size:
            break
        if outcome.ts >= oldest and (outcome.ok or counts_against_agent(outcome)):
            relevant.append(outcome)
    failures = sum(1 for o in relevant if not o.ok)
    rate = failures / len(relevant) if relevant else 0.0
    return WindowStats(calls=len(relevant), failures=failures, failure_rate=rate)


def breaker_transition(
    breaker: BreakerView | None,
    record: AgentOutcomes | None,
    now: float,
    policy: BreakerPolicy,
    judged_seq: int | None = None,
) -> Transition | None:
    """The transition the breaker should make now, or None.

    A closed breaker trips when the window now reached the threshold; given `judged_seq` (what the
    caller judged before), also when the window ending at any outcome newer than it and than
    `window_s` did: outcomes read in a burst are judged as if judged one by one.
    """
    status = breaker.status if breaker is not None else "closed"
    if not policy.enabled:
        return Close(reason="circuit breakers disabled") if status != "closed" else None
    if status == "closed":
        since = breaker.last_change_seq if breaker is not None else 0
        if record is None or (record.last_fault_seq is not None and record.last_fault_seq <= since):
            return None  # no failure in any window, and the threshold is above 0
        newer_than = max(since, judged_seq) if judged_seq is not None else None
        for stats in _windows(record, newer_than, since, now, policy):
            if stats.calls >= policy.min_calls and stats.failure_rate >= policy.failure_threshold:
                return Trip(
                    failure_rate=stats.failure_rate,
                    calls=stats.calls,
                    reason=f"{stats.failures} of the last {stats.calls} calls failed "
                    f"(threshold {policy.failure_threshold:.0%})",
                    retry_after_ts=now + policy.open_s,
                )
        return None
    assert breaker is not None
    if status == "open":
        return Probe(probes_allowed=policy.half_open_probes) if now >= breaker.retry_after_ts else None
    allowed = max(1, breaker.probes_allowed)
    failed, succeeded = breaker.probe_failures, breaker.probe_successes
    if failed / allowed >= policy.failure_threshold:
        settled = failed + succeeded
        return Trip(
            failure_rate=failed / settled if settled else 1.0,
            calls=settled,
            reason=f"{failed} of {allowed} half-open probes failed",
            retry_after_ts=now + policy.open_s,
        )
    if (allowed - succeeded) / allowed < policy.failure_threshold:
        return Close(reason=f"{succeeded} of {allowed} half-open probes succeeded")
    return None


def _windows(
    record: AgentOutcomes | None, newer_than: int | None, since: int, now: float, policy: BreakerPolicy
) -> Iterator[WindowStats]:
    """The window now, then (with `newer_than`) the windows ending at each earlier outcome newer
    than it and than `window_s` (newest first), each judged at its outcome's time."""
    yield window_stats(record, since, now, policy)
    if record is None or newer_than is None:
        return
    newest = True
    for outcome in reversed(record.outcomes):
        if outcome.seq <= newer_than or outcome.ts < now - policy.window_s:
            return
        if newest:  # the window ending at the newest outcome is the window now
            newest = False
            continue
        yield window_stats(record, since, outcome.ts, policy, until_seq=outcome.seq)
