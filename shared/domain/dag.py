"""Graph algorithms over a workflow's steps: cycles with their path, order, critical path. Pure.

A graph is given as ``deps``: node -> the nodes it depends on, in declaration order. Every function
is deterministic (ties are broken by declaration order), so a replay decides exactly the same.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

Deps = Mapping[str, Sequence[str]]


def find_cycle(deps: Deps) -> list[str] | None:
    """A dependency cycle as a closed path ``[a, b, ..., a]`` (a depends on b ...), or None.

    Dependencies on unknown nodes are ignored here (they are a different problem).
    """
    done: set[str] = set()
    for root in deps:
        if root in done:
            continue
        path: list[str] = [root]
        on_path: dict[str, int] = {root: 0}
        stack: list[int] = [0]  # per node on the path: index of the next dependency to visit
        while path:
            node = path[-1]
            children = deps.get(node, ())
            if stack[-1] < len(children):
                child = children[stack[-1]]
                stack[-1] += 1
                if child in on_path:
                    return [*path[on_path[child] :], child]
                if child in done or child not in deps:
                    continue
                on_path[child] = len(path)
                path.append(child)
                stack.append(0)
                continue
            done.add(node)
            del on_path[node]
            path.pop()
            stack.pop()
    return None


def topological_order(deps: Deps) -> list[str]:
    """Nodes with every dependency before its dependents; assumes no cycle (Kahn, stable)."""
    index = {node: i for i, node in enumerate(deps)}
    remaining = {node: len({d for d in deps[node] if d in deps}) for node in deps}
    dependents = dependents_of(deps)
    ready = [index[n] for n, count in remaining.items() if count == 0]
    heapq.heapify(ready)
    nodes = list(deps)
    order: list[str] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for child in dependents[node]:
            remaining[child] -= 1
            if remaining[child] == 0:
                heapq.heappush(ready, index[child])
    return order


def dependents_of(deps: Deps) -> dict[str, list[str]]:
    """Reverse edges: node -> the known nodes that depend on it."""
    out: dict[str, list[str]] = {node: [] for node in deps}
    for node, parents in deps.items():
        for parent in dict.fromkeys(parents):
            if parent in out:
                out[parent].append(node)
    return out


def bottom_levels(deps: Deps, weight: Mapping[str, float]) -> dict[str, float]:
    """Per node: the longest weighted path from it (itself included) to the end of the graph.

    The classic list-scheduling priority: running the node with the largest bottom level first
    shortens the whole run the most.
    """
    dependents = dependents_of(deps)
    level: dict[str, float] = {}
    for node in reversed(topological_order(deps)):
        after = max((level[child] for child in dependents[node]), default=0.0)
        level[node] = weight.get(node, 0.0) + after
    return level


def critical_path(deps: Deps, weight: Mapping[str, float]) -> tuple[list[str], float]:
    """The longest weighted chain of dependencies, first step first, and its length."""
    finish: dict[str, float] = {}
    before: dict[str, str | None] = {}
    for node in topological_order(deps):
        parents = [p for p in deps[node] if p in finish]
        best = max(parents, key=lambda p: finish[p], default=None)
        before[node] = best
        finish[node] = weight.get(node, 0.0) + (finish[best] if best is not None else 0.0)
    if not finish:
        return [], 0.0
    end: str | None = max(finish, key=lambda n: finish[n])
    assert end is not None
    length = finish[end]
    path: list[str] = []
    while end is not None:
        path.append(end)
        end = before[end]
    return path[::-1], length


def zero_slack(
    deps: Deps,
    weight: Mapping[str, float],
    tolerance: float = 1e-9,
    bottom: Mapping[str, float] | None = None,
) -> set[str]:
    """Nodes on some critical path: delaying any of them delays the whole graph.

    `bottom` is ``bottom_levels(deps, weight)`` when the caller has it already.
    """
    finish: dict[str, float] = {}
    for node in topological_order(deps):
        start = max((finish[p] for p in deps[node] if p in finish), default=0.0)
        finish[node] = start + weight.get(node, 0.0)
    if not finish:
        return set()
    total = max(finish.values())
    if bottom is None:
        bottom = bottom_levels(deps, weight)
    return {
        node for node in finish if finish[node] - weight.get(node, 0.0) + bottom[node] >= total - tolerance
    }
