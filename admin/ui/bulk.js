// pulsaga dashboard: bulk actions. openBulk(filter) is the list page's
// "Bulk action…" dialog: pick an action, count what the filter selects (a
// dry run with a sample), confirm with that count; the job then runs on
// the server (#/bulk/<job> follows it, #/bulk lists the jobs). Uses h, api,
// newKey, toast, ago, badge, changed, current and refresh from app.js.
"use strict";

const BULK_ACTIONS = {
  retry: "Retries the failed step (or every failed step) of each process with a fresh retry budget.",
  skip: "Marks the step skipped in each process with the output below; the steps that need it go on.",
  cancel: "Stops new work in each process and compensates every completed step.",
  terminate: "Stops each process at once, without compensation. This cannot be undone.",
  signal: "Delivers the signal to each process; its data becomes the output of the step waiting for it.",
};

// bulkFilter turns list parameters into a bulk request's filter.
function bulkFilter(params) {
  const f = {};
  for (const [k, v] of params) {
    if (!v) continue;
    if (k === "status") f.status = v.split(",");
    else if (k === "stuck") f.stuck = v === "true";
    else if (k === "version") f.version = parseInt(v, 10);
    else f[k] = v;
  }
  return f;
}

function describeFilter(f) {
  const parts = Object.entries(f).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : v}`);
  return parts.length ? parts.join(" · ") : "no filter";
}

let bulkDialog = null;

function openBulk(params) {
  const filter = bulkFilter(params);
  if (bulkDialog) bulkDialog.remove();
  const d = bulkDialog = h("dialog", { id: "bulk-dialog", class: "wide" });
  const field = (label, input, id) => h("label", { id }, label, input);
  const form = h("form", { method: "dialog", id: "bulk-form" },
    h("h2", {}, "Bulk action"),
    h("p", {}, "On every process of: ", h("span", { class: "mono", id: "bulk-filter" }, describeFilter(filter))),
    field("Action", h("select", { id: "bulk-action" }, Object.keys(BULK_ACTIONS).map(a => h("option", { value: a }, a)))),
    h("p", { class: "muted", id: "bulk-help" }),
    field("Step", h("input", { id: "bulk-step", placeholder: "retry: empty for every failed step", autocomplete: "off" }), "bulk-step-row"),
    field("Output (JSON)", h("textarea", { id: "bulk-output", rows: 2 }, "null"), "bulk-output-row"),
    field("Signal name", h("input", { id: "bulk-signal", autocomplete: "off" }), "bulk-signal-row"),
    field("Data (JSON)", h("textarea", { id: "bulk-data", rows: 2 }, "{}"), "bulk-data-row"),
    field("Reason (recorded on every process with your name)", h("input", { id: "bulk-reason", autocomplete: "off", required: true })),
    field("Rate (actions per second)", h("input", { id: "bulk-rate", type: "number", min: "0.1", max: "1000", step: "any", value: "20" })),
    h("div", { id: "bulk-preview", class: "preview", hidden: true }),
    h("p", { class: "error", id: "bulk-error", hidden: true }),
    h("menu", {},
      h("button", { value: "cancel", class: "ghost", id: "bulk-close", formnovalidate: true }, "Close"),
      h("button", { type: "button", class: "ghost", id: "bulk-count" }, "Count"),
      h("button", { type: "submit", id: "bulk-start", disabled: true }, "Start")));
  d.append(form);
  document.body.append(d);
  const $f = sel => form.querySelector(sel);
  let counted = null; // the request the preview was made for
  const request = () => {
    const action = $f("#bulk-action").value;
    const req = { action, filter, reason: $f("#bulk-reason").value.trim() || undefined };
    const rate = parseFloat($f("#bulk-rate").value);
    if (rate > 0) req.rate = rate;
    if (action === "retry" || action === "skip") req.step_id = $f("#bulk-step").value.trim() || undefined;
    if (action === "skip") req.output = JSON.parse($f("#bulk-output").value || "null");
    if (action === "signal") {
      req.signal = $f("#bulk-signal").value.trim();
      req.data = JSON.parse($f("#bulk-data").value || "null");
    }
    return req;
  };
  const error = msg => { $f("#bulk-error").textContent = msg; $f("#bulk-error").hidden = !msg; };
  const sync = () => {
    const a = $f("#bulk-action").value;
    $f("#bulk-help").textContent = BULK_ACTIONS[a];
    $f("#bulk-step-row").hidden = !(a === "retry" || a === "skip");
    $f("#bulk-output-row").hidden = a !== "skip";
    $f("#bulk-signal-row").hidden = a !== "signal";
    $f("#bulk-data-row").hidden = a !== "signal";
    counted = null;
    $f("#bulk-preview").hidden = true;
    $f("#bulk-start").disabled = true;
    $f("#bulk-start").textContent = "Start";
    $f("#bulk-start").className = a === "terminate" || a === "cancel" ? "danger" : "";
    error("");
  };
  form.addEventListener("change", e => { if (e.target.id !== "bulk-reason" && e.target.id !== "bulk-rate") sync(); });
  form.addEventListener("input", e => { if (e.target.id !== "bulk-reason" && e.target.id !== "bulk-rate" && e.target.tagName !== "SELECT") sync(); });
  $f("#bulk-count").addEventListener("click", async () => {
    let req;
    try { req = request(); } catch (err) { error("Not valid JSON: " + err.message); return; }
    try {
      const pv = await api("POST", "/api/v1/bulk", Object.assign({}, req, { dry_run: true }));
      counted = JSON.stringify(Object.assign({}, req, { reason: undefined, rate: undefined }));
      const p = $f("#bulk-preview");
      p.hidden = false;
      put(p,
        h("p", { id: "bulk-counts", "data-matched": pv.matched, "data-applicable": pv.applicable },
          h("strong", {}, `${pv.matched} process(es) match; ${req.action} applies to ${pv.applicable} of them now.`),
          pv.too_many ? " That is more than one job takes: narrow the filter." : ""),
        pv.sample.length ? h("ul", { class: "sample" }, pv.sample.map(s => h("li", {}, h("span", { class: "mono" }, s.process_id), " ", badge(s.status), " ", h("span", { class: "muted" }, s.last_error || s.stuck || ""))),
          pv.applicable > pv.sample.length ? h("li", { class: "muted" }, `… and ${pv.applicable - pv.sample.length} more`) : null) : null,
        pv.not_applicable && pv.not_applicable.length ? h("details", {}, h("summary", {}, `${pv.matched - pv.applicable} not applicable`),
          h("ul", {}, pv.not_applicable.map(x => h("li", {}, h("span", { class: "mono" }, x.process_id), ": ", x.error)))) : null);
      const b = $f("#bulk-start");
      b.disabled = !pv.applicable || pv.too_many;
      b.textContent = `${req.action[0].toUpperCase() + req.action.slice(1)} ${pv.applicable} process${pv.applicable === 1 ? "" : "es"}`;
      error("");
    } catch (err) { error(err.message); }
  });
  const key = newKey(); // one job per confirmation, however often it is clicked
  form.addEventListener("submit", async e => {
    e.preventDefault();
    if (e.submitter && e.submitter.value === "cancel") { d.close(); return; }
    let req;
    try { req = request(); } catch (err) { error("Not valid JSON: " + err.message); return; }
    if (counted !== JSON.stringify(Object.assign({}, req, { reason: undefined, rate: undefined }))) { error("Count again: the action changed."); return; }
    if (!req.reason) { error("Give a reason: it is recorded on every process."); return; }
    try {
      const job = await api("POST", "/api/v1/bulk", req, key);
      d.close();
      toast(`${job.id}: ${job.action} of ${job.total} process(es) queued`);
      location.hash = "#/bulk/" + encodeURIComponent(job.id);
    } catch (err) { error(err.message); }
  });
  d.addEventListener("close", () => { d.remove(); if (bulkDialog === d) bulkDialog = null; });
  sync();
  d.showModal();
}

// progress draws a job's bar: done, failed, skipped, remaining.
function progress(j, big) {
  const pct = n => (j.total ? (100 * n) / j.total : 0) + "%";
  return h("div", { class: "progress" + (big ? " big" : ""), title: `${j.done} done, ${j.failed} failed, ${j.skipped} skipped, ${j.remaining} remaining of ${j.total}` },
    h("i", { class: "done", style: `width: ${pct(j.done)}` }), h("i", { class: "failed", style: `width: ${pct(j.failed)}` }),
    h("i", { class: "skipped", style: `width: ${pct(j.skipped)}` }));
}

function jobBadge(j) { return h("span", { class: "badge job " + j.state, "data-state": j.state }, j.state); }

function bulkJobsPage() {
  const page = {};
  page.render = async () => {
    const list = await api("GET", "/api/v1/bulk");
    if (current !== page || !changed(page, list)) return;
    mount(h("h1", {}, "Bulk jobs"),
      h("p", { class: "muted" }, "Start one from the process list: filter, then “Bulk action…”."),
      h("div", { class: "panel" }, h("table", { id: "bulk-jobs" },
        h("thead", {}, h("tr", {}, ["Job", "Action", "State", "Progress", "", "By", "Reason", "Created"].map(x => h("th", {}, x)))),
        h("tbody", {}, list.jobs.length ? list.jobs.map(j => h("tr", { class: "row", "data-job": j.id, onclick: () => { location.hash = "#/bulk/" + encodeURIComponent(j.id); } },
          h("td", { class: "mono" }, h("a", { href: "#/bulk/" + encodeURIComponent(j.id) }, j.id)),
          h("td", {}, j.action + (j.step_id ? " " + j.step_id : "") + (j.signal ? " " + j.signal : "")),
          h("td", {}, jobBadge(j)),
          h("td", { class: "progress-cell" }, progress(j)),
          h("td", { class: "muted" }, `${j.done + j.failed + j.skipped}/${j.total}`),
          h("td", {}, j.actor), h("td", {}, j.reason), h("td", {}, ago(j.created_at)))) :
          h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No bulk job yet."))))));
  };
  return page;
}

function bulkJobPage(id) {
  const page = {};
  page.render = async () => {
    let j;
    try {
      j = await api("GET", "/api/v1/bulk/" + encodeURIComponent(id));
    } catch (e) {
      if (current === page && e.status === 404) { mount(h("h1", {}, id), h("div", { class: "panel error", id: "page-error" }, e.message)); return; }
      throw e;
    }
    if (current !== page || !changed(page, j)) return;
    const handled = j.done + j.failed + j.skipped;
    const elapsed = j.started_at ? ((j.finished_at ? new Date(j.finished_at) : Date.now()) - new Date(j.started_at)) / 1000 : 0;
    const eta = !j.finished_at && j.rate ? Math.ceil(j.remaining / j.rate) : 0;
    const stop = h("button", { class: "danger", id: "bulk-stop", disabled: ["completed", "cancelled"].includes(j.state) || !mayAct(), "data-needs-role": "operator",
      onclick: () => {
        const reason = window.prompt(`Stop ${j.id}? The processes acted on stay so; the ${j.remaining} others are left alone. Reason:`, "");
        if (reason === null) return;
        api("POST", `/api/v1/bulk/${encodeURIComponent(j.id)}/cancel`, { reason: reason || undefined }, newKey())
          .then(() => { toast(`stop of ${j.id} requested`); refresh(); }).catch(err => toast(err.message, true));
      } }, "Stop");
    const f = new URLSearchParams();
    for (const [k, v] of Object.entries(j.filter || {})) {
      if (k === "process_ids") continue;
      f.set(k, Array.isArray(v) ? v.join(",") : String(v));
    }
    mount(
      h("h1", {}, h("span", { class: "mono", id: "job-id" }, j.id), h("span", { id: "job-state" }, jobBadge(j)), h("div", { class: "actions" }, stop)),
      h("div", { class: "panel", id: "job-progress" },
        progress(j, true),
        h("p", { id: "job-counts", "data-done": j.done, "data-failed": j.failed, "data-skipped": j.skipped, "data-remaining": j.remaining, "data-total": j.total },
          h("strong", {}, `${handled} of ${j.total}`), ` · ${j.done} done · ${j.failed} failed · ${j.skipped} skipped · ${j.remaining} remaining · ${j.rate}/s`,
          eta ? ` · about ${eta < 90 ? eta + " s" : Math.ceil(eta / 60) + " min"} left` : "",
          elapsed ? ` · ${elapsed.toFixed(1)} s ${j.finished_at ? "in all" : "so far"}` : ""),
        h("div", { class: "legend" }, ["done", "failed", "skipped"].map(x => h("span", {}, h("i", { class: "key-" + x }), x)), h("span", {}, h("i", { class: "key-remaining" }), "remaining"))),
      h("div", { class: "panel" }, h("dl", { class: "meta" },
        h("dt", {}, "Action"), h("dd", {}, j.action + (j.step_id ? ` step ${j.step_id}` : "") + (j.signal ? ` signal ${j.signal}` : "")),
        h("dt", {}, "Selected by"), h("dd", {}, h("a", { href: "#/processes?" + f }, describeFilter(j.filter || {})), ` (${j.total} processes when queued)`),
        h("dt", {}, "By"), h("dd", {}, `${j.actor}: ${j.reason}`),
        h("dt", {}, "Created"), h("dd", {}, new Date(j.created_at).toISOString()),
        j.started_at ? [h("dt", {}, "Started"), h("dd", {}, new Date(j.started_at).toISOString())] : null,
        j.finished_at ? [h("dt", {}, "Ended"), h("dd", {}, new Date(j.finished_at).toISOString())] : null,
        j.cancelled_by ? [h("dt", {}, "Stopped by"), h("dd", {}, `${j.cancelled_by}${j.cancel_reason ? ": " + j.cancel_reason : ""}`)] : null,
        j.runner ? [h("dt", {}, "Runner"), h("dd", { class: "mono" }, j.runner)] : null)),
      h("h2", {}, "Problems ", h("span", { class: "muted" }, "(processes failed or skipped: the latest 50)")),
      h("div", { class: "panel" }, j.problems && j.problems.length ? h("table", { id: "job-problems" },
        h("thead", {}, h("tr", {}, ["Process", "Why", "At"].map(x => h("th", {}, x)))),
        h("tbody", {}, j.problems.slice().reverse().map(p => h("tr", {},
          h("td", { class: "mono" }, h("a", { href: "#/p/" + encodeURIComponent(p.process_id) }, p.process_id)),
          h("td", {}, p.error), h("td", {}, ago(p.at)))))) : h("p", { class: "muted" }, "None.")),
      j.sample && j.sample.length ? [h("h2", {}, "First processes"), h("div", { class: "panel mono", id: "job-sample" },
        j.sample.flatMap((pid, i) => [i ? ", " : "", h("a", { href: "#/p/" + encodeURIComponent(pid) }, pid)]))] : null,
    );
  };
  return page;
}
