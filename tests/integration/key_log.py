"""Reading concurrency keys back from the event log, independently of the router's code."""

from __future__ import annotations

from services.cli.bench.key_figures import key_peaks

__all__ = ["key_peaks"]
