// pulsaga dashboard: plain JavaScript over the admin API (docs/api.md).
// Routes: #/ (process list), #/p/<id> (one process), #/dlq (dead letters),
// #/schedules (schedules.js).
"use strict";

const TOKEN_KEY = "pulsaga-token";
const REFRESH_MS = 2000;
const STATUSES = ["running", "completed", "compensating", "compensated", "failed", "paused", "compensation_failed", "terminated"];

const $ = (sel, root = document) => root.querySelector(sel);
const view = $("#view");

// h builds an element: h("td", {class: "x"}, "text", child, ...). Text is
// always set as text, never parsed as HTML.
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

// put replaces el's children with parts, arrays flattened, empty parts
// left out; mount does it for the page.
function put(el, ...parts) {
  el.replaceChildren(...parts.flat(Infinity).filter(k => k !== undefined && k !== null && k !== false));
}
function mount(...parts) { put(view, ...parts); }

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

// ------------------------------------------------------------------ API

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body, idempotencyKey) {
  const headers = {};
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  // Marks the request as the dashboard's: the server refuses requests that
  // change something without it or a JSON body (docs/api.md#security).
  headers["X-Pulsaga-Request"] = "1";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new APIError(0, "cannot reach the pulsaga server: " + e.message);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const msg = data && data.error ? data.error.message : `HTTP ${resp.status}: ${text}`;
    if (resp.status === 401) askToken(msg);
    throw new APIError(resp.status, msg);
  }
  return data;
}

function newKey() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, x => x.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ helpers

function toast(msg, bad) {
  const t = h("div", { class: "toast" + (bad ? " bad" : ""), role: "status" }, msg);
  $("#toasts").append(t);
  setTimeout(() => t.remove(), bad ? 8000 : 4000);
}

function badge(status) { return h("span", { class: "badge " + status, "data-status": status }, status || "new"); }

function ago(t) {
  if (!t) return "–";
  const d = (Date.now() - new Date(t).getTime()) / 1000;
  if (d < 60) return Math.max(0, Math.round(d)) + "s ago";
  if (d < 3600) return Math.round(d / 60) + "m ago";
  if (d < 172800) return Math.round(d / 3600) + "h ago";
  return new Date(t).toISOString().slice(0, 16).replace("T", " ");
}

function clock(t) { return t ? new Date(t).toISOString().slice(11, 23) : "–"; }

function askToken(reason) {
  const d = $("#token-dialog");
  if (d.open) return;
  if (reason) $("#token-dialog p").textContent = reason + " — paste a bearer token.";
  $("#token-input").value = "";
  d.showModal();
}

$("#token-button").addEventListener("click", () => askToken());
$("#token-dialog").addEventListener("close", () => {
  if ($("#token-dialog").returnValue !== "ok") return;
  const v = $("#token-input").value.trim();
  if (v) localStorage.setItem(TOKEN_KEY, v); else localStorage.removeItem(TOKEN_KEY);
  whoami().then(route);
});

// changed reports whether data differs from the last render of page (or
// the last render is older than 15 s, to keep "ago" times fresh), so a
// live page is not redrawn under the user's cursor for nothing.
function changed(page, data) {
  const text = JSON.stringify(data);
  if (text === page.last && Date.now() - page.renderedAt < 15000) return false;
  page.last = text;
  page.renderedAt = Date.now();
  return true;
}

// who is the caller as the server sees the token: what it may do decides
// which buttons are enabled (the server checks again).
let who = { name: "", role: "" };

async function whoami() {
  try {
    who = await api("GET", "/api/v1/whoami");
    $("#who").textContent = `${who.name} (${who.role})`;
  } catch (_) { who = { name: "", role: "" }; $("#who").textContent = ""; }
  document.body.dataset.role = who.role;
}

// mayAct says whether the token may change things (the operator role).
function mayAct() { return who.role === "operator"; }
const READ_ONLY = () => `your token (${who.name}) is read-only: acting needs the operator role`;

$("#search").addEventListener("submit", e => {
  e.preventDefault();
  const id = $("#search-id").value.trim();
  if (id) location.hash = "#/p/" + encodeURIComponent(id);
});

// ------------------------------------------------------------------ router

let timer = null;
let current = null; // {render: async fn} of the page shown

function schedule() {
  clearTimeout(timer);
  if ($("#live").checked && current) timer = setTimeout(async () => { await refresh(); schedule(); }, REFRESH_MS);
}
$("#live").addEventListener("change", schedule);

async function refresh() {
  if (!current) return;
  const page = current;
  try {
    await page.render();
  } catch (e) {
    if (page !== current) return;
    view.replaceChildren(h("div", { class: "panel error", id: "page-error" }, e.message));
  }
}

// parseHash splits "#/path?query" into its path and parameters.
function parseHash() {
  const hash = (location.hash || "#/").slice(1);
  const i = hash.indexOf("?");
  return { path: i < 0 ? hash : hash.slice(0, i), params: new URLSearchParams(i < 0 ? "" : hash.slice(i + 1)) };
}

// setParams rewrites the current URL's parameters without navigating, so
// what the page shows can be shared by copying the address.
function setParams(path, params) {
  const q = params.toString();
  history.replaceState(null, "", "#" + path + (q ? "?" + q : ""));
}

function route() {
  const { path, params } = parseHash();
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.remove("active");
  const nav = name => { const a = $(`[data-nav="${name}"]`); if (a) a.classList.add("active"); };
  let m;
  if ((m = path.match(/^\/p\/(.+)$/))) {
    current = processPage(decodeURIComponent(m[1]));
  } else if (path === "/processes") {
    nav("list");
    current = listPage(params);
  } else if (path === "/definitions") {
    nav("definitions");
    current = definitionsPage(); // definitions.js
  } else if ((m = path.match(/^\/d\/(.+)$/))) {
    nav("definitions");
    current = definitionPage(decodeURIComponent(m[1]), params); // definitions.js
  } else if (path === "/bulk") {
    nav("bulk");
    current = bulkJobsPage(); // bulk.js
  } else if ((m = path.match(/^\/bulk\/(.+)$/))) {
    nav("bulk");
    current = bulkJobPage(decodeURIComponent(m[1])); // bulk.js
  } else if (path.startsWith("/schedules")) {
    nav("schedules");
    current = schedulesPage(); // schedules.js
  } else if (path.startsWith("/dlq")) {
    nav("dlq");
    current = dlqPage();
  } else {
    nav("overview");
    current = overviewPage(params); // overview.js
  }
  view.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  refresh().then(schedule);
}
window.addEventListener("hashchange", route);

// ------------------------------------------------------------------ list

// LIST_FILTERS are the list page's filters: its URL parameters and the
// API's query parameters (and a bulk action's filter).
const LIST_FILTERS = ["status", "definition", "q", "stuck", "step", "step_status", "error_type"];
const STEP_STATUSES = ["running", "waiting", "completed", "skipped", "failed", "cancelled", "compensating", "compensated", "compensation_failed"];

function listPage(params) {
  const page = {};
  const state = { cursor: params.get("cursor") || "", cursors: [] };
  for (const k of LIST_FILTERS) state[k] = params.get(k) || "";
  const form = h("form", { class: "panel filters", id: "filters", autocomplete: "off" },
    h("label", {}, "Status", h("select", { id: "f-status" }, h("option", { value: "" }, "any"), STATUSES.map(x => h("option", { value: x }, x)))),
    h("label", {}, "Definition", h("input", { id: "f-definition", placeholder: "name" })),
    h("label", {}, "Process id contains", h("input", { id: "f-q", type: "search" })),
    h("label", {}, "Step", h("input", { id: "f-step", placeholder: "id", size: 10 })),
    h("label", {}, "Step status", h("select", { id: "f-step_status" }, h("option", { value: "" }, "any"), STEP_STATUSES.map(x => h("option", { value: x }, x)))),
    h("label", {}, "Error type", h("input", { id: "f-error_type", placeholder: "NoSeats", size: 12 })),
    h("label", { class: "check" }, h("input", { id: "f-stuck", type: "checkbox" }), "stuck only"),
    h("button", { type: "button", id: "bulk-open", class: "ghost", "data-needs-role": "operator", title: "Retry, skip, cancel, terminate or signal every process this filter selects",
      onclick: () => openBulk(filterOf(state)) }, "Bulk action…"), // bulk.js
  );
  for (const k of LIST_FILTERS) {
    const el = $("#f-" + k, form);
    if (k === "stuck") el.checked = state.stuck === "true"; else el.value = state[k];
  }
  const apply = () => {
    for (const k of LIST_FILTERS) {
      const el = $("#f-" + k, form);
      state[k] = k === "stuck" ? (el.checked ? "true" : "") : el.value.trim();
    }
    state.cursor = ""; state.cursors = [];
    refresh();
  };
  form.addEventListener("change", apply);
  form.addEventListener("input", e => { if (e.target.tagName === "INPUT" && e.target.type !== "checkbox") apply(); });
  form.addEventListener("submit", e => { e.preventDefault(); apply(); });
  const body = h("div", { id: "list" });
  let mounted = false;

  page.render = async () => {
    const q = filterOf(state);
    setParams("/processes", q);
    q.set("limit", "50");
    if (state.cursor) q.set("cursor", state.cursor);
    const seq = page.seq = (page.seq || 0) + 1; // typing sends several; keep the latest answer
    const data = await api("GET", "/api/v1/processes?" + q);
    if (current !== page || seq !== page.seq || !changed(page, [data, state.cursors.length])) return;
    if (!mounted) { view.replaceChildren(h("h1", {}, "Processes"), form, h("div", { class: "panel" }, body)); mounted = true; }
    const rows = data.processes.map(p => h("tr", {
      class: "row", "data-id": p.process_id, onclick: () => { location.hash = "#/p/" + encodeURIComponent(p.process_id); },
    },
      h("td", { class: "mono" }, h("a", { href: "#/p/" + encodeURIComponent(p.process_id) }, p.process_id)),
      h("td", {}, `${p.definition} v${p.version}`),
      h("td", { class: "status" }, badge(p.status)),
      h("td", {}, ago(p.started_at)),
      h("td", {}, ago(p.updated_at)),
      h("td", {}, p.stuck ? h("div", { class: "stuck" }, p.stuck) : null, p.last_error ? h("div", { class: "mono" }, p.last_error) : null),
    ));
    const pager = h("div", { class: "pager" },
      h("span", { class: "muted", id: "total" }, `${data.processes.length} shown of ${data.total}`),
      h("button", { class: "ghost", disabled: state.cursors.length === 0, onclick: () => { state.cursor = state.cursors.pop() || ""; refresh(); } }, "‹ Newer"),
      h("button", { class: "ghost", disabled: !data.next_cursor, onclick: () => { state.cursors.push(state.cursor); state.cursor = data.next_cursor; refresh(); } }, "Older ›"),
    );
    body.replaceChildren(
      h("table", { id: "processes" },
        h("thead", {}, h("tr", {}, ["Process", "Definition", "Status", "Started", "Updated", "Needs attention"].map(x => h("th", {}, x)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No process matches."))),
      ),
      pager,
    );
  };
  return page;
}

// filterOf is a list state's filter as query parameters.
function filterOf(state) {
  const q = new URLSearchParams();
  for (const k of LIST_FILTERS) if (state[k]) q.set(k, state[k]);
  return q;
}

// listLink links to the process list with a filter.
function listLink(filter, text, attrs) {
  return h("a", Object.assign({ href: "#/processes?" + new URLSearchParams(filter) }, attrs || {}), text);
}

// ------------------------------------------------------------------ process

// Which actions a process's state allows (the server checks again).
function allowed(p, state) {
  const steps = (state && state.steps) || [];
  const has = st => steps.some(x => x.status === st);
  const live = !["completed", "compensated", "failed", "terminated"].includes(p.status);
  return {
    retry: (p.status === "paused" && has("failed")) || (["compensation_failed", "compensating"].includes(p.status) && has("compensation_failed")),
    skip: (p.status === "paused" && has("failed")) || (["running", "paused"].includes(p.status) && has("waiting")) || (p.status === "compensation_failed" && has("compensation_failed")),
    cancel: ["running", "paused"].includes(p.status),
    terminate: live,
    signal: live && has("waiting"),
  };
}

function stepChoices(action, p, state) {
  const steps = (state && state.steps) || [];
  if (action === "retry") return [["", "every failed step"]].concat(steps.filter(x => ["failed", "compensation_failed"].includes(x.status)).map(x => [x.id, `${x.id} (${x.status})`]));
  return steps.filter(x => ["failed", "waiting", "compensation_failed"].includes(x.status)).map(x => [x.id, `${x.id} (${x.status})`]);
}

const ACTION_TEXT = {
  retry: "Retries the failed step(s) with a fresh retry budget.",
  skip: "Marks the step skipped with the output below; the steps that need it go on.",
  cancel: "Stops new work and compensates every completed step.",
  terminate: "Stops the process at once, without compensation. This cannot be undone.",
  signal: "Delivers a signal; its data becomes the output of the step waiting for it.",
};

// confirmAction opens the confirmation dialog and sends the action.
function confirmAction(action, p, state, onDone) {
  const d = $("#confirm");
  $("#confirm-title").textContent = `${action[0].toUpperCase() + action.slice(1)} ${p.process_id}?`;
  $("#confirm-text").textContent = ACTION_TEXT[action];
  const choices = stepChoices(action, p, state);
  const sel = $("#confirm-step");
  sel.replaceChildren(...choices.map(([v, label]) => h("option", { value: v }, label)));
  $("#confirm-step-row").hidden = !(action === "retry" || action === "skip");
  $("#confirm-output-row").hidden = action !== "skip";
  $("#confirm-signal-row").hidden = action !== "signal";
  $("#confirm-data-row").hidden = action !== "signal";
  $("#confirm-reason").value = "";
  $("#confirm-error").hidden = true;
  $("#confirm-ok").className = action === "terminate" || action === "cancel" ? "danger" : "";
  const key = newKey(); // one key per confirmation: a resent click applies once
  const submit = async e => {
    e.preventDefault();
    if (e.submitter && e.submitter.value === "cancel") { d.close(); return; }
    let path = `/api/v1/processes/${encodeURIComponent(p.process_id)}/${action}`;
    const body = { reason: $("#confirm-reason").value.trim() || undefined };
    try {
      if (action === "retry" || action === "skip") body.step_id = sel.value || undefined;
      if (action === "skip") body.output = JSON.parse($("#confirm-output").value || "null");
      if (action === "signal") {
        path = `/api/v1/processes/${encodeURIComponent(p.process_id)}/signals`;
        delete body.reason;
        body.name = $("#confirm-signal").value.trim();
        body.data = JSON.parse($("#confirm-data").value || "null");
      }
    } catch (err) {
      $("#confirm-error").textContent = "Not valid JSON: " + err.message;
      $("#confirm-error").hidden = false;
      return;
    }
    try {
      await api("POST", path, body, key);
      d.close();
      toast(`${action} accepted for ${p.process_id}`);
      onDone();
    } catch (err) {
      $("#confirm-error").textContent = err.message;
      $("#confirm-error").hidden = false;
    }
  };
  $("#confirm-form").onsubmit = submit;
  d.showModal();
}

function processPage(id) {
  const page = {};
  page.render = async () => {
    let d;
    try {
      d = await api("GET", "/api/v1/processes/" + encodeURIComponent(id));
    } catch (e) {
      if (current !== page) return;
      if (e.status === 404) { view.replaceChildren(h("h1", {}, id), h("div", { class: "panel error", id: "page-error" }, e.message)); return; }
      throw e;
    }
    if (current !== page) return;
    if ($("#confirm").open) return; // do not redraw under an open dialog
    if (!changed(page, d)) return;
    const p = d.process;
    const can = allowed(p, d.state);
    const act = a => h("button", {
      "data-action": a, class: a === "terminate" || a === "cancel" ? "danger" : "", disabled: !can[a] || !mayAct(),
      title: !mayAct() ? READ_ONLY() : can[a] ? ACTION_TEXT[a] : `not applicable while the process is ${p.status}`,
      onclick: () => confirmAction(a, p, d.state, refresh),
    }, a[0].toUpperCase() + a.slice(1));
    view.replaceChildren(
      h("h1", {}, h("span", { class: "mono", id: "pid" }, p.process_id), h("span", { id: "status" }, badge(p.status)),
        h("div", { class: "actions" }, ["retry", "skip", "signal", "cancel", "terminate"].map(act))),
      h("div", { class: "panel" }, h("dl", { class: "meta" },
        h("dt", {}, "Definition"), h("dd", {}, h("a", { href: `#/d/${encodeURIComponent(p.definition)}?version=${p.version}` }, `${p.definition} v${p.version}`)),
        h("dt", {}, "Started"), h("dd", {}, p.started_at ? new Date(p.started_at).toISOString() : "–"),
        h("dt", {}, "Updated"), h("dd", {}, p.updated_at ? `${new Date(p.updated_at).toISOString()} (${ago(p.updated_at)})` : "–"),
        p.ended_at ? [h("dt", {}, "Ended"), h("dd", {}, new Date(p.ended_at).toISOString())] : null,
        p.stuck ? [h("dt", {}, "Needs attention"), h("dd", { class: "stuck" }, p.stuck)] : null,
        p.last_error ? [h("dt", {}, "Last error"), h("dd", { class: "mono error" }, p.last_error)] : null,
        d.state && d.state.admin ? [h("dt", {}, "Last action"), h("dd", {}, `${d.state.admin.type} ${d.state.admin.step_id || ""} by ${d.state.admin.actor || "?"}${d.state.admin.reason ? " — " + d.state.admin.reason : ""}`)] : null,
      )),
      h("h2", {}, "Steps"),
      h("div", { class: "panel", id: "graph" }, graph(d.definition, d.state || {})),
      h("h2", {}, "Attempts"),
      h("div", { class: "panel timeline", id: "timeline" }, timeline(d.state)),
      h("h2", {}, "Event stream"),
      h("div", { class: "panel" }, events(d.records, d.pending)),
    );
  };
  return page;
}

// timeline shows every attempt (and compensation attempt) of every step on
// one time axis.
function timeline(state) {
  if (!state || !state.steps) return h("p", { class: "muted" }, "No attempts yet.");
  const rows = [];
  let t0 = Infinity, t1 = 0;
  const now = Date.now();
  for (const st of state.steps) {
    const bars = [];
    const add = (runs, comp) => (runs || []).forEach((r, ri) => (r.attempts || []).forEach(a => {
      const s0 = new Date(a.sent_at).getTime();
      const e0 = a.ended_at ? new Date(a.ended_at).getTime() : now;
      t0 = Math.min(t0, s0); t1 = Math.max(t1, e0);
      bars.push({ s0, e0, a, comp, item: runs.length > 1 ? ri : null });
    }));
    add(st.runs, false);
    add(st.compensations, true);
    if (bars.length) rows.push({ id: st.id, bars });
  }
  if (!rows.length) return h("p", { class: "muted" }, "No attempts yet.");
  const span = Math.max(t1 - t0, 1);
  const out = rows.map(r => h("div", { class: "tl-row", "data-step": r.id },
    h("span", { class: "mono" }, r.id),
    h("div", { class: "tl-track" }, r.bars.map(b => {
      const outcome = b.a.outcome || "inflight";
      const err = b.a.error ? ` — ${b.a.error.type}: ${b.a.error.message || ""}` : "";
      return h("div", {
        class: `bar ${outcome}${b.comp ? " compensation" : ""}`, "data-outcome": outcome,
        style: `left: ${((b.s0 - t0) / span) * 100}%; width: ${Math.max(((b.e0 - b.s0) / span) * 100, 0.4)}%`,
        title: `${b.comp ? "compensation " : ""}attempt ${b.a.n}${b.item !== null ? " item " + b.item : ""}: ${outcome} (${clock(b.a.sent_at)} → ${clock(b.a.ended_at)})${err}`,
      }, `#${b.a.n}`);
    }))));
  const ms = t1 - t0;
  return [h("div", {}, out), h("div", { class: "tl-axis" }, h("span", {}, clock(new Date(t0).toISOString())), h("span", {}, ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s"), h("span", {}, clock(new Date(t1).toISOString()))),
    h("div", { class: "legend" }, ["completed", "failed", "timed_out", "abandoned", "inflight"].map(x => h("span", {}, h("i", { class: "bar " + x, style: "position: static; display: inline-block" }), x)), h("span", {}, "striped: compensation"))];
}

function detail(r) {
  if (r.kind === "decision") {
    const parts = ["→ " + (r.status || "")];
    if (r.commands && r.commands.length) parts.push("commands " + r.commands.join(", "));
    if (r.timers && r.timers.length) parts.push(r.timers.length + " timer(s)");
    for (const ig of r.ignored || []) parts.push(`ignored ${ig.type}: ${ig.detail}`);
    return parts.join("; ");
  }
  if (r.kind === "rejected") return r.error || "";
  const e = r.event || {};
  switch (e.type) {
    case "start": return `by ${e.actor || "?"} input ${JSON.stringify(e.input ?? null)}`;
    case "result": return e.error ? `${e.command_id} failed: ${e.error.type}: ${e.error.message || ""}` : `${e.command_id} completed ${JSON.stringify(e.output ?? null)}`;
    case "timer": return e.timer_id;
    case "signal": return `${e.signal} ${JSON.stringify(e.data ?? null)}`;
  }
  return `${e.step_id ? "step " + e.step_id + " " : ""}by ${e.actor || "?"}${e.reason ? " — " + e.reason : ""}${e.output ? " output " + JSON.stringify(e.output) : ""}`;
}

function events(records, pending) {
  const rows = (records || []).slice().reverse().map(r => h("tr", { "data-seq": r.seq, "data-kind": r.kind === "event" && r.event ? r.event.type : r.kind },
    h("td", { class: "mono" }, r.seq),
    h("td", { class: "mono" }, clock(r.at)),
    h("td", {}, r.kind === "event" && r.event ? r.event.type : r.kind),
    h("td", { class: "mono detail" }, detail(r))));
  return [
    pending && pending.length ? h("p", { class: "muted" }, `${pending.length} event(s) waiting for the next decision.`) : null,
    h("table", { id: "events" }, h("thead", {}, h("tr", {}, ["Seq", "At (UTC)", "Record", "Detail"].map(x => h("th", {}, x)))), h("tbody", {}, rows)),
  ];
}

// ------------------------------------------------------------------ dead letters

function dlqPage() {
  const page = { topic: "" };
  page.render = async () => {
    if ($("#confirm").open) return;
    const list = await api("GET", "/api/v1/dlq");
    if (current !== page) return;
    let m = null;
    if (page.topic) m = await api("GET", "/api/v1/dlq/" + encodeURIComponent(page.topic));
    if (current !== page || !changed(page, [list, page.topic, m])) return;
    const topics = h("table", { id: "dlq-topics" },
      h("thead", {}, h("tr", {}, ["Topic", "Pending"].map(x => h("th", {}, x)))),
      h("tbody", {}, list.topics.map(t => h("tr", { class: "row", "data-topic": t.topic, onclick: () => { page.topic = t.topic; refresh(); } },
        h("td", { class: "mono" }, t.topic), h("td", {}, t.count)))));
    if (!list.topics.length) topics.append(h("tbody", {}, h("tr", {}, h("td", { colspan: 2, class: "muted" }, "No dead-letter topic: nothing was ever dead-lettered."))));
    const parts = [h("h1", {}, "Dead letters"), h("div", { class: "panel" }, topics)];
    if (page.topic) {
      const act = (action, ids) => {
        const label = ids ? `${action} ${ids.length} message` : `${action} all ${m.count}`;
        if (!window.confirm(`${label} of ${page.topic}?`)) return;
        api("POST", `/api/v1/dlq/${encodeURIComponent(page.topic)}/${action}`, { ids }, newKey())
          .then(r => { toast(`${action}: ${r.done.length} done, ${r.remaining} left` + (r.skipped ? `; ${r.skipped.length} already handled` : "")); refresh(); })
          .catch(e => toast(e.message, true));
      };
      parts.push(h("h2", {}, page.topic, " ",
        h("button", { id: "replay-all", disabled: !m.count || !mayAct(), title: mayAct() ? null : READ_ONLY(), onclick: () => act("replay") }, "Replay all"), " ",
        h("button", { id: "purge-all", class: "danger", disabled: !m.count || !mayAct(), title: mayAct() ? null : READ_ONLY(), onclick: () => act("purge") }, "Purge all")),
      h("div", { class: "panel" }, h("table", { id: "dlq-messages" },
        h("thead", {}, h("tr", {}, ["Id", "Key", "Origin", "Dead-lettered", "Reason", "Payload", ""].map(x => h("th", {}, x)))),
        h("tbody", {}, m.messages.length ? m.messages.map(x => h("tr", { "data-id": x.id },
          h("td", { class: "mono" }, x.id), h("td", { class: "mono" }, x.key || "–"), h("td", { class: "mono" }, x.origin_topic || "–"),
          h("td", {}, ago(x.dead_lettered_at)), h("td", {}, x.reason), h("td", { class: "mono detail" }, h("pre", {}, JSON.stringify(x.payload))),
          h("td", {}, h("button", { class: "ghost replay", disabled: !mayAct(), title: mayAct() ? null : READ_ONLY(), onclick: () => act("replay", [x.id]) }, "Replay"), " ",
            h("button", { class: "ghost danger purge", disabled: !mayAct(), title: mayAct() ? null : READ_ONLY(), onclick: () => act("purge", [x.id]) }, "Purge")))) :
          h("tr", {}, h("td", { colspan: 7, class: "muted" }, "Nothing pending."))))));
    }
    view.replaceChildren(...parts);
  };
  return page;
}

// the pages of other files (schedules.js) load after this one; the role
// decides which buttons are enabled
window.addEventListener("DOMContentLoaded", () => whoami().then(route));
