"""HTTP bodies of the recovery endpoints: failure reports, circuit breakers, failure prediction."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.domain.prediction import Prediction
from shared.events import FailureType, Id, Severity


class FailureHandleRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A failure to handle: recovery picks the strategy from its type and severity."""

    failure_type: FailureType
    severity: Severity = "medium"
    agent_id: Id | None = None
    task_id: Id | None = None
    detail: Annotated[str, Meta(max_length=2000)] = ""
    incident_id: Id | None = None
    """Your id for the incident (default: a new one); reporting the same id twice is a 409."""


class FailureHandleResponse(msgspec.Struct, kw_only=True):
    incident_id: str
    status: Literal["handled", "reported"]
    """handled: recovery acted within ASSIGN_WAIT_MS (what it did is below); reported: not yet."""
    failure_type: str
    severity: str
    strategy: str
    actions: list[str]
    escalated: bool
    agent_id: str | None = None
    task_ids: list[str] = []
    detail: str = ""
    seq: int = 0


class BreakerOut(msgspec.Struct, kw_only=True):
    agent_id: str
    agent_status: str
    status: Literal["closed", "open", "half_open"]
    failure_rate: float
    """Over the sliding window as it is now (closed), or when it opened (open)."""
    calls: int
    failures: int
    reason: str
    opened_ts: float
    retry_after_ts: float
    probes_allowed: int
    probes_assigned: int
    probe_successes: int
    probe_failures: int
    times_opened: int
    last_change_ts: float


class BreakerPolicyOut(msgspec.Struct, kw_only=True):
    enabled: bool
    failure_threshold: float
    window_size: int
    window_s: float
    min_calls: int
    open_s: float
    half_open_probes: int


class CircuitBreakersResponse(msgspec.Struct, kw_only=True):
    policy: BreakerPolicyOut
    counts: dict[str, int]
    breakers: list[BreakerOut]


class BreakerResetRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    requested_by: Annotated[str, Meta(max_length=200)] = "api"


class BreakerResetResponse(msgspec.Struct, kw_only=True):
    agent_id: str
    status: Literal["closed"]
    seq: int


class PredictResponse(msgspec.Struct, kw_only=True):
    generated_ts: float
    heartbeat_interval_s: float
    method: str
    predictions: list[Prediction]
