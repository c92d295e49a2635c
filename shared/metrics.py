"""One Prometheus registry per service, with the counters every service shell updates."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server


class ServiceMetrics:
    """Metrics common to every service; services add their own on ``registry``."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._server: WSGIServer | None = None
        self.registry = CollectorRegistry()
        self.events_handled = Counter(
            "hive_events_handled_total", "Work events handled", ["service", "type"], registry=self.registry
        )
        self.events_dead_lettered = Counter(
            "hive_events_dead_lettered_total",
            "Messages sent to the dead-letter queue",
            ["service"],
            registry=self.registry,
        )
        self.append_conflicts = Counter(
            "hive_append_conflicts_total",
            "Appends refused by optimistic concurrency",
            ["service"],
            registry=self.registry,
        )
        self.events_appended = Counter(
            "hive_events_appended_total", "Events appended", ["service", "type"], registry=self.registry
        )
        self.projection_seq = Gauge(
            "hive_projection_sequence",
            "Last stream sequence applied to a projection",
            ["service", "projection"],
            registry=self.registry,
        )
        self.handle_seconds = Histogram(
            "hive_work_handle_seconds",
            "Time to handle one work event",
            ["service"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose /metrics on a port of its own; returns the bound port (0 picks a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        """Stop serving (the port is released)."""
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
            self._server = None
