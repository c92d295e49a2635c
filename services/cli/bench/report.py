"""What ``hive bench all`` shows: a plain-text progress bar on stderr and a table of figures.

No dependency: on a terminal the bar is redrawn in place (with the elapsed time of the step, so a
long step still shows life); elsewhere (a log, CI) one line per step.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, its reference target and what was measured."""

    metric: str
    target: str
    measured: str
    met: bool | None
    """None: shown for information, no target."""


def render_table(rows: list[Row]) -> str:
    header = ("metric", "reference target", "measured", "met")
    cells = [
        (r.metric, r.target, r.measured, "-" if r.met is None else ("yes" if r.met else "NO")) for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(4)]
    rule = "  ".join("-" * width for width in widths)

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(header), rule, *(line(cell) for cell in cells)])


def bar(fraction: float, width: int = 30) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class Progress:
    """Steps with a weight each (their expected share of the time); ``step`` marks one as started."""

    def __init__(self, steps: list[tuple[str, float]], out: TextIO | None = None) -> None:
        self.steps = steps
        self.total = sum(weight for _name, weight in steps) or 1.0
        self.out = out or sys.stderr
        self.live = self.out.isatty()
        self.done_weight = 0.0
        self.index = -1
        self.started = time.monotonic()
        self.step_started = self.started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.live:
            self._thread = threading.Thread(target=self._redraw_loop, daemon=True, name="bench-progress")
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self.index >= 0:
                self.done_weight += self.steps[self.index][1]
            self.index = len(self.steps)
            self._draw(final=True)

    def step(self, name: str) -> None:
        with self._lock:
            if self.index >= 0:
                self.done_weight += self.steps[self.index][1]
            self.index = next(i for i, (step, _w) in enumerate(self.steps) if step == name)
            self.step_started = time.monotonic()
            self._draw()

    def line(self, final: bool = False) -> str:
        fraction = self.done_weight / self.total
        count = len(self.steps)
        now = time.monotonic()
        if final or self.index >= count:
            return f"{bar(1.0)} 100%  {count}/{count} done in {now - self.started:.0f} s"
        name = self.steps[self.index][0]
        return (
            f"{bar(fraction)} {fraction:4.0%}  {self.index + 1}/{count} {name} "
            f"({now - self.step_started:.0f} s, {now - self.started:.0f} s in all)"
        )

    def _draw(self, final: bool = False) -> None:
        if self.live:
            self.out.write("\r\x1b[2K" + self.line(final) + ("\n" if final else ""))
        else:
            self.out.write(self.line(final) + "\n")
        self.out.flush()

    def _redraw_loop(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if 0 <= self.index < len(self.steps):
                    self._draw()
