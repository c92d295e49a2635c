"""A stored message's headers parsed on first read behave as the dict parsed on arrival."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.natsclient import LazyHeaders, parse_header_lines

_NAME = st.text(alphabet=st.sampled_from("AbZz-_09 \t:\x80"), min_size=0, max_size=12)
_VALUE = st.text(alphabet=st.sampled_from("abc 123:-\xff"), min_size=0, max_size=12)


def _raw(lines: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in lines) + b"\r\n"


READS: list[Callable[[dict[str, str]], Any]] = [
    lambda h: h.get("Nats-Msg-Id"),
    lambda h: h.get("missing", "default"),
    lambda h: "Nats-Msg-Id" in h,
    lambda h: list(h),
    lambda h: len(h),
    lambda h: bool(h),
    lambda h: sorted(h.items()),
    lambda h: sorted(h.keys()),
    lambda h: sorted(h.values()),
    lambda h: h.copy(),
    lambda h: dict(h),
    lambda h: {**h},
    lambda h: repr(h),
    lambda h: json.dumps(dict(h), sort_keys=True),
    lambda h: msgspec.json.encode(h.copy()),
    lambda h: copy.copy(h),
    lambda h: pickle.loads(pickle.dumps(h)),
    lambda h: h | {"extra": "1"},
    lambda h: h == parse_header_lines(b"Nats-Msg-Id: x\r\n\r\n"),
]


@given(st.lists(st.tuples(_NAME, _VALUE), max_size=6), st.sampled_from(range(len(READS))))
def test_any_first_read_sees_what_parsing_on_arrival_gives(lines: list[tuple[str, str]], read: int) -> None:
    raw = _raw([*lines, ("Nats-Msg-Id", "x")])
    eager = parse_header_lines(raw)
    assert READS[read](LazyHeaders(raw)) == READS[read](eager)


@pytest.mark.parametrize(
    "write",
    [
        lambda h: h.__setitem__("k", "v"),
        lambda h: h.setdefault("k", "v"),
        lambda h: h.update({"k": "v"}),
        lambda h: h.pop("Nats-Msg-Id"),
        lambda h: h.__delitem__("Nats-Msg-Id"),
        lambda h: h.popitem(),
        lambda h: h.__ior__({"k": "v"}),
        lambda h: h.clear(),
    ],
)
def test_a_first_write_lands_on_the_parsed_headers(write: Callable[[dict[str, str]], Any]) -> None:
    raw = b"Nats-Msg-Id: x\r\nNats-Expected-Last-Subject-Sequence: 4\r\n\r\n"
    lazy, eager = LazyHeaders(raw), parse_header_lines(raw)
    write(lazy)
    write(eager)
    assert dict(lazy) == eager
