"""HTTP bodies of the key limits: concurrency limits, rate limits and what a key holds."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.events import ConcurrencyStrategy, Key, KeyPattern


class ConcurrencyLimitRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """At most ``max_running`` tasks of each key matching ``pattern`` (a key, or a glob with ``*``,
    ``?``, ``[...]``) at once, across the fleet; over it, ``strategy`` says what happens."""

    pattern: KeyPattern
    max_running: Annotated[int, Meta(ge=1, le=100_000)]
    strategy: ConcurrencyStrategy = "queue"


class RateLimitRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A token bucket per key matching ``pattern``: ``limit`` units per ``period_seconds``, at most
    ``burst`` (default ``limit``) at once. A task takes its ``units`` when it is assigned."""

    pattern: KeyPattern
    limit: Annotated[int, Meta(ge=1, le=1_000_000)]
    period_seconds: Annotated[float, Meta(gt=0, le=31_622_400)] = 60.0
    burst: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None


class ConcurrencyLimitOut(msgspec.Struct, kw_only=True):
    pattern: str
    max_running: int
    strategy: str
    source: Literal["api", "environment"]
    """``environment``: CONCURRENCY_LIMITS of the gateway's environment (the router reads its own)."""


class RateLimitOut(msgspec.Struct, kw_only=True):
    pattern: str
    limit: int
    period_seconds: float
    burst: int
    source: Literal["api", "environment"]


class LimitsOut(msgspec.Struct, kw_only=True):
    concurrency: list[ConcurrencyLimitOut]
    rate: list[RateLimitOut]


class LimitChange(msgspec.Struct, kw_only=True):
    pattern: str
    kind: Literal["concurrency", "rate"]
    status: Literal["set", "removed"]
    seq: int


class KeyOut(msgspec.Struct, kw_only=True):
    """What the log says a key holds now."""

    key: Key
    concurrency_limit: ConcurrencyLimitOut | None = None
    running: int = 0
    """Task attempts holding one of its slots (claimed or assigned, not ended)."""
    holders: list[str] = []
    """Their task ids, oldest claim first."""
    waiting: int = 0
    """Tasks with this concurrency key waiting for a slot."""
    rate_limit: RateLimitOut | None = None
    tokens: float | None = None
    """Units in the bucket now."""
    affinity_agent: str | None = None
    """The agent the key's last affinity assignment went to."""
