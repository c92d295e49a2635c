"""The shell every service shares: connect, build projections, consume work, answer health.

A service subclass says which projections it keeps and which work consumers it runs; this class
does the I/O around them and the lifecycle: SIGTERM finishes the event in hand, acknowledges it,
snapshots the projections and closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar, TypeVar

import msgspec
from nats.aio.msg import Msg

from shared.bus import EventBus
from shared.environment import environment_notices
from shared.gcpause import GcPauses, freeze_startup_heap
from shared.logging import configure_logging, get_logger
from shared.metrics import ServiceMetrics
from shared.projection import ProjectionRunner, S
from shared.projection_spec import ProjectionSpec
from shared.settings import Settings, SettingsError, load_settings
from shared.snapshots import SnapshotStore
from shared.subjects import HEALTH_PING
from shared.telemetry import configure_tracing, inject_headers
from shared.work import WorkConsumer, WorkSpec


class ServiceHealth(msgspec.Struct, kw_only=True):
    """One instance's answer on ``hive.svc.health``."""

    service: str
    instance: str
    status: str
    started_ts: float
    projection_seq: int
    handled: int
    metrics_port: int | None = None
    delivered: dict[str, int] = {}
    """Messages received per consumer (``projection:<name>``, ``work:<durable>``) since the start."""
    details: dict[str, Any] = {}
    gc: dict[str, Any] = {}
    """The garbage collector: objects frozen at the start, and per generation the collections since
    the service was ready and their total and longest pause in ms (``shared/gcpause.py``)."""


class Service:
    """Base of the five services. Subclasses implement ``setup`` and may extend ``details``."""

    name: ClassVar[str] = "service"
    serves_metrics_port: ClassVar[bool] = True
    """Expose Prometheus metrics on METRICS_PORT (the gateway serves /metrics on its HTTP port)."""
    reads_in_bursts: ClassVar[bool] = True
    """Projections read the log in bursts READ_LINGER_S apart (``shared/projection.py``); a service
    whose decisions must follow each event at once (the router) says False."""
    owns_process: bool = False
    """Set by ``run_service``: the process is this service's alone, so once started it freezes its
    heap out of later garbage collections (``shared/gcpause.py``); not an instance run inside a
    test or another program, whose objects are not its to freeze."""

    def __init__(self, settings: Settings) -> None:
        self.check_settings(settings)
        self.settings = settings
        self.instance = settings.instance_name(self.name)
        self.metrics = ServiceMetrics(self.name)
        self.gc_pauses = GcPauses(self.name)
        self.metrics.registry.register(self.gc_pauses)
        self.log = get_logger(f"hive.{self.name}").bind(service=self.name, instance=self.instance)
        self._bus: EventBus | None = None
        self.store: SnapshotStore | None = None
        self.runners: list[ProjectionRunner[Any]] = []
        self.work_specs: list[WorkSpec] = []
        self.workers: list[WorkConsumer] = []
        self.frozen_objects = 0
        """How many objects the start froze (0 unless ``owns_process``): counted once, since
        ``gc.get_freeze_count()`` walks them all (milliseconds for a large view, on every health
        answer)."""
        self.started_ts = 0.0
        self.metrics_port: int | None = None
        self.ready = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._health_sub: Any = None

    @property
    def bus(self) -> EventBus:
        if self._bus is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._bus

    # --- what subclasses provide ----------------------------------------------------------------

    @classmethod
    def check_settings(cls, settings: Settings) -> None:
        """Raise SettingsError if this service cannot run with `settings` (before anything starts)."""

    async def setup(self) -> None:
        """Create projections (``self.projection``) and work (``self.work``)."""

    async def on_started(self) -> None:
        """Called once projections are caught up and work consumers run."""

    async def on_stopping(self) -> None:
        """Called first on shutdown, before work consumers stop."""

    async def on_released(self) -> None:
        """Let go of the files and threads the service holds; runs however the stop went, so it
        must not assume the rest of the stop happened (a second release does nothing)."""

    def details(self) -> dict[str, Any]:
        return {}

    def projection(self, spec: ProjectionSpec[S], *, max_versions: int | None = None) -> ProjectionRunner[S]:
        runner = ProjectionRunner(
            self.bus,
            spec,
            self.store,
            snapshot_every=self.settings.snapshot_every_events,
            snapshot_min_interval_s=self.settings.snapshot_min_interval_s,
            metrics=self.metrics,
            linger_s=self.settings.read_linger_s if self.reads_in_bursts else 0.0,
            max_versions=max_versions,
        )
        self.runners.append(runner)
        return runner

    def work(self, spec: WorkSpec) -> WorkSpec:
        spec.ack_wait_s = min(spec.ack_wait_s, self.settings.work_ack_wait_s)
        spec.max_deliver = self.settings.work_max_deliver
        self.work_specs.append(spec)
        return spec

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        configure_tracing(self.name)
        self.gc_pauses.install()
        self.started_ts = time.time()
        user, password = self.settings.nats_credentials
        self._bus = await EventBus.connect(
            self.settings.nats_url,
            self.name,
            name=self.instance,
            metrics=self.metrics,
            user=user,
            password=password,
            trace_headers=inject_headers,
        )
        await self.bus.ensure_streams(
            duplicate_window_s=self.settings.duplicate_window_s,
            max_age_s=self.settings.stream_max_age_s,
            replicas=self.settings.stream_replicas,
        )
        self.store = await SnapshotStore(
            os.path.join(self.settings.snapshot_dir, f"{self.name}.sqlite")
        ).open()
        await self.setup()
        for runner in self.runners:
            await runner.start()
        for runner in self.runners:
            await runner.catch_up(timeout=120)
        for spec in self.work_specs:
            worker = WorkConsumer(self.bus, spec)
            await worker.start()
            self.workers.append(worker)
        self._health_sub = await self.bus.nc.subscribe(HEALTH_PING, cb=self._answer_health)
        await self.bus.nc.flush()  # the server knows the subscription before we say we are ready
        if self.settings.metrics_port >= 0 and self.serves_metrics_port:
            self.metrics_port = self.metrics.serve(self.settings.metrics_port)
        await self.on_started()
        if self.owns_process:
            # Imports and the projections just loaded live as long as the process: no full
            # collection walks them again (a pause of the whole event loop).
            self.frozen_objects = freeze_startup_heap()
            self.log.info("heap_frozen", objects=self.frozen_objects)
        self.gc_pauses.reset()  # what is counted from now on: collections while serving
        self.ready.set()
        self.log.info(
            "service_started",
            projection_seq=[r.seq for r in self.runners],
            from_snapshot=[r.loaded_from_snapshot for r in self.runners],
            metrics_port=self.metrics_port,
        )

    async def stop(self) -> None:
        self.log.info("service_stopping")
        try:
            await self.on_stopping()
            for worker in self.workers:
                await worker.stop()
            self.workers.clear()
            if self._health_sub is not None:
                with contextlib.suppress(Exception):  # connection already gone: nothing to release
                    await self._health_sub.unsubscribe()
            for runner in self.runners:
                await runner.stop()
            if self._bus is not None:
                await self._bus.close()
        finally:
            # Whatever failed above, every SQLite thread must end: a live one keeps the process
            # from exiting after its main returned (an orphan its supervisor never sees).
            try:
                await self.on_released()
            finally:
                if self.store is not None:
                    await self.store.close()
                self.metrics.close()
                self.gc_pauses.close()
        self.log.info("service_stopped")

    def request_stop(self) -> None:
        self._stop_requested.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        await self._stop_requested.wait()
        await self.stop()

    # --- health ---------------------------------------------------------------------------------

    def health(self) -> ServiceHealth:
        return ServiceHealth(
            service=self.name,
            instance=self.instance,
            status="ok" if self.ready.is_set() else "starting",
            started_ts=self.started_ts,
            projection_seq=min((r.seq for r in self.runners), default=0),
            handled=sum(spec.handled for spec in self.work_specs),
            metrics_port=self.metrics_port,
            delivered={
                **{f"projection:{runner.spec.name}": runner.delivered for runner in self.runners},
                **{f"work:{spec.durable}": spec.delivered for spec in self.work_specs},
            },
            details=self.details(),
            gc={"frozen": self.frozen_objects, "pauses": self.gc_pauses.summary()},
        )

    async def _answer_health(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(msgspec.json.encode(self.health()))


def run_service(service_cls: type[Service]) -> None:
    """Entry point of ``python -m services.<name>``: exits 2, saying why, on unusable settings.

    With HIVE_PROFILE_DIR set, the process runs under cProfile and writes
    ``<dir>/<instance>.prof`` when it stops (for finding hot spots under a benchmark). It counts
    CPU time, not wall time: waiting for messages, and other processes using the cores, are not
    hot spots.
    """
    try:
        settings = load_settings()
    except SettingsError as exc:
        configure_logging("info", service=service_cls.name)
        get_logger(f"hive.{service_cls.name}").error("invalid_settings", error=str(exc))
        raise SystemExit(2) from None
    profile_dir = os.environ.get("HIVE_PROFILE_DIR")
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        try:
            _run_service(service_cls, settings)
        finally:
            profiler.disable()
            os.makedirs(profile_dir, exist_ok=True)
            profiler.dump_stats(os.path.join(profile_dir, f"{settings.instance_name(service_cls.name)}.prof"))
        return
    _run_service(service_cls, settings)


def log_environment_notices(log: Any, env: Mapping[str, str]) -> None:
    """Say at start what the environment holds that Hive ignores or reads as something else."""
    for notice in environment_notices(env):
        emit = log.warning if notice.level == "warning" else log.info
        emit(notice.event, variable=notice.variable, closest=notice.closest, message=notice.message)


GC_THRESHOLDS = (20_000, 20, 10)
"""The cyclic garbage collector's thresholds in a service process (CPython's are 700, 10, 10).

A service holds a large, long-lived projection (every task, agent and assignment in view) and
allocates a few dozen objects per event it reads or decides: with the defaults, young
collections run every few events and promote most of what they scan, and full collections, which
walk the whole projection, run every few thousand events (about 15% of the router's CPU at its
ceiling). Its garbage is freed by reference counting; cycles are rare, so collecting them every
20,000 allocations instead of 700 costs little memory."""


def tune_gc() -> None:
    """Collect cycles less often (``GC_THRESHOLDS``): set once per service process."""
    gc.set_threshold(*GC_THRESHOLDS)


def _run_service(service_cls: type[Service], settings: Settings) -> None:
    tune_gc()
    configure_logging(
        settings.log_level, service=service_cls.name, instance=settings.instance_name(service_cls.name)
    )
    log = get_logger(f"hive.{service_cls.name}")
    log_environment_notices(log, os.environ)
    try:
        service = service_cls(settings)
    except SettingsError as exc:
        log.error("invalid_settings", error=str(exc))
        raise SystemExit(2) from None
    service.owns_process = True
    run_async(service.run())


T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where available (faster I/O), else on asyncio's own loop; returns the result."""
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        return asyncio.run(main)
    return uvloop.run(main)
