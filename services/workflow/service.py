"""Workflow shell: keeps the workflow view and reports it in health."""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.workflow.view import WORKFLOW_VIEW
from shared.service import Service


class WorkflowService(Service):
    name = "workflow"

    async def setup(self) -> None:
        self.view = self.projection(WORKFLOW_VIEW)

    def details(self) -> dict[str, Any]:
        return {"workflows": dict(Counter(self.view.state.status.values()))}
