"""The gateway's limits desk: set and remove concurrency and rate limits, list them, show a key.

A limit is an event on the system aggregate (scope ``limit_scope(kind, pattern)``), appended
without a guard (setting a pattern again replaces it: last in the log wins), so every router
instance sees it when it reads the log. The environment's limits (CONCURRENCY_LIMITS, RATE_LIMITS)
are listed with ``source: environment``; an API limit for the same pattern replaces them.
"""

from __future__ import annotations

import time

from services.gateway.core import GatewayCore
from services.gateway.errors import ApiError
from services.gateway.limit_schemas import (
    ConcurrencyLimitOut,
    ConcurrencyLimitRequest,
    KeyOut,
    LimitChange,
    LimitsOut,
    RateLimitOut,
    RateLimitRequest,
)
from shared.domain.routing.keys import (
    ConcurrencyLimit,
    Limits,
    RateLimit,
    live_holders,
    parse_concurrency_limits,
    parse_rate_limits,
    tokens_at,
)
from shared.events import (
    ConcurrencyLimitRemoved,
    ConcurrencyLimitSet,
    RateLimitRemoved,
    RateLimitSet,
    limit_scope,
)


def concurrency_out(limit: ConcurrencyLimit) -> ConcurrencyLimitOut:
    return ConcurrencyLimitOut(
        pattern=limit.pattern, max_running=limit.max_running, strategy=limit.strategy, source=limit.source
    )


def rate_out(limit: RateLimit) -> RateLimitOut:
    return RateLimitOut(
        pattern=limit.pattern,
        limit=limit.limit,
        period_seconds=limit.period_s,
        burst=limit.capacity,
        source=limit.source,
    )


class LimitDesk:
    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    def limits(self) -> Limits:
        settings = self.core.settings
        return Limits.combine(
            self.core.view.state.keys,
            parse_concurrency_limits(settings.concurrency_limits),
            parse_rate_limits(settings.rate_limits),
        )

    async def set_concurrency(self, data: ConcurrencyLimitRequest) -> LimitChange:
        event = ConcurrencyLimitSet(
            scope=limit_scope("concurrency", data.pattern),
            pattern=data.pattern,
            max_running=data.max_running,
            strategy=data.strategy,
        )
        result = await self.core.bus.append(event, expected=None)
        return LimitChange(pattern=data.pattern, kind="concurrency", status="set", seq=result.seq)

    async def set_rate(self, data: RateLimitRequest) -> LimitChange:
        if data.burst is not None and data.burst < 1:
            raise ApiError(400, "invalid_field", "invalid field 'burst': at least 1", "burst")
        event = RateLimitSet(
            scope=limit_scope("rate", data.pattern),
            pattern=data.pattern,
            limit=data.limit,
            period_s=data.period_seconds,
            burst=data.burst,
        )
        result = await self.core.bus.append(event, expected=None)
        return LimitChange(pattern=data.pattern, kind="rate", status="set", seq=result.seq)

    async def remove(self, kind: str, pattern: str) -> LimitChange:
        keys = self.core.view.state.keys
        known = keys.concurrency_limits if kind == "concurrency" else keys.rate_limits
        if pattern not in known:
            raise ApiError(
                404,
                "not_found",
                f"no {kind} limit was set through the API for pattern {pattern!r} "
                "(limits of the environment are changed there)",
                "pattern",
            )
        scope = limit_scope("concurrency" if kind == "concurrency" else "rate", pattern)
        removed = (
            ConcurrencyLimitRemoved(scope=scope, pattern=pattern)
            if kind == "concurrency"
            else RateLimitRemoved(scope=scope, pattern=pattern)
        )
        result = await self.core.bus.append(removed, expected=None)
        return LimitChange(
            pattern=pattern,
            kind="concurrency" if kind == "concurrency" else "rate",
            status="removed",
            seq=result.seq,
        )

    async def listing(self, after_seq: int | None = None) -> LimitsOut:
        if after_seq is not None:
            await self.core.wait_for_seq(after_seq)
        limits = self.limits()
        return LimitsOut(
            concurrency=[concurrency_out(limits.concurrency[p]) for p in sorted(limits.concurrency)],
            rate=[rate_out(limits.rate[p]) for p in sorted(limits.rate)],
        )

    async def key(self, key: str, after_seq: int | None = None) -> KeyOut:
        if after_seq is not None:
            await self.core.wait_for_seq(after_seq)
        state = self.core.view.state
        limits = self.limits()
        concurrency = limits.concurrency_of(key)
        rate = limits.rate_of(key)
        holders = live_holders(state.keys, state.fleet, key)
        waiting = sum(
            1
            for _vt, _seq, task_id in state.fleet.queue
            if (task := state.fleet.tasks.get(task_id)) is not None
            and task.spec.concurrency_key == key
            and task_id not in holders
        )
        return KeyOut(
            key=key,
            concurrency_limit=concurrency_out(concurrency) if concurrency is not None else None,
            running=len(holders),
            holders=holders,
            waiting=waiting,
            rate_limit=rate_out(rate) if rate is not None else None,
            tokens=round(tokens_at(state.keys.buckets.get(key), rate, time.time()), 3)
            if rate is not None
            else None,
            affinity_agent=state.keys.affinity.get(key),
        )
