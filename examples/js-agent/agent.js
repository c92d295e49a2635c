// A Hive agent in JavaScript: register, heartbeat, take assignments from the log, report under
// fencing, drain. Written from docs/agent-protocol.md; the protocol's facts are in protocol.js.

import { connect } from "@nats-io/transport-node";
import { JetStreamApiError, jetstream, jetstreamManager } from "@nats-io/jetstream";
import * as protocol from "./protocol.js";

/** Throw from a handler when retrying cannot help: the task fails for good. */
export class NonRetryableError extends Error {}

/** The attempt is no longer this agent's (fencing): stop working on it. */
export class AttemptSuperseded extends Error {}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (event, fields = {}) =>
  console.log(JSON.stringify({ ts: new Date().toISOString(), event, ...fields }));

export class HiveAgent {
  /**
   * @param {object} options
   * @param {string} options.id agent id (its NATS user is agent-<id>)
   * @param {Record<string, number>} options.capabilities task types and capabilities, proficiency 0..1
   * @param {(task) => Promise<{result?: any, quality?: number|null}>} options.handler the work
   * @param {number} [options.capacity] tasks at once
   * @param {object} [options.persona] cognitive_style, creativity, analytical_depth, collaboration
   * @param {number} [options.heartbeatIntervalS] heartbeat period
   */
  constructor({ id, capabilities, handler, capacity = 1, persona = {}, heartbeatIntervalS = 0.5 }) {
    if (!protocol.ID.test(id)) throw new Error(`invalid agent id ${JSON.stringify(id)}`);
    for (const name of Object.keys(capabilities)) {
      if (!protocol.CAPABILITY.test(name)) throw new Error(`invalid capability ${JSON.stringify(name)}`);
    }
    Object.assign(this, { id, capabilities, handler, capacity, persona, heartbeatIntervalS });
    this.running = new Map(); // task id -> the attempt in hand
    this.stopping = false;
    this.beat = 0;
    this.receivedSeq = 0; // stream sequence of the last inbox message taken (heartbeat's received_seq)
  }

  /** Connect, register under a new session, then heartbeat and take assignments. */
  async start({ servers, user, pass }) {
    this.nc = await connect({
      servers,
      user,
      pass,
      name: protocol.agentUser(this.id),
      inboxPrefix: protocol.inboxPrefix(this.id), // the only inbox its permissions let it read
      maxReconnectAttempts: -1,
    });
    this.js = jetstream(this.nc);
    this.jsm = await jetstreamManager(this.nc, { checkAPI: false }); // agents may not ask $JS.API.INFO
    // With credentials the server lets agents create no consumer: the router opens the inbox.
    this.inboxOpenedByHive = Boolean(user);
    await this.register();
    this.heartbeats = setInterval(() => this.heartbeat(), this.heartbeatIntervalS * 1000);
    this.heartbeat();
  }

  async register() {
    this.session = crypto.randomUUID().replaceAll("-", "");
    this.beat = 0;
    const registration = protocol.event(
      "agent.registered",
      {
        agent_id: this.id,
        name: this.id,
        capabilities: this.capabilities,
        persona: this.persona,
        capacity: this.capacity,
        session: this.session,
        metadata: { kind: "javascript" },
      },
    );
    const ack = await this.throughOutages(() => this.append(registration));
    this.receivedSeq = ack.seq; // nothing of this session's inbox taken yet: it starts after this
    const info = await this.openInbox(ack.seq);
    this.assignments = await this.js.consumers
      .getConsumerFromInfo(info) // no further info request
      .consume({ max_messages: this.capacity + 16, bind: true });
    this.reading = this.readAssignments(this.assignments);
    log("agent_registered", { agent_id: this.id, session: this.session, seq: ack.seq });
  }

  /**
   * The inbox of the session registered at `registeredSeq`, once it serves it: opened by the router
   * when the server requires credentials (wait for it), else by the agent (replacing the last
   * session's).
   */
  async openInbox(registeredSeq) {
    const name = protocol.inbox(this.id);
    const current = () => this.jsm.consumers.info(protocol.STREAM, name).catch((err) => {
      if (err instanceof JetStreamApiError && err.code === protocol.CONSUMER_NOT_FOUND) return null;
      throw err;
    });
    if (!this.inboxOpenedByHive) {
      const info = await current();
      if (protocol.inboxServes(info, this.id, registeredSeq)) return info;
      if (info !== null) await this.jsm.consumers.delete(protocol.STREAM, name).catch(() => {});
      return this.jsm.consumers.add(protocol.STREAM, protocol.inboxConfig(this.id, registeredSeq, this.capacity));
    }
    for (let pause = protocol.INBOX_WAIT_FIRST_MS; ; pause = Math.min(pause * 2, protocol.INBOX_WAIT_MAX_MS)) {
      const info = await this.throughOutages(current);
      if (protocol.inboxServes(info, this.id, registeredSeq)) return info;
      if (pause === protocol.INBOX_WAIT_FIRST_MS) log("waiting_for_inbox", { durable: name });
      if (this.stopping) throw new Error("stopped while waiting for the inbox");
      await sleep(pause);
    }
  }

  /**
   * Call until NATS answers: an append until the stream takes it (Hive may still be starting: no
   * stream yet), a read until the server is back. A refusal by JetStream is thrown at once.
   */
  async throughOutages(call) {
    for (let pause = 100; ; pause = Math.min(pause * 2, 2000)) {
      try {
        return await call();
      } catch (err) {
        if (this.stopping || err instanceof JetStreamApiError) throw err;
        log("waiting_for_hive", { error: String(err) });
        await sleep(pause);
      }
    }
  }

  append(body, headers = {}) {
    return this.js.publish(protocol.subjectOf(body), JSON.stringify(body), { msgID: body.id, ...headers });
  }

  heartbeat() {
    if (this.nc.isClosed()) return;
    const info = this.nc.info ?? {};
    const beat = {
      agent_id: this.id,
      session: this.session,
      ts: Date.now() / 1000,
      in_flight: this.running.size,
      capacity: this.capacity,
      seq: ++this.beat,
      interval_s: this.heartbeatIntervalS,
      connection: info.server_id && info.client_id ? `${info.server_id}/${info.client_id}` : "",
      received_seq: this.receivedSeq, // how far it read its inbox: recovery tells a stalled reader by it
    };
    this.nc.publish(protocol.heartbeatSubject(this.id), JSON.stringify(beat));
  }

  async readAssignments(messages) {
    for await (const msg of messages) {
      let body = null;
      try {
        body = msg.json();
      } catch {
        body = null; // not JSON: not for us to judge, skipped like any event we do not act on
      }
      if (body?.agent_id === this.id) await this.onEvent(body);
      msg.ack();
      this.receivedSeq = Math.max(this.receivedSeq, msg.seq);
    }
  }

  async onEvent(body) {
    if (body.type === "agent.task_cancel_requested") {
      const held = this.running.get(body.task_id);
      if (held?.attempt === body.attempt) held.abort.abort(new Error(`cancelled: ${body.reason}`));
      return;
    }
    if (body.type === "agent.restart_requested") {
      if (!body.session || body.session === this.session) this.restart(body.reason);
      return;
    }
    if (body.type !== "agent.task_assigned") return;
    if ((body.session && body.session !== this.session) || this.running.has(body.task_id)) return;
    const task = {
      taskId: body.task_id,
      taskType: body.task_type,
      payload: body.payload ?? {},
      attempt: body.attempt,
      deadline: Date.now() / 1000 + (body.timeout_s ?? 300),
      lastSeq: body.task_seq ?? 0, // the task's last sequence we know: reports are appended against it
      abort: new AbortController(),
    };
    // task.started is optional (docs/agent-protocol.md, Starting): the Python SDK sends it only
    // for work still running after 0.25 s. This agent keeps it simple and reports every start
    // before running, which also refuses an attempt taken away meanwhile; it costs one message.
    const started = protocol.event("task.started", {
      task_id: task.taskId,
      agent_id: this.id,
      attempt: task.attempt,
      session: this.session,
    });
    if (!(await this.report(task, started))) return;
    this.running.set(task.taskId, task);
    task.done = this.execute(task).finally(() => this.running.delete(task.taskId));
  }

  async execute(task) {
    const began = Date.now();
    const context = {
      taskId: task.taskId,
      taskType: task.taskType,
      payload: task.payload,
      attempt: task.attempt,
      deadline: task.deadline,
      signal: task.abort.signal,
      progress: (percent, message = "") => this.progress(task, percent, message),
      reportRaw: (type, fields) => this.report(task, protocol.event(type, fields)),
    };
    const timer = setTimeout(
      () => task.abort.abort(new Error("timeout")),
      Math.max(0, task.deadline * 1000 - Date.now()),
    );
    const fields = { task_id: task.taskId, agent_id: this.id, attempt: task.attempt };
    try {
      const outcome = await Promise.race([
        this.handler(context),
        new Promise((_, reject) => task.abort.signal.addEventListener("abort", () => reject(task.abort.signal.reason))),
      ]);
      const duration_s = (Date.now() - began) / 1000;
      await this.report(
        task,
        protocol.event("task.completed", { ...fields, result: outcome?.result ?? null, quality: outcome?.quality ?? null, duration_s }),
      );
    } catch (err) {
      if (err instanceof AttemptSuperseded) return;
      const reason = task.abort.signal.reason?.message ?? "";
      if (reason.startsWith("cancelled")) {
        log("task_cancelled", { task_id: task.taskId, attempt: task.attempt });
        return; // Hive took the attempt away: nothing to report
      }
      const timedOut = reason === "timeout";
      await this.report(
        task,
        protocol.event("task.attempt_failed", {
          ...fields,
          error: timedOut ? `TimeoutError: the attempt ran past its timeout` : `${err.name}: ${err.message}`,
          failure_type: timedOut ? "task_timeout" : "agent_error",
          retryable: !(err instanceof NonRetryableError),
          duration_s: (Date.now() - began) / 1000,
        }),
      );
    } finally {
      clearTimeout(timer);
    }
  }

  async progress(task, percent, message) {
    const body = protocol.event("task.progress", {
      task_id: task.taskId,
      agent_id: this.id,
      attempt: task.attempt,
      percent: Math.max(0, Math.min(100, percent)),
      message,
    });
    if (!(await this.report(task, body))) throw new AttemptSuperseded(`attempt ${task.attempt} superseded`);
  }

  /**
   * Append a report against the task's last known sequence. Refused (another writer appended to
   * the task): read what decides its fate (taskState); a superseded or ended attempt gives up
   * (false), anything else (another agent's report included) is harmless and the report is
   * appended again against the task's new last sequence.
   */
  async report(task, body) {
    for (let i = 0; i < protocol.REPORT_ATTEMPTS; i++) {
      try {
        const ack = await this.throughOutages(() =>
          this.js.publish(protocol.subjectOf(body), JSON.stringify(body), {
            msgID: protocol.reportMsgId(body),
            expect: {
              lastSubjectSequence: task.lastSeq,
              lastSubjectSequenceSubject: protocol.taskEvents(task.taskId),
            },
          }),
        );
        task.lastSeq = Math.max(task.lastSeq, ack.seq);
        return true;
      } catch (err) {
        if (!(err instanceof JetStreamApiError) || err.code !== protocol.WRONG_LAST_SEQUENCE) throw err;
        const { events, lastSeq } = await this.throughOutages(() => this.taskState(task.taskId));
        const refusal = protocol.attemptVerdict(events, this.id, task.attempt);
        if (refusal !== null) {
          log("report_refused", { task_id: task.taskId, attempt: task.attempt, type: body.type, reason: refusal });
          return false;
        }
        task.lastSeq = lastSeq;
      }
    }
    log("report_refused", { task_id: task.taskId, attempt: task.attempt, type: body.type, reason: "kept changing" });
    return false;
  }

  /**
   * What decides a refused report's fate, by four direct gets (protocol.stateFilters): the events
   * among them that Hive would read (stored on their own subject), in stream order, and the task's
   * last sequence.
   */
  async taskState(taskId) {
    const filters = protocol.stateFilters(taskId, this.id);
    const [last, ...found] = await Promise.all(
      [filters.last, filters.decided, filters.own, filters.completion].map((filter) =>
        this.jsm.direct.getMessage(protocol.STREAM, { last_by_subj: filter }),
      ),
    );
    const events = new Map(); // by sequence: one message may answer two filters
    for (const msg of found) {
      if (msg === null) continue;
      let body = null;
      try {
        body = msg.json();
      } catch {
        continue; // not JSON: unreadable, changes nothing
      }
      if (protocol.storedOn(body, msg.subject)) events.set(msg.seq, body);
    }
    const ordered = [...events.entries()].sort(([a], [b]) => a - b).map(([, body]) => body);
    return { events: ordered, lastSeq: last?.seq ?? 0 };
  }

  async restart(reason) {
    log("agent_restarting", { reason });
    for (const task of this.running.values()) task.abort.abort(new Error("cancelled: restart"));
    this.assignments?.stop();
    await this.register();
  }

  /** Take nothing new, finish what is held (up to timeoutMs), deregister, close. */
  async drain(timeoutMs = 30_000) {
    const own = { agent_id: this.id, session: this.session };
    await this.append(protocol.event("agent.draining", own)).catch(() => {});
    const deadline = Date.now() + timeoutMs;
    while (this.running.size > 0 && Date.now() < deadline) {
      await Promise.race([Promise.all([...this.running.values()].map((t) => t.done)), sleep(100)]);
    }
    await this.append(protocol.event("agent.deregistered", { ...own, reason: "drained" })).catch(() => {});
    await this.stop();
  }

  async stop() {
    this.stopping = true;
    clearInterval(this.heartbeats);
    this.assignments?.stop();
    for (const task of this.running.values()) task.abort.abort(new Error("cancelled: stopping"));
    await this.nc.drain();
  }
}
