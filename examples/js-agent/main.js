#!/usr/bin/env node
// A code reviewer agent: `node main.js`, configured by the environment every Hive agent reads.
//
//   NATS_URL                 NATS server(s), comma-separated (default nats://127.0.0.1:4222)
//   HIVE_AGENT_CREDENTIALS   file of agent passwords ({"agent-<id>": "..."}, from `hive auth agent <id>`)
//   NATS_USER, NATS_PASSWORD otherwise, the user to connect as (none: no credentials)
//   HIVE_AGENT_ID            the agent's id (default js-reviewer-1)
//   HIVE_CAPABILITIES        comma-separated NAME[=PROFICIENCY] (default code_review=0.8)
//   HIVE_CAPACITY            tasks at once (default 2)
//   HEARTBEAT_INTERVAL_S     heartbeat period (default 0.5)
//
// The review flags the lines of payload.diff that contain TODO. Three more payload fields show
// the rest of the protocol at work (the test suite uses them): "fail": "once" fails attempt 1
// (retried), "fail": "always" fails for good; "hold_until": a file path the work waits for;
// "malformed": true appends a report Hive cannot read (it goes to a dead-letter queue).

import { existsSync, readFileSync } from "node:fs";
import { HiveAgent, NonRetryableError } from "./agent.js";

const env = process.env;
const id = env.HIVE_AGENT_ID || "js-reviewer-1";

function capabilities(text) {
  const found = {};
  for (const item of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [name, proficiency] = item.split("=");
    found[name] = proficiency === undefined ? 1.0 : Number(proficiency);
  }
  return found;
}

function credentials() {
  if (env.HIVE_AGENT_CREDENTIALS) {
    const user = `agent-${id}`;
    const pass = JSON.parse(readFileSync(env.HIVE_AGENT_CREDENTIALS, "utf8"))[user];
    if (!pass) throw new Error(`no password for ${user} in ${env.HIVE_AGENT_CREDENTIALS}: hive auth agent ${id}`);
    return { user, pass };
  }
  return env.NATS_USER ? { user: env.NATS_USER, pass: env.NATS_PASSWORD ?? "" } : {};
}

async function waitForFile(path, signal) {
  while (!existsSync(path)) {
    signal.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function review(task) {
  const { payload } = task;
  if (payload.fail === "always") throw new NonRetryableError("this diff cannot be reviewed");
  if (payload.fail === "once" && task.attempt === 1) throw new Error("the model timed out");
  await task.progress(50, "reading the diff");
  if (payload.hold_until) await waitForFile(payload.hold_until, task.signal);
  if (payload.malformed) {
    // A bug of this agent's own making: a failure report whose `retryable` is not a boolean.
    await task.reportRaw("task.attempt_failed", {
      task_id: task.taskId,
      agent_id: id,
      attempt: task.attempt,
      retryable: "sometimes",
    });
  }
  const lines = String(payload.diff ?? "").split("\n");
  return { result: { comments: lines.filter((line) => line.includes("TODO")) }, quality: 0.8 };
}

const agent = new HiveAgent({
  id,
  capabilities: capabilities(env.HIVE_CAPABILITIES || "code_review=0.8"),
  capacity: Number(env.HIVE_CAPACITY || 2),
  persona: { cognitive_style: "meticulous" },
  heartbeatIntervalS: Number(env.HEARTBEAT_INTERVAL_S || 0.5),
  handler: review,
});
await agent.start({ servers: (env.NATS_URL || "nats://127.0.0.1:4222").split(","), ...credentials() });
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.once(signal, () => agent.drain().then(() => process.exit(0)));
}
