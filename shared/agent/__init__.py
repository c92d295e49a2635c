"""The agent SDK: everything an agent's author needs, from one import.

    from shared.agent import Agent, TaskContext, TaskOutcome, Persona, NonRetryableError

    agent = Agent("reviewer-1", persona=Persona(cognitive_style="meticulous"), capacity=2)

    @agent.handles("code_review", proficiency=0.9)
    async def review(task: TaskContext) -> TaskOutcome:
        await task.progress(50, "reading the diff")
        return TaskOutcome(result={"comments": 3}, quality=0.9)

    agent.run()

Handlers are tested without NATS with ``shared.agent.testing``. Importing this package loads no
server-side package (no metrics, tracing, HTTP server or SQLite): agents run anywhere.
"""

from __future__ import annotations

from shared.agent.context import TaskContext, TaskOutcome
from shared.agent.errors import AgentSetupError, AttemptSuperseded, NonRetryableError
from shared.agent.handlers import Handler
from shared.agent.sdk import Agent
from shared.credentials import CredentialsError
from shared.events import CognitiveStyle, Persona

__all__ = [
    "Agent",
    "AgentSetupError",
    "AttemptSuperseded",
    "CognitiveStyle",
    "CredentialsError",
    "Handler",
    "NonRetryableError",
    "Persona",
    "TaskContext",
    "TaskOutcome",
]
