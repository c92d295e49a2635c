"""Graph algorithms: cycles named by their path, stable order, critical path, slack."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.dag import bottom_levels, critical_path, find_cycle, topological_order, zero_slack

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_a_cycle_is_returned_as_a_closed_path_of_dependencies() -> None:
    cycle = find_cycle({"a": ["c"], "b": ["a"], "c": ["b"], "z": []})
    assert cycle == ["a", "c", "b", "a"]


def test_a_self_dependency_is_a_cycle_of_one() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_a_dag_has_no_cycle_and_unknown_dependencies_are_not_followed() -> None:
    assert find_cycle(DIAMOND) is None
    assert find_cycle({"a": ["ghost"]}) is None


def test_topological_order_takes_the_first_declared_of_the_ready_nodes() -> None:
    assert topological_order({"x": [], "b": ["x"], "a": ["x"], "c": []}) == ["x", "b", "a", "c"]
    assert topological_order({"b": ["a"], "a": [], "c": []}) == ["a", "b", "c"]


def test_critical_path_follows_the_longest_chain_of_estimates() -> None:
    weight = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0}
    assert critical_path(DIAMOND, weight) == (["a", "b", "d"], 7.0)
    assert zero_slack(DIAMOND, weight) == {"a", "b", "d"}
    assert bottom_levels(DIAMOND, weight) == {"a": 7.0, "b": 6.0, "c": 3.0, "d": 1.0}
    assert critical_path({}, {}) == ([], 0.0)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """Random DAGs: a node only depends on nodes declared before it."""
    size = draw(st.integers(min_value=1, max_value=25))
    names = [f"n{i}" for i in range(size)]
    return {
        name: draw(st.lists(st.sampled_from(names[:index]), unique=True)) if index else []
        for index, name in enumerate(names)
    }


@given(dags())
def test_every_dag_orders_dependencies_first_and_has_no_cycle(deps: dict[str, list[str]]) -> None:
    order = topological_order(deps)
    assert sorted(order) == sorted(deps)
    position = {node: i for i, node in enumerate(order)}
    assert all(position[d] < position[n] for n, ds in deps.items() for d in ds)
    assert find_cycle(deps) is None


@given(dags(), st.data())
def test_a_back_edge_makes_a_cycle_whose_every_hop_is_a_dependency(
    deps: dict[str, list[str]], data: st.DataObject
) -> None:
    names = list(deps)
    low = data.draw(st.integers(0, len(names) - 1))
    high = data.draw(st.integers(low, len(names) - 1))
    # Make `low` depend on `high`, and `high` reach `low` through a chain.
    deps = {name: list(ds) for name, ds in deps.items()}
    for index in range(low + 1, high + 1):
        deps[names[index]].append(names[index - 1])
    deps[names[low]].append(names[high])
    cycle = find_cycle(deps)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert all(b in deps[a] for a, b in itertools.pairwise(cycle))
