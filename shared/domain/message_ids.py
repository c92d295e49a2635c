"""Message ids (``Nats-Msg-Id``) that several writers must agree on, so that whichever appends a
decision first stores it and the others' copies are dropped as duplicates. Pure, no events.

Several writers: other instances of the same service, a redelivery of the event that led to the
decision, or another service deciding the same thing. Every id is derived from the decision, never
random, and never changes form: a running Hive and an upgraded one must produce the same id for the
same decision (``tests/unit/test_message_ids.py`` pins each form).
"""

from __future__ import annotations

# --- tasks ------------------------------------------------------------------------------------


def assign_msg_id(task_id: str, attempt: int) -> str:
    """An assignment: one per task attempt, whichever router instance decides it."""
    return f"assign:{task_id}:{attempt}"


def queued_msg_id(task_id: str, attempt: int) -> str:
    """A task held for want of an agent: once per attempt."""
    return f"queued:{task_id}:{attempt}"


def key_hold_msg_id(task_id: str, attempt: int, reason: str) -> str:
    """A task held by its keys (a concurrency limit, a rate limit): once per attempt and reason."""
    return f"queued:{task_id}:{attempt}:{reason}"


def key_claim_msg_id(kind: str, task_id: str, attempt: int) -> str:
    """A concurrency slot claimed (``claim``) or rate tokens taken (``tokens``): once per attempt."""
    return f"{kind}:{task_id}:{attempt}"


def requeue_msg_id(task_id: str, attempt: int) -> str:
    """An attempt handed back to routing: once per attempt, by recovery or the balancer alike."""
    return f"requeue:{task_id}:{attempt}"


def failed_msg_id(task_id: str) -> str:
    """A task's final failure: one per task, by the router (deadline) or recovery (no retry left)."""
    return f"failed:{task_id}"


def cancel_msg_id(task_id: str) -> str:
    """A task's cancellation: one per task."""
    return f"cancel:{task_id}"


def notice_msg_id(task_id: str, attempt: int) -> str:
    """Telling an agent to stop an attempt: one per attempt (gateway, workflow, recovery, balancer)."""
    return f"cancel-request:{task_id}:{attempt}"


def report_msg_id(event_type: str, task_id: str, attempt: int) -> str:
    """A report recovery makes on an attempt for its holder (a timeout, a lost agent): one of each
    kind per attempt across recovery instances. Agents key their own reports by the event's id:
    a shared key is predictable, and the server de-duplicates keys across the whole stream."""
    return f"{event_type}:{task_id}:{attempt}"


# --- workflows --------------------------------------------------------------------------------


def workflow_task_msg_id(task_id: str) -> str:
    """The task a workflow step runs as: submitted once."""
    return f"wf-task:{task_id}"


def workflow_start_msg_id(workflow_id: str) -> str:
    """A workflow's admission to a running slot: once per workflow."""
    return f"wf-start:{workflow_id}"


def step_dispatch_msg_id(workflow_id: str, step_id: str) -> str:
    """A step started: once per step."""
    return f"wf-dispatch:{workflow_id}:{step_id}"


def step_skip_msg_id(workflow_id: str, step_id: str) -> str:
    """A step skipped: once per step."""
    return f"wf-skip:{workflow_id}:{step_id}"


def workflow_end_msg_id(workflow_id: str) -> str:
    """A workflow's completion or failure: once per workflow."""
    return f"wf-end:{workflow_id}"


# --- schedules ---------------------------------------------------------------------------------


def schedule_fire_msg_id(schedule_id: str, slot_ms: int) -> str:
    """A schedule's slot fired: once per slot (milliseconds since the epoch), whichever instance fires it."""
    return f"fire:{schedule_id}:{slot_ms}"


def schedule_skip_msg_id(schedule_id: str, last_slot_ms: int) -> str:
    """Slots skipped by the catch-up policy: once per run of slots, named by its last slot."""
    return f"skip:{schedule_id}:{last_slot_ms}"


def schedule_submit_msg_id(target_id: str) -> str:
    """The task or workflow a fired slot submits: submitted once."""
    return f"sched-submit:{target_id}"


# --- agents, breakers, incidents -----------------------------------------------------------------


def liveness_msg_id(kind: str, agent_id: str, version: int) -> str:
    """An agent found ``unresponsive``, ``stalled`` or ``recovered``: once per state of the agent it
    was seen in."""
    return f"{kind}:{agent_id}:{version}"


def quarantine_msg_id(incident_id: str) -> str:
    """An agent quarantined for an incident: once per incident."""
    return f"quarantine:{incident_id}"


def restart_msg_id(incident_id: str) -> str:
    """An agent asked to restart for an incident: once per incident."""
    return f"restart:{incident_id}"


def breaker_msg_id(agent_id: str, version: int, event_type: str) -> str:
    """A breaker transition: once per state of the breaker it was decided on."""
    return f"breaker:{agent_id}:{version}:{event_type}"


def breaker_reset_msg_id(agent_id: str, version: int) -> str:
    """A breaker closed by hand: once per state of the breaker it was asked on."""
    return f"breaker-reset:{agent_id}:{version}"


def recovery_action_msg_id(scope: str) -> str:
    """What recovery did about an incident: once per incident."""
    return f"recovery-action:{scope}"


# --- balancing --------------------------------------------------------------------------------


def rebalanced_msg_id(scope: str) -> str:
    """The balancer's answer to a rebalance (a request, or a tick's summary): once per scope."""
    return f"rebalanced:{scope}"


def scale_msg_id(scope: str, version: int) -> str:
    """Scale advice: once per state of the advice it replaces."""
    return f"scale:{scope}:{version}"


# --- performance alerts -----------------------------------------------------------------------


def alert_msg_id(scope: str, version: int) -> str:
    """A performance alert decided at a version of its target's alerts: one, whichever gateway decides."""
    return f"alert:{scope}:{version}"


# --- dead letters -----------------------------------------------------------------------------


def dead_letter_msg_id(service: str, stream_seq: int) -> str:
    """A stored event a service could not process: kept once per service, however often redelivered."""
    return f"dlq:{service}:{stream_seq}"
