"""What balancer, recovery and workflow read and skip: fewer events, the same decisions.

Each view is folded over one mixed log twice: as the service folds it (its filters, and the events
it skips undecoded: ``ProjectionSpec.ignores``) and whole, every event applied. What the service's
decisions read must come out the same.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from services.balancer.decide import RebalancePolicy, plan_moves
from services.balancer.view import BALANCER_VIEW
from services.recovery.liveness import overdue_attempts
from services.recovery.view import RECOVERY_VIEW
from services.workflow.decide import decide
from services.workflow.policy import capable_capacity
from services.workflow.view import WORKFLOW_VIEW, WorkflowServiceState
from shared.domain.routing.policy import RoutingConfig
from shared.domain.workflows import step_task_id
from shared.events import (
    EVENT_TYPES,
    AgentRegistered,
    Event,
    FailureReported,
    KeySlotClaimed,
    RecoveryActionTaken,
    ScaleRecommended,
    ScheduleCreated,
    ScheduledTask,
    ScheduleFired,
    TaskAssigned,
    TaskAttemptFailed,
    TaskCompleted,
    TaskNotice,
    TaskProgress,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    WorkflowStarted,
    WorkflowStep,
    WorkflowStepDispatched,
    WorkflowSubmitted,
    encode_event,
    schedule_scope,
)
from shared.projection_spec import ProjectionSpec, fold
from shared.recorded import Recorded
from shared.subjects import aggregate_filter, events_of_type, reads

WF = "wf"
STEP_A = step_task_id(WF, "a")


def plain_task(task_id: str, agent_id: str, *, progress: bool = True) -> list[Event]:
    """A task of no workflow, from submission to completion (with a start and progress)."""
    events: list[Event] = [
        TaskSubmitted(task_id=task_id, task_type="x", timeout_s=30.0),
        TaskAssigned(agent_id=agent_id, task_id=task_id, attempt=1, session="s", task_type="x"),
        TaskStarted(task_id=task_id, agent_id=agent_id, attempt=1, session="s"),
    ]
    if progress:
        events.append(TaskProgress(task_id=task_id, agent_id=agent_id, attempt=1, percent=40.0))
    return events


def mixed_log() -> list[Recorded]:
    """Agents, plain tasks (one retried, one left running), a workflow whose first step's task runs
    and ends, a schedule that fires, keys, scale advice and a reported failure."""
    events: list[Event] = [
        AgentRegistered(agent_id="a1", capabilities={"x": 1.0}, capacity=3, session="s"),
        AgentRegistered(agent_id="a2", capabilities={"x": 0.8}, capacity=2, session="s"),
        WorkflowSubmitted(
            workflow_id=WF,
            steps=[
                WorkflowStep(step_id="a", task_type="x"),
                WorkflowStep(step_id="b", task_type="x", dependencies=["a"]),
            ],
        ),
        WorkflowStarted(workflow_id=WF),
        *plain_task("t1", "a1"),
        WorkflowStepDispatched(workflow_id=WF, step_id="a", task_id=STEP_A),
        TaskSubmitted(task_id=STEP_A, task_type="x", workflow_id=WF, step_id="a"),
        KeySlotClaimed(scope="key-k", key="k", task_id="t1", attempt=1),
        TaskAssigned(agent_id="a2", task_id=STEP_A, attempt=1, session="s", task_type="x"),
        TaskCompleted(task_id="t1", agent_id="a1", attempt=1, duration_s=0.5),
        *plain_task("t2", "a2"),
        TaskAttemptFailed(task_id="t2", agent_id="a2", attempt=1, error="boom"),
        TaskRequeued(task_id="t2", attempt=2, reason="retry"),
        TaskAssigned(agent_id="a1", task_id="t2", attempt=2, session="s", task_type="x"),
        TaskProgress(task_id=STEP_A, agent_id="a2", attempt=1, percent=50.0),
        ScaleRecommended(scope="scale-x", capability="x", additional_agents=1),
        FailureReported(scope="incident-1", failure_type="agent_error", agent_id="a1"),
        RecoveryActionTaken(scope="incident-1", strategy="retry_task"),
        *plain_task("t3", "a1"),
        ScheduleCreated(
            scope=schedule_scope("nightly"),
            ts=1000.0,
            interval_s=60.0,
            target="task",
            task=ScheduledTask(task_type="x"),
        ),
        ScheduleFired(scope=schedule_scope("nightly"), slot_ts=1060.0, target_id="n-1"),
        TaskSubmitted(task_id="n-1", task_type="x"),
        TaskCompleted(task_id=STEP_A, agent_id="a2", attempt=1, result={"ok": 1}, duration_s=1.0),
        TaskCompleted(task_id="t2", agent_id="a1", attempt=2, duration_s=0.2),
    ]
    return [Recorded(seq, event.subject, event) for seq, event in enumerate(events, start=1)]  # type: ignore[arg-type]


def as_read(spec: ProjectionSpec[Any], log: list[Recorded]) -> Any:
    """The view as its service folds it: only what its filters let through, skipping what it ignores
    (by subject, and by the stored bytes)."""
    state = spec.initial()
    for recorded in log:
        if (spec.reads is None or reads(spec.reads, recorded.subject)) and not ignored(spec, state, recorded):
            state = spec.apply(state, recorded)
    return state


def ignored(spec: ProjectionSpec[Any], state: Any, recorded: Recorded) -> bool:
    """Whether the runner skips `recorded` undecoded in `state` (``ignores``, ``ignores_stored``)."""
    if spec.ignores is not None and spec.ignores(state, recorded.subject):
        return True
    return spec.ignores_stored is not None and spec.ignores_stored(
        state, recorded.subject, encode_event(recorded.event)
    )


def whole(spec: ProjectionSpec[Any], log: list[Recorded]) -> Any:
    """The view with every event of the log applied."""
    return fold(dataclasses.replace(spec, reads=None, ignores=None), log)


def skipped(spec: ProjectionSpec[Any], log: list[Recorded]) -> list[str]:
    """Subjects of the log the service is not handed, or skips undecoded (in the state it reads)."""
    return [recorded.subject for recorded in skipped_events(spec, log)]


def skipped_events(spec: ProjectionSpec[Any], log: list[Recorded]) -> list[Recorded]:
    """The events of the log the service is not handed, or skips undecoded (in the state it reads)."""
    assert spec.ignores is not None
    state = spec.initial()
    out = []
    for recorded in log:
        handed = spec.reads is None or reads(spec.reads, recorded.subject)
        if not handed or ignored(spec, state, recorded):
            out.append(recorded)
        else:
            state = spec.apply(state, recorded)
    return out


def without_progress(state: Any) -> Any:
    """The state's builtins with every task's progress percentage left out."""
    data = msgspec.to_builtins(state)
    fleet = data["router"]["fleet"] if "router" in data else data["fleet"]
    for task in fleet["tasks"].values():
        task.pop("progress", None)
    return data


def test_balancer_and_recovery_skip_workflow_events_and_progress_undecoded() -> None:
    log = mixed_log()
    for spec in (BALANCER_VIEW, RECOVERY_VIEW):
        assert spec.reads is None, "one filter: several cost more than the few messages they spare"
        gone = skipped(spec, log)
        assert [s for s in gone if s.startswith("hive.evt.workflow")] == [
            r.subject for r in log if r.subject.startswith("hive.evt.workflow")
        ], spec.name
        assert [s for s in gone if s.startswith("hive.evt.task")] == [
            r.subject for r in log if isinstance(r.event, TaskProgress)
        ], spec.name
        assert not [s for s in gone if s.startswith(("hive.evt.agent", "hive.evt.breaker"))], spec.name


def test_recovery_skips_the_system_events_it_does_not_track() -> None:
    skipped_system = [s for s in skipped(RECOVERY_VIEW, mixed_log()) if s.startswith("hive.evt.system")]
    assert skipped_system == [
        "hive.evt.system.key-k.key_slot_claimed",
        "hive.evt.system.scale-x.scale_recommended",
        f"hive.evt.system.{schedule_scope('nightly')}.schedule_created",
        f"hive.evt.system.{schedule_scope('nightly')}.schedule_fired",
    ]


def test_balancer_and_recovery_views_keep_all_they_decide_on_without_progress_or_workflows() -> None:
    log = mixed_log()
    for spec in (BALANCER_VIEW, RECOVERY_VIEW):
        assert without_progress(as_read(spec, log)) == without_progress(whole(spec, log)), spec.name
    now = log[-1].event.ts + 3600.0
    balancer, balancer_whole = as_read(BALANCER_VIEW, log), whole(BALANCER_VIEW, log)
    policy, config = RebalancePolicy(unstarted_after_s=0.0), RoutingConfig()
    assert plan_moves(balancer, now, policy, config) == plan_moves(balancer_whole, now, policy, config)
    recovery, recovery_whole = as_read(RECOVERY_VIEW, log), whole(RECOVERY_VIEW, log)
    assert overdue_attempts(recovery.fleet, now, 0.0) == overdue_attempts(recovery_whole.fleet, now, 0.0)
    assert overdue_attempts(recovery.fleet, now, 0.0), "the test should judge some running work"


def test_workflow_view_skips_tasks_of_no_workflow_and_system_events_but_the_schedules() -> None:
    log = mixed_log()
    skipped_subjects = skipped(WORKFLOW_VIEW, log)
    skipped_at = {recorded.seq for recorded in skipped_events(WORKFLOW_VIEW, log)}
    plain = {"t1", "t2", "t3"}
    for recorded in log:
        event = recorded.event
        task_id = getattr(event, "task_id", None)
        if task_id in plain and isinstance(event, TaskSubmitted | TaskAssigned | TaskCompleted):
            assert recorded.seq in skipped_at, recorded.subject  # an assignment: by its bytes
        if task_id in (STEP_A, "n-1") and not isinstance(event, TaskProgress | TaskStarted):
            assert recorded.seq not in skipped_at, recorded.subject
    assert "hive.evt.system.key-k.key_slot_claimed" in skipped_subjects
    assert "hive.evt.system.incident-1.failure_reported" in skipped_subjects
    assert f"hive.evt.system.{schedule_scope('nightly')}.schedule_fired" not in skipped_subjects


def test_workflow_decisions_are_the_same_with_the_tasks_of_no_workflow_skipped() -> None:
    log = mixed_log()
    for end in range(1, len(log) + 1):
        read: WorkflowServiceState = as_read(WORKFLOW_VIEW, log[:end])
        every: WorkflowServiceState = whole(WORKFLOW_VIEW, log[:end])
        assert decide(read, WF) == decide(every, WF), end
        assert msgspec.to_builtins(read.flows) == msgspec.to_builtins(every.flows), end
        assert msgspec.to_builtins(read.schedules) == msgspec.to_builtins(every.schedules), end
        kind = ("x", ())
        assert capable_capacity(read.fleet, kind) == capable_capacity(every.fleet, kind), end
        for task_id in (STEP_A, "n-1"):  # the workflow's task, the schedule's (not progress: the
            # workflow view never read it)
            mine, all_of_it = (msgspec.to_builtins(v.fleet.tasks.get(task_id)) for v in (read, every))
            for task in (mine, all_of_it):
                if task is not None:
                    task.pop("progress")
            assert mine == all_of_it, (end, task_id)
    final = as_read(WORKFLOW_VIEW, log)
    assert set(final.fleet.tasks) == {STEP_A}, "a schedule's task is not kept once submitted"
    assert final.schedules.targets == {}
    assert final.flows.workflows[WF].steps["a"].status == "completed"
    assert [type(a).__name__ for a in decide(final, WF)] == ["Dispatch"]


def test_the_workflow_view_reads_every_assignment_notice_as_its_steps_complete_only_from_the_holder() -> None:
    log = mixed_log()
    assert WORKFLOW_VIEW.reads is not None
    lifecycle = [
        events_of_type("agent", cls.event_type())
        for cls in EVENT_TYPES.values()
        if cls.AGGREGATE == "agent" and not issubclass(cls, TaskNotice)
    ]
    lifecycle_only = tuple(
        subject_filter
        for f in WORKFLOW_VIEW.reads
        for subject_filter in (lifecycle if f == aggregate_filter("agent") else [f])
    )
    narrower = dataclasses.replace(WORKFLOW_VIEW, reads=lifecycle_only)
    assert not [r for r in log if isinstance(r.event, TaskAssigned) and reads(lifecycle_only, r.subject)]
    read: WorkflowServiceState = as_read(WORKFLOW_VIEW, log)
    assert read.flows.workflows[WF].steps["a"].status == "completed"
    missed: WorkflowServiceState = as_read(narrower, log)
    assert missed.flows.workflows[WF].steps["a"].status != "completed", "its end was refused"
    assert [type(a).__name__ for a in decide(missed, WF)] != ["Dispatch"]


def test_the_workflow_view_looks_for_a_notices_task_in_its_bytes_only_where_the_subject_cannot_say() -> None:
    from services.workflow.view import ignores_stored_workflow_service

    state = WorkflowServiceState()
    state.flows.task_steps[STEP_A] = (WF, "a")
    mine = TaskAssigned(agent_id="a1", task_id=STEP_A, attempt=1)
    other = TaskAssigned(agent_id="a1", task_id="plain", attempt=1)
    assert not ignores_stored_workflow_service(state, mine.subject, encode_event(mine))
    assert ignores_stored_workflow_service(state, other.subject, encode_event(other))
    # Not a five-token notice, no task field, a cut-off one: decoded, as the subject says.
    assert not ignores_stored_workflow_service(state, f"{other.subject}.plain", encode_event(other))
    assert not ignores_stored_workflow_service(state, "hive.evt.agent.a1.registered", encode_event(other))
    assert not ignores_stored_workflow_service(state, "hive.evt.task.a1.task_assigned", encode_event(other))
    assert not ignores_stored_workflow_service(state, other.subject, b"{}")
    assert not ignores_stored_workflow_service(state, other.subject, b'{"task_id":"plain')
