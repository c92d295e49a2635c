"""What a projection is (name, state type, initial state, apply) and folding events with it. Pure.

A projection's snapshots are stored under a schema id derived from the structure of its state
type: the projection's name, a hash of msgspec's JSON schema of the state type (field names,
types, defaults, nested structs; docstrings left out) and a ``revision``. Change a state struct
and the id changes by itself, so a snapshot of the old shape is never loaded: the projection is
rebuilt from the log instead. ``revision`` is for the rarer change that keeps the shape but
changes what ``apply`` puts in it; bump it by hand then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

import msgspec

from shared.recorded import Recorded

S = TypeVar("S")

SCHEMA_HASH_CHARS = 16
"""Hex digits of the structure hash kept in the id (64 bits: collisions are not a concern)."""


@dataclass(frozen=True)
class ProjectionSpec(Generic[S]):
    """A name, a state type, its initial state and its apply function; ``schema`` is derived."""

    name: str
    state_type: type[S]
    initial: Callable[[], S]
    apply: Callable[[S, Recorded], S]
    revision: int = 0
    """Bump when ``apply`` changes what it stores while the state's structure stays the same."""
    reads: tuple[str, ...] | None = None
    """The subject filters of the events ``apply`` uses (None: every event): the server hands the
    projection only those, so a service pays for reading only what its decisions need. Reading
    more later needs a new ``revision`` (a snapshot folded from fewer events is no start for a
    fold of more; one folded from more is). Several filters cost nats-server far more per message
    while the projection catches up on subjects holding several messages (``ignores_balancer``): far
    behind, the runner reads through one filter until it is caught up (``CATCH_UP_ALONE_AFTER``)."""
    ignores: Callable[[S, str], bool] | None = None
    """Whether, in the given state, the event stored on a subject would change nothing ``apply``
    keeps for the service's decisions (e.g. the end of a task that belongs to no workflow): the
    runner then skips it before decoding it. Decided from the subject alone, so it costs a split,
    not a decode; the state is the one the event would have been applied to, so folds stay
    deterministic."""

    ignores_stored: Callable[[S, str, bytes], bool] | None = None
    """``ignores`` for what the subject alone cannot tell (a notice names its task only in its
    body): given the stored bytes too, for a look at them (a byte search) cheaper than decoding."""

    @cached_property
    def schema(self) -> str:
        """The id its snapshots are stored under: changes whenever the state's structure does."""
        return schema_id(self.name, self.state_type, self.revision)


def schema_id(name: str, state_type: type[Any], revision: int = 0) -> str:
    """``<name>-r<revision>-<hash of the state type's structure>``."""
    structure = _without_descriptions(msgspec.json.schema(state_type))
    digest = hashlib.sha256(msgspec.json.encode(structure, order="sorted")).hexdigest()
    return f"{name}-r{revision}-{digest[:SCHEMA_HASH_CHARS]}"


def _without_descriptions(node: Any) -> Any:
    """The schema without docstrings (a ``description`` string): rewording one is no new shape.

    A *field* named ``description`` has a schema object, not a string, as its value, so it stays.
    """
    if isinstance(node, dict):
        return {
            key: _without_descriptions(value)
            for key, value in node.items()
            if not (key == "description" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [_without_descriptions(value) for value in node]
    return node


def fold(spec: ProjectionSpec[S], events: list[Recorded], state: S | None = None) -> S:
    """Apply events in order to a state: the same path as the runner, without I/O."""
    current = spec.initial() if state is None else state
    for recorded in events:
        if spec.ignores is None or not spec.ignores(current, recorded.subject):
            current = spec.apply(current, recorded)
    return current
