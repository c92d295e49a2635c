"""Which handler takes which task type, and the capabilities an agent registers. Pure.

An agent has handlers per task type (``@agent.handles("code_review", proficiency=0.9)``) and may
have one for every type (the ``handler`` argument). Unless given, the capabilities it registers are
the handled types with their proficiencies. Mistakes are refused when the agent is built, each
with what to change, rather than found when a task arrives.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import msgspec

from shared.agent.context import TaskContext
from shared.agent.errors import AgentSetupError
from shared.events import Capability, Unit

Handler = Callable[[TaskContext], Awaitable[Any]]
"""An async function of the task's context; returns a result (or a ``TaskOutcome``) or raises."""

_capabilities = msgspec.json.Decoder(dict[Capability, Unit])


def checked_capabilities(capabilities: Mapping[str, float] | Sequence[str]) -> dict[str, float]:
    """``{capability: proficiency}`` from a mapping or a list (proficiency 1.0), or AgentSetupError."""
    if isinstance(capabilities, str):
        raise AgentSetupError(f"capabilities must be a list or a mapping, not the string {capabilities!r}")
    raw = {c: 1.0 for c in capabilities} if not isinstance(capabilities, Mapping) else dict(capabilities)
    try:
        return _capabilities.decode(msgspec.json.encode(raw))
    except (msgspec.DecodeError, TypeError) as exc:
        raise AgentSetupError(
            f"invalid capabilities {raw!r}: {exc} (a capability is 1-64 of a-z 0-9 _ . : -, "
            "a proficiency is from 0 to 1)"
        ) from None


def _is_async(handler: object) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one."""
    call = getattr(type(handler), "__call__", None)  # noqa: B004  (the method itself, not callability)
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


class Handlers:
    """The handlers of one agent and the capabilities they add up to."""

    def __init__(
        self, default: Handler | None = None, capabilities: Mapping[str, float] | Sequence[str] | None = None
    ) -> None:
        self.default = default
        self.explicit = checked_capabilities(capabilities) if capabilities is not None else None
        self.by_type: dict[str, Handler] = {}
        self.proficiency: dict[str, float] = {}

    def add(self, task_type: str, handler: Handler, proficiency: float) -> None:
        """Register `handler` for `task_type`; refuse a duplicate, a sync function, a bad name."""
        [(task_type, proficiency)] = checked_capabilities({task_type: proficiency}).items()
        if not _is_async(handler):
            raise AgentSetupError(
                f"the handler of {task_type!r} must be an async function ('async def'); run blocking "
                "work with 'await asyncio.to_thread(...)' so heartbeats go on"
            )
        if task_type in self.by_type:
            raise AgentSetupError(f"task type {task_type!r} already has a handler: one handler per type")
        if self.explicit is not None and task_type not in self.explicit:
            raise AgentSetupError(
                f"a handler for {task_type!r}, but the capabilities given do not include it, so no such "
                "task would ever be routed here: add it to capabilities, or leave capabilities out"
            )
        self.by_type[task_type] = handler
        self.proficiency[task_type] = proficiency

    def capabilities(self) -> dict[str, float]:
        """What the agent registers: the capabilities given, else the handled types."""
        return dict(self.explicit) if self.explicit is not None else dict(self.proficiency)

    def for_type(self, task_type: str) -> Handler | None:
        return self.by_type.get(task_type, self.default)

    def check(self, agent_id: str) -> None:
        """Refuse to start an agent that could take no task (AgentSetupError)."""
        if self.default is None and not self.by_type:
            raise AgentSetupError(
                f"agent {agent_id!r} has no handler: decorate an async function with "
                "@agent.handles('<task type>') (or pass handler=)"
            )
        if not self.capabilities():
            raise AgentSetupError(
                f"agent {agent_id!r} offers no capability: pass capabilities=, or register its task "
                "types with @agent.handles('<task type>')"
            )
