"""The suite's own settings: a failing property test is reported with what reproduces it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine

from tests.conftest import PROPERTY_TIMEOUT_S, SHRINK_LIMIT_S


@settings(max_examples=1)
@given(st.none())
def test_a_property_stands_here_for_every_property_test(value: None) -> None:
    assert value is None


def is_property(item: pytest.Item) -> bool:
    return bool(getattr(getattr(item, "obj", None), "is_hypothesis_test", False))


def test_every_property_test_has_a_timeout_past_the_shrinking_and_prints_its_blob(
    request: pytest.FixtureRequest,
) -> None:
    properties = [item for item in request.session.items if is_property(item)]
    assert "test_a_property_stands_here_for_every_property_test" in {item.name for item in properties}
    for item in properties:
        marker = item.get_closest_marker("timeout")
        assert marker is not None and marker.args[0] > SHRINK_LIMIT_S, item.nodeid
    assert engine.MAX_SHRINKING_SECONDS <= SHRINK_LIMIT_S < PROPERTY_TIMEOUT_S
    assert settings().print_blob is True
