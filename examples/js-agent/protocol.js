// Hive's agent protocol as this agent uses it: subjects, consumer names and configurations,
// message ids, the events it appends and the fencing rule. Every fact here is one of
// docs/agent-protocol.md; when the protocol changes, this file and that document change together.

import { randomUUID } from "node:crypto";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

export const STREAM = "HIVE_EVENTS";
export const WRONG_LAST_SEQUENCE = 10071; // JetStream err_code: an expected sequence did not hold
export const REPORT_ATTEMPTS = 20; // refused reports in a row before a report gives up
export const ID = /^[A-Za-z0-9_-]{1,64}$/;
export const CAPABILITY = /^[a-z0-9_.:-]{1,64}$/;

export const agentUser = (agentId) => `agent-${agentId}`;
export const inboxPrefix = (agentId) => `_INBOX.${agentUser(agentId)}`;
export const assignmentConsumer = (agentId) => agentUser(agentId);
export const historyConsumer = (agentId) => `${agentUser(agentId)}-read`;

export const heartbeatSubject = (agentId) => `hive.hb.${agentId}`;
export const agentSubject = (agentId, eventType) => `hive.evt.agent.${agentId}.${eventType}`;
export const agentEvents = (agentId) => `hive.evt.agent.${agentId}.*`;
export const taskSubject = (taskId, eventType) => `hive.evt.task.${taskId}.${eventType}`;
export const taskEvents = (taskId) => `hive.evt.task.${taskId}.*`;

/** An event body: the envelope every event carries, then its own fields. */
export function event(type, fields, v = 1) {
  return { type, id: randomUUID().replaceAll("-", ""), ts: Date.now() / 1000, v, ...fields };
}

/** The subject an event is appended on: hive.evt.<aggregate>.<its id field>.<event type>. */
export function subjectOf(body) {
  const [aggregate, eventType] = body.type.split(".");
  const id = aggregate === "agent" ? body.agent_id : body.task_id;
  return `hive.evt.${aggregate}.${id}.${eventType}`;
}

/** Nats-Msg-Id of a report: one of each kind per attempt; a progress report is its own. */
export function reportMsgId(body) {
  return body.type === "task.progress" ? body.id : `${body.type}:${body.task_id}:${body.attempt}`;
}

/** The durable consumer a session reads its assignments from: its own aggregate, from its registration. */
export function assignmentConsumerConfig(agentId, registeredSeq, capacity) {
  const name = assignmentConsumer(agentId);
  return {
    name,
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: registeredSeq + 1,
    ack_wait: nanos(30_000),
    max_ack_pending: capacity + 64,
    inactive_threshold: nanos(600_000),
    filter_subject: agentEvents(agentId),
  };
}

/** The consumer that reads one task's events when a report was refused. */
export function historyConsumerConfig(agentId, taskId) {
  return {
    name: historyConsumer(agentId),
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
    filter_subject: taskEvents(taskId),
    inactive_threshold: nanos(30_000),
    mem_storage: true,
    num_replicas: 1,
  };
}

/**
 * May `agentId` still report on `attempt`? null if so, else why not; from the task's events in
 * order (the rule of shared/domain/fencing.py).
 */
export function attemptVerdict(events, agentId, attempt) {
  let current = 0;
  let terminal = "";
  const startedBy = new Map();
  const failed = new Map();
  for (const e of events) {
    switch (e.type) {
      case "task.submitted":
        current = Math.max(current, 1);
        break;
      case "task.requeued":
        current = Math.max(current, e.attempt);
        break;
      case "task.started":
        if (!startedBy.has(e.attempt)) startedBy.set(e.attempt, e.agent_id);
        break;
      case "task.attempt_failed":
        if (!failed.has(e.attempt)) failed.set(e.attempt, e.failure_type ?? "agent_error");
        break;
      case "task.completed":
        terminal ||= "completed";
        break;
      case "task.failed":
        terminal ||= "failed";
        break;
      case "task.cancelled":
        terminal ||= "cancelled";
        break;
    }
  }
  if (current === 0) return "unknown task";
  if (terminal) return `task already ${terminal}`;
  if (attempt !== current) return `attempt ${attempt} superseded by attempt ${current}`;
  if (failed.has(attempt)) return `attempt ${attempt} already failed (${failed.get(attempt)})`;
  const owner = startedBy.get(attempt);
  if (owner !== undefined && owner !== agentId) return `attempt ${attempt} is held by agent ${owner}`;
  return null;
}
