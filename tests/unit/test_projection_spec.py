"""A projection's snapshot schema id follows the structure of its state type, so no bump is forgotten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec

from services.balancer.view import BALANCER_VIEW
from services.gateway.view import GATEWAY_VIEW
from services.recovery.view import RECOVERY_VIEW
from services.workflow.view import WORKFLOW_VIEW
from shared.domain.fleet import FLEET_SPEC
from shared.domain.performance_metrics import METRICS_VIEW
from shared.domain.routing.view import ROUTER_VIEW
from shared.domain.workflows import WORKFLOWS_SPEC
from shared.projection_spec import ProjectionSpec, schema_id
from shared.recorded import Recorded

ROOT = Path(__file__).resolve().parents[2]

SPECS = [
    ROUTER_VIEW,
    GATEWAY_VIEW,
    BALANCER_VIEW,
    RECOVERY_VIEW,
    WORKFLOW_VIEW,
    FLEET_SPEC,
    WORKFLOWS_SPEC,
    METRICS_VIEW,
]


def holding(nested: type) -> type:
    """A state struct holding `nested` (so a change deep inside must show at the top)."""
    return msgspec.defstruct("State", [("agents", dict[str, nested], {}), ("seq", int, 0)], kw_only=True)  # type: ignore[valid-type]


def test_adding_a_field_to_a_state_struct_changes_its_schema_id() -> None:
    class State(msgspec.Struct, kw_only=True):
        seq: int = 0

    before = schema_id("router", State)

    class State(msgspec.Struct, kw_only=True):  # type: ignore[no-redef]
        seq: int = 0
        load: int = 0

    assert schema_id("router", State) != before


def test_changing_a_field_type_or_default_deep_inside_changes_the_id() -> None:
    class Agent(msgspec.Struct, kw_only=True):
        load: int = 0

    original = schema_id("fleet", holding(Agent))

    class Agent(msgspec.Struct, kw_only=True):  # type: ignore[no-redef]
        load: float = 0

    retyped = schema_id("fleet", holding(Agent))

    class Agent(msgspec.Struct, kw_only=True):  # type: ignore[no-redef]
        load: int = 1

    defaulted = schema_id("fleet", holding(Agent))
    assert len({original, retyped, defaulted}) == 3


def test_the_same_structure_gives_the_same_id_whatever_its_docstrings_say() -> None:
    class State(msgspec.Struct, kw_only=True):
        """One wording."""

        seq: int = 0
        """The last sequence."""

    first = schema_id("router", State)

    class State(msgspec.Struct, kw_only=True):  # type: ignore[no-redef]
        """Another wording."""

        seq: int = 0

    assert schema_id("router", State) == first


def test_a_field_called_description_is_part_of_the_structure() -> None:
    class Step(msgspec.Struct, kw_only=True):
        name: str = ""

    class Described(msgspec.Struct, kw_only=True):
        name: str = ""
        description: str = ""

    assert schema_id("workflows", Step) != schema_id("workflows", Described)


def test_the_name_and_the_revision_are_part_of_the_id() -> None:
    class State(msgspec.Struct, kw_only=True):
        seq: int = 0

    def apply(state: State, _recorded: Recorded) -> State:
        return state

    spec = ProjectionSpec(name="router", state_type=State, initial=State, apply=apply)
    revised = ProjectionSpec(name="router", state_type=State, initial=State, apply=apply, revision=1)
    assert spec.schema.startswith("router-r0-")
    assert revised.schema.startswith("router-r1-")
    assert schema_id("gateway", State).startswith("gateway-r0-")
    assert len({spec.schema, revised.schema, schema_id("gateway", State)}) == 3


def test_every_projection_has_its_own_id_and_another_process_derives_the_same() -> None:
    ids = [spec.schema for spec in SPECS]
    assert len(set(ids)) == len(ids)
    assert all(spec.schema.startswith(f"{spec.name}-r{spec.revision}-") for spec in SPECS)
    script = "from shared.domain.routing.view import ROUTER_VIEW; print(ROUTER_VIEW.schema)"
    other = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": "."},
    )
    assert other.stdout.strip() == ROUTER_VIEW.schema
