"""Whether subject filters match a subject, answered once per subject *shape*. Pure.

``shared.subjects.reads`` walks every filter token by token, for every message: a projection
catching up through one filter (``shared/projection.py``) asks it of each of tens of thousands of
messages, with the same handful of filters. What decides most filters is not the ids in a subject
but its shape: how many tokens, the aggregate, the event type. A filter with a wildcard wherever a
subject carries an id (``ID_POSITIONS``) matches every subject of one shape alike, so its answer is
kept per shape; a filter that pins an id (one task's history) is asked of ``reads`` each time.
The shapes are few (aggregates x event types x two lengths), and the cache is bounded anyway
(``MAX_SHAPES``), so a log of odd subjects cannot grow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from shared.subjects import reads

ID_POSITIONS: Final = 3
"""Tokens from this index on may carry ids, except the event type at ``TYPE_POSITION``
(``hive.evt.<aggregate>.<id>.<type>[.<agent or task id>]``)."""
TYPE_POSITION: Final = 4
MAX_SHAPES: Final = 1024
"""Shapes remembered at most; beyond, the cache starts again (a log of made-up subjects)."""

Shape = tuple[object, ...]


def shape_of(tokens: list[str]) -> Shape:
    """What of a subject a filter without pinned ids can look at: its length, its tokens before
    the first id and its event type."""
    count = len(tokens)
    if count <= ID_POSITIONS:
        return (count, *tokens)
    if count <= TYPE_POSITION:
        return (count, *tokens[:ID_POSITIONS])
    return (count, *tokens[:ID_POSITIONS], tokens[TYPE_POSITION])


def pins_an_id(subject_filter: str) -> bool:
    """Whether the filter names an id: a literal token where subjects carry ids."""
    parts = subject_filter.split(".")
    return any(
        part not in ("*", ">")
        for index, part in enumerate(parts)
        if index >= ID_POSITIONS and index != TYPE_POSITION
    )


class FilterMatch:
    """``reads(filters, subject)`` for fixed `filters`, cached by the subject's shape."""

    __slots__ = ("_by_shape", "_pinned", "_shaped", "filters")

    def __init__(self, filters: Sequence[str]) -> None:
        self.filters: tuple[str, ...] = tuple(filters)
        self._shaped: tuple[str, ...] = tuple(f for f in self.filters if not pins_an_id(f))
        pinned = tuple(f for f in self.filters if pins_an_id(f))
        self._pinned: tuple[str, ...] | None = pinned or None
        self._by_shape: dict[Shape, bool] = {}

    def __call__(self, subject: str) -> bool:
        """Whether any filter matches `subject`."""
        tokens = subject.split(".")
        count = len(tokens)
        if count > TYPE_POSITION:  # an event's subject: ``shape_of`` without its call
            shape: Shape = (count, tokens[0], tokens[1], tokens[2], tokens[TYPE_POSITION])
        else:
            shape = shape_of(tokens)
        found = self._by_shape.get(shape)
        if found is None:
            found = self._shape_matches(shape, subject)
        return found or (self._pinned is not None and reads(self._pinned, subject))

    def _shape_matches(self, shape: Shape, subject: str) -> bool:
        """What the filters pinning no id say of every subject of this shape (asked of this one)."""
        found = bool(self._shaped) and reads(self._shaped, subject)
        cache = self._by_shape
        if len(cache) >= MAX_SHAPES:
            cache.clear()
        cache[shape] = found
        return found

    def shapes(self) -> int:
        """Shapes remembered now (bounded by ``MAX_SHAPES``)."""
        return len(self._by_shape)
