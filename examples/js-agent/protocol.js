// Hive's agent protocol as this agent uses it: subjects, the inbox's name and configuration, message
// ids, the events it appends, what it reads when a report is refused and the fencing rule. Every
// fact here is one of docs/agent-protocol.md; when the protocol changes, this file and that document
// change together.

import { randomUUID } from "node:crypto";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

export const STREAM = "HIVE_EVENTS";
export const WRONG_LAST_SEQUENCE = 10071; // JetStream err_code: an expected sequence did not hold
export const CONSUMER_NOT_FOUND = 10014; // JetStream err_code: no such consumer (yet)
export const REPORT_ATTEMPTS = 20; // refused reports in a row before a report gives up
export const ID = /^[A-Za-z0-9_-]{1,64}$/;
export const CAPABILITY = /^[a-z0-9_.:-]{1,64}$/;
export const INBOX_WAIT_FIRST_MS = 20; // polling for the inbox the router opens: 20 ms, doubling...
export const INBOX_WAIT_MAX_MS = 500; // ...up to 500 ms

/** The task events an agent reports: version 2, on a subject ending in the reporting agent's id. */
export const REPORTS = new Set(["task.started", "task.progress", "task.completed", "task.attempt_failed"]);
/**
 * What Hive tells an agent about a task: version 3, on hive.evt.agent.<agent id>.<event type>, the
 * task only in the body (version 2 named the task in a sixth token; version 1 was on five tokens).
 */
export const NOTICES = new Set(["agent.task_assigned", "agent.task_cancel_requested"]);
const VERSIONS = { "agent.registered": 2, ...Object.fromEntries([...REPORTS].map((type) => [type, 2])) };

export const agentUser = (agentId) => `agent-${agentId}`;
export const inboxPrefix = (agentId) => `_INBOX.${agentUser(agentId)}`;
export const inbox = (agentId) => agentUser(agentId); // the durable pull consumer of its assignments

export const heartbeatSubject = (agentId) => `hive.hb.${agentId}`;
export const agentEvents = (agentId) => `hive.evt.agent.${agentId}.>`;
export const reportSubject = (taskId, eventType, agentId) => `hive.evt.task.${taskId}.${eventType}.${agentId}`;
/** Everything about a task, reports included: what a report's expected sequence is the last of. */
export const taskEvents = (taskId) => `hive.evt.task.${taskId}.>`;
/** What services append to a task (submitted, queued, requeued, failed, cancelled). */
export const taskDecisions = (taskId) => `hive.evt.task.${taskId}.*`;
/** The reports on a task naming one agent. */
export const reportsBy = (taskId, agentId) => `hive.evt.task.${taskId}.*.${agentId}`;
/** One type of report on a task, whichever agent it names. */
export const reportsOfType = (taskId, eventType) => `hive.evt.task.${taskId}.${eventType}.*`;
/** Direct get of the last message on `filter`: the filter in the subject, an empty body. */
export const lastOn = (filter) => `$JS.API.DIRECT.GET.${STREAM}.${filter}`;

/** An event body: the envelope every event carries (its type's version), then its own fields. */
export function event(type, fields) {
  return { type, id: randomUUID().replaceAll("-", ""), ts: Date.now() / 1000, v: VERSIONS[type] ?? 1, ...fields };
}

/**
 * The subject an event is appended on: hive.evt.<aggregate>.<its id field>.<event type>, and for a
 * report the agent it speaks for after that.
 */
export function subjectOf(body) {
  const [aggregate, eventType] = body.type.split(".");
  if (REPORTS.has(body.type)) return reportSubject(body.task_id, eventType, body.agent_id);
  const id = aggregate === "agent" ? body.agent_id : body.task_id;
  return `hive.evt.${aggregate}.${id}.${eventType}`;
}

/**
 * Is `body` what was stored on `subject`? Every reader refuses an event whose subject is not its
 * own (a report naming another agent than its subject's last token), as its version put it: a
 * report of version 1 was stored on the five-token subject; a notice of version 2 on six tokens,
 * the task's id last (and only there), one of version 1 or 3 on five.
 */
export function storedOn(body, subject) {
  if (typeof body?.type !== "string" || !body.type.includes(".")) return false;
  const version = body.v ?? 1;
  const [aggregate, eventType] = body.type.split(".");
  if (NOTICES.has(body.type)) {
    const five = `hive.evt.${aggregate}.${body.agent_id}.${eventType}`;
    return version === 2 ? subject === `${five}.${body.task_id}` : subject === five;
  }
  if (subjectOf(body) === subject) return true;
  return REPORTS.has(body.type) && version === 1 && subject === `hive.evt.${aggregate}.${body.task_id}.${eventType}`;
}

/**
 * Nats-Msg-Id of a report: the report's own id, the same on every retry of it. Never a key another
 * client could guess: the server de-duplicates keys across the whole stream.
 */
export function reportMsgId(body) {
  return body.id;
}

/**
 * The inbox of the session registered at `registeredSeq`: its own aggregate, from the next
 * sequence. The router creates it when the server requires credentials; the agent only without.
 */
export function inboxConfig(agentId, registeredSeq, capacity) {
  const name = inbox(agentId);
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

/** Does the consumer `info` describes serve the session registered at `registeredSeq` (or a newer one)? */
export function inboxServes(info, agentId, registeredSeq) {
  const config = info?.config;
  return (
    config !== undefined &&
    !config.deliver_subject &&
    config.filter_subject === agentEvents(agentId) &&
    (config.opt_start_seq ?? 0) >= registeredSeq + 1
  );
}

/**
 * What a refused report reads, by direct gets: the last message of everything about the task (its
 * stream sequence is the task's last), the last of what services appended to it, the last report
 * naming this agent, and the last completion by anyone.
 */
export const stateFilters = (taskId, agentId) => ({
  last: taskEvents(taskId),
  decided: taskDecisions(taskId),
  own: reportsBy(taskId, agentId),
  completion: reportsOfType(taskId, "completed"),
});

/**
 * May `agentId` still report on `attempt`? null if so, else why not; from events of the task in
 * stream order: its whole history, or only what `stateFilters` reads (the rule of
 * shared/domain/fencing.py). Another agent's report never makes this agent give up: it is a
 * forgery no service applies, or about a later attempt that the services' own events already show
 * superseded this one (its completion then only says why).
 */
export function attemptVerdict(events, agentId, attempt) {
  let current = 0;
  let terminal = "";
  const failed = new Map();
  const completedByOthers = new Set();
  for (const e of events) {
    if (REPORTS.has(e.type) && e.agent_id !== agentId) {
      if (e.type === "task.completed") completedByOthers.add(e.attempt);
      continue;
    }
    switch (e.type) {
      case "task.submitted":
        current = Math.max(current, 1);
        break;
      case "task.requeued":
      case "task.queued":
      case "task.started":
      case "task.progress":
        current = Math.max(current, e.attempt);
        break;
      case "task.attempt_failed":
        if (!failed.has(e.attempt)) failed.set(e.attempt, e.failure_type ?? "agent_error");
        current = Math.max(current, e.attempt);
        break;
      case "task.completed":
        terminal ||= "completed";
        break;
      case "task.failed":
        terminal ||= "failed";
        current = Math.max(current, e.attempt);
        break;
      case "task.cancelled":
        terminal ||= "cancelled";
        break;
    }
  }
  if (current > attempt && completedByOthers.has(current)) terminal ||= "completed";
  if (current === 0 && !terminal) return "unknown task";
  if (terminal) return `task already ${terminal}`;
  if (attempt !== current) return `attempt ${attempt} superseded by attempt ${current}`;
  if (failed.has(attempt)) return `attempt ${attempt} already failed (${failed.get(attempt)})`;
  return null;
}
