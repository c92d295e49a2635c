"""Nesting depth, measured without recursion: the bound on request bodies and event fields."""

from __future__ import annotations

import os
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from shared.nesting import (
    MAX_NESTING,
    json_nesting,
    json_nests_deeper,
    nesting_of,
    openers,
    value_nests_deeper,
)

# Strings full of what a naive bracket counter would miscount: brackets, quotes, backslashes.
tricky_text = st.text(alphabet='[]{}"\\ab', max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=30,
)


@given(st.binary(max_size=300) | st.text(alphabet='[]{}()<>ab"', max_size=300).map(str.encode))
def test_openers_counts_every_opening_bracket_byte(data: bytes) -> None:
    assert openers(data) == data.count(b"[") + data.count(b"{")


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@given(json_values)
def test_the_depth_of_json_text_is_the_depth_of_its_value(value: Any) -> None:
    assert json_nesting(msgspec.json.encode(value)) == nesting_of(value)


def test_scalars_are_0_deep_and_each_container_adds_one() -> None:
    assert nesting_of("x") == 0 and json_nesting(b'"[[["') == 0
    assert nesting_of([]) == 1 and nesting_of({"a": [1]}) == 2
    assert json_nesting(b'{"a": "\\"[[", "b": [[1], [2, [3]]]}') == 4


def test_twenty_thousand_levels_are_measured_without_recursion() -> None:
    deep = b"[" * 20_000 + b"]" * 20_000
    assert json_nesting(deep) == 20_000
    assert json_nests_deeper(deep)
    value: Any = []
    for _ in range(20_000):
        value = [value]
    assert value_nests_deeper(value)
    assert nesting_of(value, stop_past=MAX_NESTING) == MAX_NESTING + 1


def test_the_bound_is_inclusive() -> None:
    assert not value_nests_deeper(nested(MAX_NESTING))
    assert value_nests_deeper(nested(MAX_NESTING + 1))
    assert not json_nests_deeper(msgspec.json.encode(nested(MAX_NESTING)))
    assert json_nests_deeper(msgspec.json.encode(nested(MAX_NESTING + 1)))


def test_random_bytes_get_a_number_not_an_exception() -> None:
    assert json_nesting(os.urandom(100_000)) >= 0
