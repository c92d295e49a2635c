"""Key limits: concurrency limits and rate limits per key pattern, and what a key holds now."""

from __future__ import annotations

from typing import Annotated

from litestar import delete, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from services.gateway.limit_schemas import (
    ConcurrencyLimitRequest,
    KeyOut,
    LimitChange,
    LimitsOut,
    RateLimitRequest,
)
from services.gateway.limits import LimitDesk
from services.gateway.openapi import READ, WRITE, refusals
from services.gateway.params import AfterSeq

LimitDeskDep = NamedDependency[LimitDesk]
BASE = "/api/v1/limits"
PatternQuery = Annotated[
    str,
    QueryParameter(
        min_length=1,
        max_length=128,
        pattern=r"^\S+$",
        description="the key pattern the limit was set for, as given",
    ),
]
KeyPath = Annotated[
    str,
    PathParameter(
        min_length=1,
        max_length=128,
        pattern=r"^[^\s*?\[\]]+$",
        description="a concurrency, rate-limit or affinity key",
    ),
]


@put(
    f"{BASE}/concurrency",
    status_code=200,
    summary="Set the concurrency limit of a key pattern (replaces the pattern's earlier limit)",
    description="At most max_running tasks of each key matching pattern (the key itself, else the "
    "longest matching glob: *, ?, [...]) run at once, across the fleet and every router instance. "
    "strategy: queue (the task waits; keys take turns), cancel_newest (the task over the limit is "
    "cancelled), cancel_oldest (the key's oldest running task is cancelled to make room).",
    responses=refusals(*WRITE),
)
async def set_concurrency_limit(
    data: JSONBody[ConcurrencyLimitRequest], limit_desk: LimitDeskDep
) -> LimitChange:
    return await limit_desk.set_concurrency(data)


@delete(
    f"{BASE}/concurrency",
    status_code=200,
    summary="Remove the concurrency limit set through the API for a key pattern",
    description="404 when the API set none for that pattern (the environment's are changed there).",
    responses=refusals(*READ, 404, 503),
)
async def remove_concurrency_limit(pattern: PatternQuery, limit_desk: LimitDeskDep) -> LimitChange:
    return await limit_desk.remove("concurrency", pattern)


@put(
    f"{BASE}/rate",
    status_code=200,
    summary="Set the rate limit (token bucket) of a key pattern (replaces the pattern's earlier limit)",
    description="limit units per period_seconds, at most burst (default limit) at once, per key matching "
    "pattern, shared by every router instance (the bucket is read from the log). A task's rate_limit_key "
    "and units say what it takes; a task without tokens is queued with reason rate_limited and its "
    "eligible_ts.",
    responses=refusals(*WRITE),
)
async def set_rate_limit(data: JSONBody[RateLimitRequest], limit_desk: LimitDeskDep) -> LimitChange:
    return await limit_desk.set_rate(data)


@delete(
    f"{BASE}/rate",
    status_code=200,
    summary="Remove the rate limit set through the API for a key pattern",
    responses=refusals(*READ, 404, 503),
)
async def remove_rate_limit(pattern: PatternQuery, limit_desk: LimitDeskDep) -> LimitChange:
    return await limit_desk.remove("rate", pattern)


@get(
    BASE,
    summary="The concurrency and rate limits in force (the environment's and the API's)",
    responses=refusals(*READ, 503),
)
async def list_limits(limit_desk: LimitDeskDep, after_seq: AfterSeq = None) -> LimitsOut:
    return await limit_desk.listing(after_seq)


@get(
    "/api/v1/keys/{key:str}",
    summary="A key now: its limits, the tasks holding its slots, its waiting tasks, its tokens, its agent",
    description="With after_seq, answers once the gateway has applied the log up to that sequence.",
    responses=refusals(*READ, 503),
)
async def get_key(key: KeyPath, limit_desk: LimitDeskDep, after_seq: AfterSeq = None) -> KeyOut:
    return await limit_desk.key(key, after_seq)


ROUTES = [
    set_concurrency_limit,
    remove_concurrency_limit,
    set_rate_limit,
    remove_rate_limit,
    list_limits,
    get_key,
]
