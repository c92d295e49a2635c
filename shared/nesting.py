"""How deeply JSON nests, measured without recursion: one bound for request bodies and event fields. Pure.

A JSON document nested thousands of levels deep makes every recursive decoder or walker raise
``RecursionError`` (msgspec's included), at a depth that depends on how deep the caller's own stack
already is. Hive refuses such input before it recurses: the gateway refuses a request body nested
deeper than ``MAX_NESTING`` (400), and every reader of the log refuses an event whose free-form
fields (a task's ``payload``, a completion's ``result``) nest deeper (dead-lettered). Depth counts
arrays and objects: a scalar is 0, ``[]`` and ``{}`` are 1, ``{"a": [1]}`` is 2.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any, Final

MAX_NESTING: Final = 64
"""The deepest a request body, or an event's payload or result, may nest."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
# '[' and '{' become +1, ']' and '}' become -1 (0xff as a signed byte); everything else is deleted.
_SIGNS = bytes.maketrans(_BRACKETS, b"\x01\xff\x01\xff")


_OPENERS = b"[{"


def openers(data: bytes) -> int:
    """How many '[' and '{' bytes `data` holds, in strings or not: a bound on its nesting, cheap to get.

    What is left once they are deleted, in one pass: ``bytes.count`` of one byte reads every byte
    once per call (two calls, about 2.3 times as long for a 2.3 KB event)."""
    return len(data) - len(data.translate(None, _OPENERS))


def json_nesting(data: bytes) -> int:
    """How deeply the JSON text `data` nests (brackets inside strings do not count).

    Exact for valid JSON; for anything else a number that may be wrong but is always found
    without recursion, in time linear in the size.
    """
    if openers(data) == 0:
        return 0
    signs = _STRING.sub(b"", data).translate(_SIGNS, _NOT_BRACKETS)
    return max(0, max(accumulate(memoryview(signs).cast("b")), default=0))


def json_nests_deeper(data: bytes, limit: int = MAX_NESTING) -> bool:
    """Whether the JSON text `data` nests deeper than `limit` (quick when it has few brackets)."""
    return openers(data) > limit and json_nesting(data) > limit


def nesting_of(value: Any, stop_past: int | None = None) -> int:
    """How deeply a decoded value (lists, tuples and dicts of anything) nests; 0 for a scalar.

    Walks with a stack of its own, not recursion. With `stop_past`, stops at the first level past
    it (the answer is then ``stop_past + 1``): a bound is checked without walking everything.
    """
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if stop_past is not None and depth > stop_past:
            return depth
        pending.extend((child, depth) for child in children if isinstance(child, dict | list | tuple))
    return deepest


def value_nests_deeper(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether a decoded value nests deeper than `limit`."""
    return nesting_of(value, stop_past=limit) > limit
