"""One object per thread, made on first use: the memos of deciding are not made to be read and
changed by two threads at once, so each thread that decides gets its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerThread(Generic[T]):
    """Calling it gives this thread's object, made by `factory` the first time."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._local = threading.local()

    def __call__(self) -> T:
        made: T | None = getattr(self._local, "made", None)
        if made is None:
            made = self._local.made = self._factory()
        return made
