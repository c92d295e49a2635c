// Hive dashboard: plain JavaScript, no build step, no library. Everything it shows comes from the
// gateway's API (the same token as any client) and the live stream (GET /api/v1/stream, Server-Sent
// Events). Each page loads what it shows, then reloads it when the stream says something it shows
// changed (at most a few times a second), never on a timer. Untrusted text is only ever set as
// text (textContent), never as HTML.
"use strict";

const TOKEN_KEY = "hive-api-token";
const REFRESH_MS = 400;       // coalesce the stream's events into one reload per page at most this often
const RECONNECT_MS = 2000;    // wait before opening the stream again after it broke
const MAX_LOG_ROWS = 500;
const FIGURES = [
  ["system_throughput_tasks_per_second", "Throughput", "tasks/s"],
  ["task_assignment_latency_ms", "Assignment latency (p99, p50 dotted)", "ms"],
  ["load_balancing_efficiency", "Load-balancing efficiency", ""],
  ["routing_accuracy_percent", "Routing accuracy", "%"],
  ["failure_recovery_time_ms", "Recovery time", "ms"],
  ["workflow_completion_rate", "Workflow completion", ""],
];
const TERMINAL = new Set(["completed", "failed", "cancelled", "skipped"]);

// --- small helpers -------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;  // through the CSSOM: the page's CSP refuses style attributes
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function s(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function badge(state) {
  return h("span", { class: `badge ${state}`, "data-state": state }, String(state).replace("_", "-"));
}

function loadBar(used, capacity) {
  const share = capacity > 0 ? Math.min(1, used / capacity) : 0;
  return h("span", { class: share >= 1 ? "bar full" : "bar", title: `${used} of ${capacity}` },
    h("span", { style: `width:${Math.round(share * 100)}%` }));
}

function fmtTime(ts) {
  if (ts === null || ts === undefined) return "";
  return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
}

function fmtDateTime(ts) {
  if (ts === null || ts === undefined) return "";
  const d = new Date(ts * 1000);
  return `${d.toLocaleDateString()} ${d.toLocaleTimeString([], { hour12: false })}`;
}

function ago(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function num(value, digits = 2) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

function toast(message, bad = false) {
  const note = h("div", { class: bad ? "bad" : "" }, message);
  document.getElementById("toast").append(note);
  setTimeout(() => note.remove(), bad ? 8000 : 4000);
}

function query(params) {
  const found = Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined);
  return found.length ? "?" + new URLSearchParams(found).toString() : "";
}

// --- the API ---------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "";
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const reply = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await reply.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = null; }
  if (reply.status === 401) {
    showLogin("The gateway refused the token (401 unauthorized). Enter the value of HIVE_API_TOKEN.");
    throw new ApiError(401, parsed);
  }
  if (!reply.ok && reply.status !== 202) throw new ApiError(reply.status, parsed);
  return parsed;
}

// --- the live stream ------------------------------------------------------------------------------

const live = {
  source: null,
  seq: 0,
  listeners: new Set(),
  timer: null,
  started: false,

  async connect() {
    this.started = true;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    let url = "/api/v1/stream";
    if (sessionStorage.getItem(TOKEN_KEY)) {
      try {
        const ticket = await api("/api/v1/stream/ticket", { method: "POST" });
        url += `?ticket=${encodeURIComponent(ticket.ticket)}`;
      } catch (error) {
        this.broken();
        return;
      }
    }
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener("hello", (message) => {
      this.seq = JSON.parse(message.data).seq;
      setLive(true);
      this.emit({ kind: "hello", seq: this.seq });
    });
    source.addEventListener("event", (message) => {
      const event = JSON.parse(message.data);
      this.seq = Math.max(this.seq, event.seq);
      this.emit({ kind: "event", event });
    });
    source.addEventListener("sample", (message) => this.emit({ kind: "sample", sample: JSON.parse(message.data) }));
    source.addEventListener("resync", (message) => this.emit({ kind: "hello", seq: JSON.parse(message.data).seq }));
    source.onerror = () => { if (this.source === source) this.broken(); };
  },

  broken() {
    setLive(false);
    if (this.source) this.source.close();
    this.source = null;
    clearTimeout(this.timer);
    // EventSource would retry by itself with the same (by then expired) ticket: get a new one.
    this.timer = setTimeout(() => this.connect(), RECONNECT_MS);
  },

  stop() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
    setLive(false);
  },

  emit(message) {
    for (const listener of this.listeners) listener(message);
  },
};

function setLive(on) {
  const flag = document.getElementById("live");
  flag.className = on ? "live on" : "live off";
  flag.textContent = on ? "live" : "reconnecting";
  flag.dataset.live = on ? "on" : "off";
}

// A page's reload, run at most once per REFRESH_MS however many events ask for it.
function throttled(reload) {
  let pending = null;
  let running = false;
  let again = false;
  const run = async () => {
    pending = null;
    if (running) { again = true; return; }
    running = true;
    try { await reload(); } catch (error) { if (error.status !== 401) console.warn(error); }
    running = false;
    if (again) { again = false; pending = setTimeout(run, REFRESH_MS); }
  };
  const request = () => { if (pending === null) pending = setTimeout(run, REFRESH_MS); };
  request.cancel = () => { clearTimeout(pending); pending = null; };
  return request;
}

// --- pages -----------------------------------------------------------------------------------------

let current = null;  // {dispose()} of the page shown

function route() {
  const [path, search] = (location.hash.slice(1) || "/fleet").split("?");
  const params = Object.fromEntries(new URLSearchParams(search || ""));
  const parts = path.split("/").filter(Boolean);
  const pages = {
    fleet: fleetPage, tasks: parts[1] ? taskPage : tasksPage, workflows: parts[1] ? workflowPage : workflowsPage,
    metrics: metricsPage, events: eventsPage, actions: actionsPage,
  };
  const page = pages[parts[0]] || fleetPage;
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.page === parts[0]);
  if (current) current.dispose();
  const main = document.getElementById("main");
  main.replaceChildren();
  main.dataset.page = parts[0] || "fleet";
  current = page(main, params, parts[1] ? decodeURIComponent(parts[1]) : null) || { dispose() {} };
}

// A page: `load` fills `main` (and again on every relevant live event), `wants(message)` says which.
function livePage(main, load, wants) {
  const reload = throttled(load);
  const listener = (message) => { if (message.kind === "hello" || wants(message)) reload(); };
  live.listeners.add(listener);
  load().catch((error) => { if (error.status !== 401) main.replaceChildren(h("p", { class: "error" }, error.message)); });
  return { dispose() { live.listeners.delete(listener); reload.cancel(); } };
}

async function act(label, work) {
  try {
    const answer = await work();
    toast(label);
    return answer;
  } catch (error) {
    if (error.status !== 401) toast(`${error.message}`, true);
    return null;
  }
}

// Fleet: agents, their load and breakers, scale advice.
function fleetPage(main) {
  main.append(h("h1", {}, "Fleet"));
  const body = h("div", { id: "fleet" });
  main.append(body);
  const load = async () => {
    const [agents, breakers, metrics] = await Promise.all([
      api("/api/v1/agents"), api("/api/v1/orchestration/circuit-breakers"), api("/api/v1/orchestration/metrics"),
    ]);
    const byAgent = Object.fromEntries(breakers.breakers.map((b) => [b.agent_id, b]));
    const sys = metrics.system_metrics;
    const cards = h("div", { class: "cards" },
      card("agents active", sys.active_agents), card("tasks submitted", sys.total_tasks),
      card("completed", sys.completed_tasks), card("failed", sys.failed_tasks),
      card("workflows running", sys.active_workflows),
      card("breakers open", breakers.counts.open || 0), card("half-open", breakers.counts.half_open || 0));
    const rows = agents.map((a) => {
      const breaker = byAgent[a.agent_id];
      const state = breaker ? breaker.status : "closed";
      const persona = a.persona || {};
      return h("tr", { "data-agent": a.agent_id },
        h("td", {}, h("b", {}, a.agent_id), a.name !== a.agent_id ? h("div", { class: "muted small" }, a.name) : null),
        h("td", {}, badge(a.status), a.stall ? h("div", { class: "small muted" }, a.stall.reason) : null),
        h("td", { class: "num" }, `${a.in_flight} / ${a.capacity}`),
        h("td", {}, loadBar(a.in_flight, a.capacity)),
        h("td", { "data-breaker": state }, badge(state), breakerDetail(breaker),
          state !== "closed" ? h("div", {}, h("button", { class: "secondary", "data-reset": a.agent_id,
            onclick: () => act(`breaker of ${a.agent_id} reset`, () => api(
              `/api/v1/orchestration/circuit-breakers/${encodeURIComponent(a.agent_id)}/reset`,
              { method: "POST", body: { requested_by: "dashboard" } })) }, "reset")) : null),
        h("td", { class: "small" }, persona.cognitive_style || "", h("div", { class: "muted" },
          `creativity ${num(persona.creativity)} · analytical ${num(persona.analytical_depth)} · collaboration ${num(persona.collaboration)}`)),
        h("td", { class: "small" }, Object.keys(a.capabilities).join(", ")),
        h("td", { class: "num" }, a.completed), h("td", { class: "num" }, a.failed),
        h("td", { class: "small", "data-heartbeat": a.last_heartbeat_ts || "", title: fmtDateTime(a.last_heartbeat_ts) }, ago(a.last_heartbeat_ts)));
    });
    const table = h("table", { id: "agents" },
      h("thead", {}, h("tr", {}, ["agent", "status", "load", "", "breaker", "persona", "capabilities"].map((t) => h("th", {}, t)),
        h("th", { class: "num" }, "completed"), h("th", { class: "num" }, "failed"), h("th", {}, "last heartbeat"))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No agent registered yet."))));
    const advice = metrics.scale_recommendations;
    const scale = h("table", { id: "scale" },
      h("thead", {}, h("tr", {}, ["capability", "agents", "add", "slots", "needed", "arrivals/s", "queue", "reason"].map((t) => h("th", {}, t)))),
      h("tbody", {}, advice.length ? advice.map((r) => h("tr", {},
        h("td", {}, r.capability), h("td", { class: "num" }, r.current_agents),
        h("td", { class: "num" }, r.additional_agents > 0 ? h("b", {}, `+${r.additional_agents}`) : "0"),
        h("td", { class: "num" }, r.current_slots), h("td", { class: "num" }, num(r.needed_slots)),
        h("td", { class: "num" }, num(r.arrival_rate_per_s, 3)), h("td", { class: "num" }, r.queue_depth),
        h("td", { class: "small" }, r.reason))) : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No advice yet (it follows the load)."))));
    body.replaceChildren(cards, table, h("h2", {}, "Scale recommendations per capability"), scale);
  };
  return livePage(main, load, (m) => m.kind === "event" && ["agent", "breaker", "task"].includes(m.event.aggregate));
}

function card(label, value) {
  return h("div", { class: "card" }, h("b", {}, value), h("span", { class: "muted small" }, label));
}

function breakerDetail(breaker) {
  if (!breaker) return null;
  if (breaker.status === "closed") {
    return h("div", { class: "muted small" }, `${breaker.failures}/${breaker.calls} failed`);
  }
  const when = breaker.retry_after_ts ? `may close from ${fmtTime(breaker.retry_after_ts)}` : "";
  return h("div", { class: "small" }, breaker.reason, h("div", { class: "muted" },
    `opened ${fmtTime(breaker.opened_ts)} · ${when}` +
    (breaker.status === "half_open" ? ` · probes ${breaker.probe_successes}/${breaker.probes_allowed}` : "")));
}

// Tasks: the filtered, paged list.
function tasksPage(main, params) {
  main.append(h("h1", {}, "Tasks"));
  const filters = h("form", { class: "filters", id: "task-filters" },
    h("label", {}, "status", h("select", { name: "status" }, ["", "pending", "scheduled", "queued", "assigned", "running",
      "completed", "failed", "cancelled"].map((v) => h("option", { value: v, selected: params.status === v }, v || "any")))),
    field("task_type", params), field("agent_id", params), field("workflow_id", params),
    h("label", {}, "priority", h("select", { name: "priority" }, ["", "low", "normal", "high", "critical"].map(
      (v) => h("option", { value: v, selected: params.priority === v }, v || "any")))),
    h("label", {}, "submitted after", h("input", { name: "submitted_after", type: "datetime-local",
      value: params.submitted_after ? localInput(params.submitted_after) : "" })),
    h("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    const form = Object.fromEntries(new FormData(filters));
    if (form.submitted_after) form.submitted_after = String(new Date(form.submitted_after).getTime() / 1000);
    location.hash = "#/tasks" + query(form);
  });
  const body = h("div", {});
  main.append(filters, body);
  const load = async () => {
    const page = await api("/api/v1/tasks" + query({ ...params, limit: params.limit || 50 }));
    const rows = page.items.map((t) => h("tr", { "data-task": t.task_id, "data-status": t.status },
      h("td", {}, h("a", { href: `#/tasks/${encodeURIComponent(t.task_id)}` }, t.task_id), t.name ? h("div", { class: "muted small" }, t.name) : null),
      h("td", {}, t.task_type), h("td", {}, badge(t.status)), h("td", {}, t.priority),
      h("td", {}, t.agent_id ? h("a", { href: `#/tasks?agent_id=${encodeURIComponent(t.agent_id)}` }, t.agent_id) : ""),
      h("td", { class: "num" }, t.attempt),
      h("td", {}, t.workflow_id ? h("a", { href: `#/workflows/${encodeURIComponent(t.workflow_id)}` }, t.workflow_id) : ""),
      h("td", { class: "small" }, fmtDateTime(t.submitted_ts)),
      h("td", { class: "num" }, t.finished_ts ? `${num(t.finished_ts - t.submitted_ts)} s` : ""),
      h("td", { class: "num" }, num(t.quality))));
    const pager = h("div", { class: "pager" },
      params.cursor ? h("a", { href: "#/tasks" + query({ ...params, cursor: "" }) }, "« newest") : null,
      page.next_cursor ? h("a", { href: "#/tasks" + query({ ...params, cursor: page.next_cursor }), id: "next-page" }, "older »") : null);
    body.replaceChildren(h("table", { id: "tasks" },
      h("thead", {}, h("tr", {}, ["task", "type", "status", "priority", "agent", "attempt", "workflow", "submitted", "took", "quality"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No task matches.")))), pager);
  };
  return livePage(main, load, (m) => m.kind === "event" && m.event.aggregate === "task");
}

function field(name, params) {
  return h("label", {}, name.replace("_", " "), h("input", { name, value: params[name] || "", size: 14 }));
}

function localInput(ts) {
  const d = new Date(Number(ts) * 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

// One task: attempts on a timeline, why each agent, events, result.
function taskPage(main, _params, taskId) {
  main.append(h("h1", {}, "Task ", h("code", {}, taskId)));
  const body = h("div", { id: "task" });
  main.append(body);
  const load = async () => {
    const [task, events] = await Promise.all([
      api(`/api/v1/tasks/${encodeURIComponent(taskId)}`),
      api(`/api/v1/events?aggregate=task&id=${encodeURIComponent(taskId)}&limit=500`),
    ]);
    const header = h("div", { class: "panel", id: "task-summary", "data-status": task.status },
      h("div", { class: "row" },
        h("div", {}, badge(task.status), " ", h("b", {}, task.task_type), ` · priority ${task.priority} · attempt ${task.attempt}`,
          task.agent_id ? [" · agent ", h("a", { href: `#/tasks?agent_id=${encodeURIComponent(task.agent_id)}` }, task.agent_id)] : "",
          task.workflow_id ? [" · workflow ", h("a", { href: `#/workflows/${encodeURIComponent(task.workflow_id)}` }, task.workflow_id), ` (step ${task.step_id})`] : "",
          h("div", { class: "muted small" }, `submitted ${fmtDateTime(task.submitted_ts)}`,
            task.finished_ts ? ` · ended ${fmtDateTime(task.finished_ts)} after ${num(task.finished_ts - task.submitted_ts)} s` : "",
            task.queued_reason ? ` · queued: ${task.queued_reason} ${task.queued_detail}` : "",
            task.last_error ? ` · last error: ${task.last_error}` : "")),
        h("div", { style: "flex:0" }, TERMINAL.has(task.status) ? null : h("button", { class: "danger", id: "cancel-task",
          onclick: () => act(`cancel of ${taskId} requested`, () => api(`/api/v1/tasks/${encodeURIComponent(taskId)}/cancel`,
            { method: "POST", body: { reason: "cancelled from the dashboard" } })) }, "Cancel task"))));
    const assignments = task.assignments.map((a) => h("div", { class: "panel" },
      h("h2", { style: "margin-top:0" }, `Attempt ${a.attempt}: ${a.agent_id}`, h("span", { class: "muted small" }, ` · ${a.strategy} · score ${num(a.score, 3)} · ${fmtTime(a.ts)}`)),
      h("p", {}, a.explanation),
      h("div", { class: "row" },
        h("div", {}, h("b", { class: "small" }, "Score breakdown"), breakdown(a.breakdown)),
        h("div", {}, h("b", { class: "small" }, "Rejected candidates"), a.rejected.length ? h("table", {},
          h("tbody", {}, a.rejected.map((r) => h("tr", {}, h("td", {}, r.agent_id), h("td", { class: "num" }, num(r.score, 3)), h("td", { class: "small" }, r.reason)))))
          : h("p", { class: "muted small" }, "none")))));
    const eventRows = events.items.map((e) => h("tr", {}, h("td", { class: "num" }, e.seq), h("td", {}, e.type),
      h("td", { class: "small" }, fmtTime(e.ts)), h("td", { class: "small" }, summarize(e.event))));
    body.replaceChildren(header,
      h("h2", {}, "Attempts"), h("div", { class: "panel" }, timeline(task, events.items)),
      h("h2", {}, "Why this agent"), ...(assignments.length ? assignments : [h("p", { class: "muted" }, "Not assigned yet.")]),
      h("div", { class: "row" },
        h("div", {}, h("h2", {}, "Result", task.quality !== null ? h("span", { class: "muted small" }, ` · quality ${num(task.quality, 3)}`) : ""),
          task.result === null || task.result === undefined ? h("p", { class: "muted" }, "No result yet.") : h("pre", { id: "result" }, JSON.stringify(task.result, null, 2))),
        h("div", {}, h("h2", {}, "Events"), h("table", { id: "task-events" }, h("tbody", {}, eventRows)))));
  };
  return livePage(main, load, (m) => m.kind === "event" && (m.event.id === taskId || (m.event.event && m.event.event.task_id === taskId)));
}

function breakdown(parts) {
  const entries = Object.entries(parts || {});
  const top = Math.max(1e-9, ...entries.map(([, v]) => Math.abs(v)));
  return h("table", { class: "breakdown" }, h("tbody", {}, entries.map(([k, v]) => h("tr", {},
    h("td", { class: "small" }, k), h("td", {}, h("span", { class: "bar" }, h("span", { style: `width:${Math.round(100 * Math.abs(v) / top)}%` }))),
    h("td", { class: "num small" }, num(v, 3))))));
}

function summarize(event) {
  const keep = ["agent_id", "attempt", "reason", "error", "quality", "status", "task_type", "detail"];
  return keep.filter((k) => event[k] !== undefined && event[k] !== "" && event[k] !== null).map((k) => `${k}=${typeof event[k] === "object" ? JSON.stringify(event[k]) : event[k]}`).join(" ");
}

// The attempts on a time axis: waiting (assigned, not started), running, and how each ended.
function timeline(task, events) {
  const now = Date.now() / 1000;
  const start = task.submitted_ts;
  const end = Math.max(task.finished_ts || now, start + 0.001);
  const attempts = new Map();
  const get = (n) => { if (!attempts.has(n)) attempts.set(n, { attempt: n }); return attempts.get(n); };
  for (const a of task.assignments) Object.assign(get(a.attempt), { agent: a.agent_id, assigned: a.ts });
  for (const e of events) {
    const ev = e.event;
    if (ev.attempt === undefined) continue;
    const row = get(ev.attempt);
    if (e.type === "task.started") row.started = e.ts;
    if (["task.completed", "task.attempt_failed", "task.requeued", "task.failed", "task.cancelled"].includes(e.type) && !row.ended) {
      row.ended = e.ts; row.outcome = e.type.split(".")[1]; row.duration = ev.duration_s || 0;
    }
  }
  // task.started is optional: work that ended within the SDK's bound (0.25 s) ran from its end
  // less its duration (as the fleet projection reads it; shared/domain/starts.py).
  for (const r of attempts.values()) {
    if (!r.started && r.ended && (r.outcome === "completed" || (r.outcome === "attempt_failed" && r.duration > 0))) {
      r.started = Math.max(r.ended - r.duration, Math.min(r.assigned || r.ended, r.ended));
    }
  }
  const rows = [...attempts.values()].filter((r) => r.assigned || r.started).sort((a, b) => a.attempt - b.attempt);
  const width = 900, lane = 26, left = 150, height = 34 + Math.max(1, rows.length) * lane;
  const x = (t) => left + ((t - start) / (end - start)) * (width - left - 20);
  const svg = s("svg", { class: "timeline", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  svg.append(s("line", { x1: left, x2: width - 20, y1: height - 18, y2: height - 18, class: "axis", stroke: "#c6ccd6" }),
    s("text", { x: left, y: height - 4, class: "tick" }, fmtTime(start)),
    s("text", { x: width - 20, y: height - 4, class: "tick", "text-anchor": "end" }, task.finished_ts ? fmtTime(end) : "now"));
  rows.forEach((r, i) => {
    const y = 6 + i * lane;
    svg.append(s("text", { x: 0, y: y + 14 }, `#${r.attempt} ${r.agent || ""}`));
    const from = r.assigned || r.started;
    const began = r.started || r.ended || (TERMINAL.has(task.status) ? end : now);
    svg.append(s("rect", { x: x(from), y, width: Math.max(1, x(began) - x(from)), height: 18, class: "wait" },
      s("title", {}, `assigned ${fmtTime(r.assigned)}`)));
    if (r.started) {
      const stop = r.ended || (TERMINAL.has(task.status) ? end : now);
      const cls = r.outcome === "completed" ? "ok" : r.outcome ? "bad" : "run";
      svg.append(s("rect", { x: x(r.started), y, width: Math.max(2, x(stop) - x(r.started)), height: 18, class: cls },
        s("title", {}, `started ${fmtTime(r.started)}${r.outcome ? `, ${r.outcome} ${fmtTime(r.ended)}` : ", running"}`)));
    }
  });
  if (!rows.length) svg.append(s("text", { x: left, y: 20, class: "tick" }, "no attempt yet"));
  return svg;
}

// Workflows: the list.
function workflowsPage(main, params) {
  main.append(h("h1", {}, "Workflows"));
  const filters = h("form", { class: "filters" },
    h("label", {}, "status", h("select", { name: "status" }, ["", "waiting", "running", "completed", "failed", "cancelled"].map(
      (v) => h("option", { value: v, selected: params.status === v }, v || "any")))),
    field("name", params), h("button", { type: "submit" }, "Filter"));
  filters.addEventListener("submit", (e) => { e.preventDefault(); location.hash = "#/workflows" + query(Object.fromEntries(new FormData(filters))); });
  const body = h("div", {});
  main.append(filters, body);
  const load = async () => {
    const page = await api("/api/v1/orchestration/workflows" + query({ ...params, limit: 50 }));
    const rows = page.items.map((w) => h("tr", { "data-workflow": w.workflow_id, "data-status": w.status },
      h("td", {}, h("a", { href: `#/workflows/${encodeURIComponent(w.workflow_id)}` }, w.workflow_id), w.name && w.name !== w.workflow_id ? h("div", { class: "muted small" }, w.name) : null),
      h("td", {}, badge(w.status)), h("td", {}, loadBar(w.percent, 100), ` ${num(w.percent, 0)}%`),
      h("td", { class: "num" }, w.tasks), h("td", {}, w.template), h("td", {}, w.execution_mode),
      h("td", { class: "small" }, fmtDateTime(w.submitted_ts)), h("td", { class: "small" }, w.reason)));
    body.replaceChildren(h("table", { id: "workflows" },
      h("thead", {}, h("tr", {}, ["workflow", "status", "progress", "tasks", "template", "mode", "submitted", "reason"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No workflow yet.")))),
    h("div", { class: "pager" }, params.cursor ? h("a", { href: "#/workflows" + query({ ...params, cursor: "" }) }, "« newest") : null,
      page.next_cursor ? h("a", { href: "#/workflows" + query({ ...params, cursor: page.next_cursor }) }, "older »") : null));
  };
  return livePage(main, load, (m) => m.kind === "event" && (m.event.aggregate === "workflow" || (m.event.aggregate === "task" && /completed|failed|cancelled|started/.test(m.event.type))));
}

// One workflow: the DAG (SVG), coloured by state, the critical path marked; progress, ETA, cancel.
function workflowPage(main, _params, workflowId) {
  main.append(h("h1", {}, "Workflow ", h("code", {}, workflowId)));
  const body = h("div", { id: "workflow" });
  main.append(body);
  let taskIds = new Set();
  let selected = null;
  const load = async () => {
    const w = await api(`/api/v1/orchestration/workflow/${encodeURIComponent(workflowId)}`);
    taskIds = new Set(w.tasks.map((t) => t.hive_task_id).filter(Boolean));
    const ended = TERMINAL.has(w.status);
    const p = w.progress;
    const header = h("div", { class: "panel", id: "workflow-summary", "data-status": w.status },
      h("div", { class: "row" },
        h("div", {}, badge(w.status), " ", h("b", {}, w.name || w.workflow_id), ` · ${w.template} · ${w.execution_mode}`,
          h("div", {}, loadBar(p.percent, 100), ` ${num(p.percent, 0)}% ended: ${p.completed} completed, ${p.failed} failed, ${p.skipped} skipped, ${p.cancelled} cancelled, ${p.in_flight} in flight, ${p.pending} pending`),
          h("div", { class: "muted small" }, `critical path ${w.critical_path.join(" → ")} (${num(w.critical_path_minutes)} min estimated)`,
            ended ? ` · ended ${fmtDateTime(w.finished_ts)}` : w.estimated_finish_ts ? ` · estimated finish ${fmtDateTime(w.estimated_finish_ts)} (${num(w.estimated_remaining_minutes)} min left)` : "",
            w.reason ? ` · ${w.reason}` : "")),
        h("div", { style: "flex:0" }, ended ? null : h("button", { class: "danger", id: "cancel-workflow",
          onclick: () => act(`cancel of ${workflowId} requested`, () => api(`/api/v1/orchestration/workflow/${encodeURIComponent(workflowId)}/cancel`,
            { method: "POST", body: { reason: "cancelled from the dashboard" } })) }, "Cancel workflow"))));
    const legend = h("div", { class: "legend" }, ["pending", "dispatched", "running", "completed", "failed", "cancelled"].map(
      (state) => h("span", {}, h("i", { class: `state-${state}` }), state)), h("span", {}, "thick border: critical path"));
    const steps = h("table", { id: "steps" },
      h("thead", {}, h("tr", {}, ["step", "type", "state", "agent", "task", "depends on", "est. min", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, w.tasks.map((t) => h("tr", { "data-step": t.task_id, class: selected === t.task_id ? "new" : "" },
        h("td", {}, h("b", {}, t.task_id), t.on_critical_path ? h("span", { class: "muted small" }, " critical") : ""),
        h("td", {}, t.task_type), h("td", {}, badge(t.status), t.reason ? h("div", { class: "muted small" }, t.reason) : null),
        h("td", {}, t.agent_id || ""), h("td", {}, t.hive_task_id ? h("a", { href: `#/tasks/${encodeURIComponent(t.hive_task_id)}` }, t.hive_task_id) : ""),
        h("td", { class: "small" }, t.dependencies.join(", ")), h("td", { class: "num" }, num(t.estimated_duration_minutes)),
        h("td", {}, TERMINAL.has(t.status) || ended ? null : h("button", { class: "danger", "data-cancel-step": t.task_id,
          onclick: () => act(`cancel of step ${t.task_id} requested`, () => api(
            `/api/v1/orchestration/workflow/${encodeURIComponent(workflowId)}/tasks/${encodeURIComponent(t.task_id)}/cancel`,
            { method: "POST", body: { reason: "cancelled from the dashboard" } })) }, "cancel step"))))));
    body.replaceChildren(header, h("div", { class: "panel" }, legend, dag(w, (id) => { selected = id; document.querySelector(`tr[data-step="${CSS.escape(id)}"]`)?.scrollIntoView({ block: "center" }); })),
      h("h2", {}, "Steps"), steps);
  };
  return livePage(main, load, (m) => m.kind === "event" && ((m.event.aggregate === "workflow" && m.event.id === workflowId) || taskIds.has(m.event.id)));
}

// Layered layout: a step's column is the length of the longest chain of dependencies before it.
function dag(w, onPick) {
  const byId = Object.fromEntries(w.tasks.map((t) => [t.task_id, t]));
  const depth = {};
  const visit = (id, seen = new Set()) => {
    if (depth[id] !== undefined) return depth[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    const deps = (byId[id]?.dependencies || []).filter((d) => byId[d]);
    depth[id] = deps.length ? 1 + Math.max(...deps.map((d) => visit(d, seen))) : 0;
    return depth[id];
  };
  w.tasks.forEach((t) => visit(t.task_id));
  const columns = [];
  for (const t of w.tasks) (columns[depth[t.task_id]] ||= []).push(t);
  const nodeW = 150, nodeH = 46, gapX = 70, gapY = 22;
  const tallest = Math.max(...columns.map((c) => c.length));
  const width = columns.length * (nodeW + gapX) - gapX + 20;
  const height = tallest * (nodeH + gapY) - gapY + 20;
  const place = {};
  columns.forEach((column, ci) => column.forEach((t, ri) => {
    const offset = ((tallest - column.length) * (nodeH + gapY)) / 2;
    place[t.task_id] = { x: 10 + ci * (nodeW + gapX), y: 10 + offset + ri * (nodeH + gapY) };
  }));
  const critical = new Set(w.critical_path);
  const svg = s("svg", { class: "dag", id: "dag", viewBox: `0 0 ${width} ${height}`, width: Math.min(width, 1360), role: "img", "aria-label": "workflow DAG" },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8a94a6" }))));
  for (const t of w.tasks) {
    for (const d of t.dependencies) {
      if (!place[d]) continue;
      const a = place[d], b = place[t.task_id];
      const x1 = a.x + nodeW, y1 = a.y + nodeH / 2, x2 = b.x, y2 = b.y + nodeH / 2, mid = (x1 + x2) / 2;
      svg.append(s("path", { class: critical.has(d) && critical.has(t.task_id) ? "edge critical" : "edge",
        d: `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2 - 2} ${y2}`, "marker-end": "url(#arrow)" }));
    }
  }
  for (const t of w.tasks) {
    const p = place[t.task_id];
    svg.append(s("g", { class: `node${critical.has(t.task_id) ? " critical" : ""}`, "data-step": t.task_id, "data-state": t.status,
      transform: `translate(${p.x},${p.y})`, onclick: () => onPick(t.task_id) },
      s("rect", { width: nodeW, height: nodeH, rx: 7, class: `state-${t.status}` }),
      s("text", { x: 10, y: 19, "font-weight": 600 }, t.task_id.length > 20 ? t.task_id.slice(0, 19) + "…" : t.task_id),
      s("text", { x: 10, y: 36, fill: "#475467" }, `${t.status}${t.agent_id ? " · " + t.agent_id : ""}`.slice(0, 24)),
      s("title", {}, `${t.task_id} (${t.task_type}): ${t.status}${t.reason ? ", " + t.reason : ""}`)));
  }
  return svg;
}

// Metrics: each figure over time against its target, from the gateway's samples (and new ones live).
function metricsPage(main) {
  main.append(h("h1", {}, "Metrics"));
  const body = h("div", {});
  main.append(body);
  let history = null;
  let validation = null;
  const draw = () => {
    const targets = Object.fromEntries(validation.targets.map((t) => [t.metric, t]));
    const summary = h("div", { class: "cards" },
      card("performance score", num(validation.performance_score, 1)),
      card("targets met", `${validation.targets_met} / ${validation.targets_measured} measured`),
      card("status", badge(validation.status)),
      card("window", `${num(validation.window_s, 0)} s`), card("samples", history.samples.length));
    const charts = FIGURES.map(([metric, title, unit]) => chart(metric, title, unit, history.samples, targets[metric]));
    body.replaceChildren(summary, h("p", { class: "muted small" },
      `One sample every ${history.interval_s} s (MONITORING_INTERVAL_SECONDS), each over the last ${num(history.window_s, 0)} s; kept ${history.retention_hours} h by this gateway. Dashed line: the target.`),
    h("div", { class: "grid", id: "charts" }, charts));
  };
  const load = async () => {
    [history, validation] = await Promise.all([api("/api/v1/orchestration/metrics/history"), api("/api/v1/orchestration/performance/validate")]);
    draw();
  };
  const page = livePage(main, load, () => false);
  const onSample = async (message) => {
    if (message.kind !== "sample" || !history) return;
    history.samples.push(message.sample);
    try { validation = await api("/api/v1/orchestration/performance/validate"); } catch { /* shown next time */ }
    draw();
  };
  live.listeners.add(onSample);
  return { dispose() { page.dispose(); live.listeners.delete(onSample); } };
}

function chart(metric, title, unit, samples, target) {
  const width = 460, height = 190, left = 52, right = 10, top = 12, bottom = 26;
  const points = samples.filter((x) => x.orchestration_metrics[metric] !== null && x.orchestration_metrics[metric] !== undefined)
    .map((x) => [x.ts, x.orchestration_metrics[metric], x.assignment_latency_p50_ms]);
  const met = target ? target.met : null;
  const state = met === null || met === undefined ? "not measured" : met ? "met" : "not met";
  const head = h("div", { class: "row", style: "align-items:center" }, h("b", {}, title),
    h("span", { style: "flex:0", "data-met": state }, badge(state.replace(" ", "_"))));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width: "100%", "data-metric": metric });
  const card = h("div", { class: "panel", "data-chart": metric }, head,
    h("div", { class: "muted small" }, target ? `target ${target.comparison} ${num(target.target)} ${unit} · now ${num(target.measured)} ${unit} (${target.variable})` : ""), svg);
  if (!points.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "tick" }, "nothing measured yet"));
    return card;
  }
  const t0 = samples[0].ts, t1 = Math.max(samples[samples.length - 1].ts, t0 + 1);
  const latency = metric === "task_assignment_latency_ms";
  const values = points.flatMap((p) => (latency ? [p[1], p[2]] : [p[1]])).filter((v) => v !== null && v !== undefined);
  if (target) values.push(target.target);
  const top_ = Math.max(...values) * 1.1 || 1, low = Math.min(0, ...values);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const y = (v) => top + (1 - (v - low) / (top_ - low)) * (height - top - bottom);
  svg.append(s("line", { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: "axis" }),
    s("line", { x1: left, x2: left, y1: top, y2: height - bottom, class: "axis" }),
    s("text", { x: left - 4, y: y(top_ / 1.1) + 4, "text-anchor": "end", class: "tick" }, num(top_ / 1.1)),
    s("text", { x: left - 4, y: y(low) + 4, "text-anchor": "end", class: "tick" }, num(low)),
    s("text", { x: left, y: height - 8, class: "tick" }, fmtTime(t0)),
    s("text", { x: width - right, y: height - 8, "text-anchor": "end", class: "tick" }, fmtTime(t1)));
  if (target) svg.append(s("line", { x1: left, x2: width - right, y1: y(target.target), y2: y(target.target), class: "target" },
    s("title", {}, `target ${target.comparison} ${target.target}`)));
  svg.append(s("polyline", { class: "line", points: points.map((p) => `${x(p[0])},${y(p[1])}`).join(" ") }));
  if (latency) {
    const p50 = points.filter((p) => p[2] !== null && p[2] !== undefined);
    svg.append(s("polyline", { class: "line p50", points: p50.map((p) => `${x(p[0])},${y(p[2])}`).join(" ") }));
  }
  const last = points[points.length - 1];
  svg.append(s("circle", { cx: x(last[0]), cy: y(last[1]), r: 3, fill: "#2f6fde" }));
  return card;
}

// Events: the live log, filtered, or the log as of a sequence.
function eventsPage(main, params) {
  main.append(h("h1", {}, "Events"));
  const filters = h("form", { class: "filters", id: "event-filters" },
    h("label", {}, "aggregate", h("select", { name: "aggregate" }, ["", "agent", "task", "workflow", "breaker", "system"].map(
      (v) => h("option", { value: v, selected: params.aggregate === v }, v || "any")))),
    field("id", params), field("type", params),
    h("label", {}, "as of sequence", h("input", { name: "as_of", type: "number", min: 1, value: params.as_of || "", placeholder: "live" })),
    h("button", { type: "submit" }, "Show"));
  filters.addEventListener("submit", (e) => { e.preventDefault(); location.hash = "#/events" + query(Object.fromEntries(new FormData(filters))); });
  const asOf = params.as_of ? Number(params.as_of) : null;
  const note = h("p", { class: "muted small" });
  const tbody = h("tbody", {});
  main.append(filters, note, h("table", { id: "events" },
    h("thead", {}, h("tr", {}, ["seq", "time", "type", "aggregate", "id", "detail"].map((t) => h("th", {}, t)))), tbody));
  // As the API filters: one task's story also holds its assignments and cancel requests (agent events).
  const aboutTask = (e) => params.aggregate === "task" && params.id && e.aggregate === "agent" && e.event && e.event.task_id === params.id;
  const matches = (e) => (aboutTask(e) || ((!params.aggregate || e.aggregate === params.aggregate) && (!params.id || e.id === params.id))) &&
    (!params.type || e.type === params.type || e.type === `${params.aggregate}.${params.type}`);
  const row = (e, fresh) => h("tr", { class: fresh ? "new" : "", "data-seq": e.seq, "data-type": e.type, "data-id": e.id || e.subject.split(".")[3] },
    h("td", { class: "num" }, e.seq), h("td", { class: "small" }, fmtTime(e.ts)), h("td", {}, e.type),
    h("td", {}, e.aggregate || e.subject.split(".")[2]), h("td", {}, linkTo(e.aggregate || e.subject.split(".")[2], e.id || e.subject.split(".")[3])),
    h("td", { class: "small" }, e.event ? summarize(e.event) : "(large: open the task's events)"));
  let shownUpTo = 0;
  const load = async () => {
    const end = asOf || live.seq;
    // The log is read forwards; an id is narrow enough to read from the start, the rest from a window.
    let after = params.id ? 0 : Math.max(0, end - 1000);
    const found = [];
    for (let pages = 0; pages < 10; pages += 1) {
      const page = await api("/api/v1/events" + query({ aggregate: params.aggregate, id: params.id, type: params.type, after_seq: after, limit: 500 }));
      for (const item of page.items) if (!asOf || item.seq <= asOf) found.push(item);
      if (!page.next_cursor || !page.items.length || (asOf && page.items[page.items.length - 1].seq >= asOf)) break;
      after = page.items[page.items.length - 1].seq;
    }
    const shown = found.slice(-200).reverse();
    shownUpTo = shown.length ? shown[0].seq : end;
    tbody.replaceChildren(...shown.map((e) => row(e, false)));
    note.textContent = asOf
      ? `The log as of sequence ${asOf}: the last ${shown.length} matching events at or before it (not live).`
      : `The last ${shown.length} matching events, newest first; new ones appear as they are appended (live).`;
  };
  const reload = throttled(load);
  const listener = (message) => {
    if (message.kind === "hello") { reload(); return; }
    if (asOf || message.kind !== "event" || !matches(message.event) || message.event.seq <= shownUpTo) return;
    shownUpTo = message.event.seq;
    tbody.prepend(row(message.event, true));
    while (tbody.children.length > MAX_LOG_ROWS) tbody.lastChild.remove();
  };
  live.listeners.add(listener);
  if (live.seq || asOf) load().catch((error) => { if (error.status !== 401) note.textContent = error.message; });
  return { dispose() { live.listeners.delete(listener); reload.cancel(); } };
}

function linkTo(aggregate, id) {
  if (aggregate === "task") return h("a", { href: `#/tasks/${encodeURIComponent(id)}` }, id);
  if (aggregate === "workflow") return h("a", { href: `#/workflows/${encodeURIComponent(id)}` }, id);
  return id;
}

// Actions: submit a task, reset a breaker, cancel a task, run the balancer (dry run first).
function actionsPage(main) {
  main.append(h("h1", {}, "Actions"));
  const out = (id) => h("div", { id, class: "small" });
  const submitOut = out("submit-result");
  const submit = h("form", { class: "stack", id: "submit-task" },
    h("label", {}, "task type", h("input", { name: "task_type", value: "code_review", required: true })),
    h("label", {}, "task id (optional)", h("input", { name: "task_id" })),
    h("label", {}, "priority", h("select", { name: "priority" }, ["normal", "low", "high", "critical"].map((v) => h("option", { value: v }, v)))),
    h("label", {}, "required capabilities (comma-separated)", h("input", { name: "required_capabilities" })),
    h("label", {}, "payload (JSON)", h("textarea", { name: "payload", rows: 3 }, "{}")),
    h("button", { type: "submit" }, "Submit task"), submitOut);
  submit.addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = Object.fromEntries(new FormData(submit));
    let payload;
    try { payload = JSON.parse(form.payload || "{}"); } catch (error) { submitOut.textContent = `payload is not JSON: ${error.message}`; return; }
    const body = { task_type: form.task_type, priority: form.priority, payload,
      required_capabilities: form.required_capabilities.split(",").map((c) => c.trim()).filter(Boolean) };
    if (form.task_id) body.task_id = form.task_id;
    const answer = await act("task submitted", () => api("/api/v1/orchestration/task/assign", { method: "POST", body }));
    if (answer) submitOut.replaceChildren(badge(answer.status), " ", h("a", { href: `#/tasks/${encodeURIComponent(answer.task_id)}`, id: "submitted-task" }, answer.task_id),
      answer.agent_id ? ` → ${answer.agent_id}` : ` ${answer.reason || ""} ${answer.detail || ""}`);
  });

  const resetOut = out("reset-result");
  const reset = h("form", { class: "stack", id: "reset-breaker" },
    h("label", {}, "agent", h("input", { name: "agent_id", required: true, list: "open-breakers" })),
    h("datalist", { id: "open-breakers" }), h("button", { type: "submit" }, "Reset breaker"), resetOut);
  api("/api/v1/orchestration/circuit-breakers").then((b) => reset.querySelector("datalist").replaceChildren(
    ...b.breakers.filter((x) => x.status !== "closed").map((x) => h("option", { value: x.agent_id }, x.status)))).catch(() => {});
  reset.addEventListener("submit", async (e) => {
    e.preventDefault();
    const agentId = new FormData(reset).get("agent_id");
    const answer = await act(`breaker of ${agentId} reset`, () => api(`/api/v1/orchestration/circuit-breakers/${encodeURIComponent(agentId)}/reset`,
      { method: "POST", body: { requested_by: "dashboard" } }));
    if (answer) resetOut.textContent = `${answer.agent_id}: ${answer.status} (seq ${answer.seq})`;
  });

  const cancelOut = out("cancel-result");
  const cancel = h("form", { class: "stack", id: "cancel-task-form" },
    h("label", {}, "task id", h("input", { name: "task_id", required: true })),
    h("label", {}, "reason", h("input", { name: "reason", value: "cancelled from the dashboard" })),
    h("button", { type: "submit", class: "danger" }, "Cancel task"), cancelOut);
  cancel.addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = Object.fromEntries(new FormData(cancel));
    const answer = await act(`cancel of ${form.task_id} requested`, () => api(`/api/v1/tasks/${encodeURIComponent(form.task_id)}/cancel`,
      { method: "POST", body: { reason: form.reason } }));
    if (answer) cancelOut.textContent = `${answer.task_id}: ${answer.status}`;
  });

  const balanceOut = out("balance-result");
  const runButton = h("button", { type: "button", id: "balance-run", class: "danger", disabled: true }, "Run: move them");
  const balance = async (dryRun) => {
    const answer = await act(dryRun ? "dry run done" : "balancer ran", () => api("/api/v1/orchestration/load-balancing/optimize",
      { method: "POST", body: { dry_run: dryRun, requested_by: "dashboard" } }));
    if (!answer) return;
    runButton.disabled = !dryRun || answer.status !== "done";
    balanceOut.replaceChildren(h("p", {}, `${dryRun ? "Would move" : "Moved"} ${answer.moves.length} task(s); efficiency ${num(answer.efficiency_before, 3)} → ${num(answer.efficiency_after, 3)}`,
      answer.status !== "done" ? ` (${answer.status}: ${answer.detail})` : ""),
    answer.moves.length ? h("table", {}, h("tbody", {}, answer.moves.map((m) => h("tr", {}, h("td", {}, m.task_id), h("td", {}, `${m.from_agent_id} → ${m.to_agent_id}`),
      h("td", { class: "num" }, `waited ${num(m.waited_s)} s`))))) : "", ...answer.notes.map((n) => h("div", { class: "muted" }, n)));
  };
  runButton.addEventListener("click", () => balance(false));
  const balancer = h("div", { class: "stack", id: "balancer" },
    h("p", { class: "small muted" }, "Moves assigned work that waits unstarted to idle capable agents. See what would move first."),
    h("div", {}, h("button", { type: "button", id: "balance-dry-run", onclick: () => balance(true) }, "Dry run"), " ", runButton), balanceOut);

  main.append(h("div", { class: "grid" },
    h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Submit a task"), submit),
    h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Run the balancer"), balancer),
    h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Reset a circuit breaker"), reset),
    h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Cancel a task"), cancel)));
  return null;
}

// --- sign-in and start ---------------------------------------------------------------------------

function showLogin(message) {
  live.stop();
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("main").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("logout").hidden = true;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("login-token").focus();
}

function start() {
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  document.getElementById("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
  live.connect();
  route();
}

async function boot() {
  window.addEventListener("hashchange", () => { if (live.started) route(); });
  document.getElementById("logout").addEventListener("click", () => showLogin("Signed out."));
  document.getElementById("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = document.getElementById("login-token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      await api("/api/v1/agents");
    } catch (error) {
      if (error.status !== 401) document.getElementById("login-error").textContent = `The gateway did not answer: ${error.message}`;
      return;  // a 401 shows the prompt again, saying so
    }
    document.getElementById("login-token").value = "";
    start();
  });
  const kept = sessionStorage.getItem(TOKEN_KEY);
  try {
    await api("/api/v1/agents");  // does this gateway need a token, and is the one kept still good?
  } catch (error) {
    if (error.status === 401) {
      if (!kept) document.getElementById("login-error").textContent = "";  // nothing was refused yet
      return;
    }
  }
  start();
}

boot();
