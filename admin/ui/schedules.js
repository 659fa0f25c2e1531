// pulsaga dashboard: the schedules page (#/schedules): schedules with their
// next tick and counters, pause / resume / delete, a form to create one, and
// the triggers of the registered definitions. Uses h, api, toast, ago,
// changed, refresh and current from app.js.
"use strict";

// inTime says how far a future time is: "in 5m".
function inTime(t) {
  const d = (new Date(t).getTime() - Date.now()) / 1000;
  if (d < 60) return "in " + Math.max(0, Math.round(d)) + "s";
  if (d < 3600) return "in " + Math.round(d / 60) + "m";
  if (d < 172800) return "in " + Math.round(d / 3600) + "h";
  return "in " + Math.round(d / 86400) + "d";
}

function schedulesPage() {
  const page = {};
  const field = (label, input) => h("label", {}, label, " ", input);
  const form = h("form", { class: "panel filters", id: "schedule-form", autocomplete: "off" },
    field("Name", h("input", { name: "name", required: true, placeholder: "nightly" })),
    field("Definition", h("select", { name: "definition", required: true })),
    field("Cron", h("input", { name: "cron", placeholder: "0 2 * * *" })),
    field("or every", h("input", { name: "every", placeholder: "15m" })),
    field("Timezone", h("input", { name: "timezone", placeholder: "UTC" })),
    field("Overlap", h("select", { name: "overlap" }, ["skip", "allow", "cancel_previous", "terminate_previous"].map(x => h("option", {}, x)))),
    field("Catch up", h("select", { name: "catch_up" }, ["latest", "all", "none"].map(x => h("option", {}, x)))),
    field("Input (JSON)", h("input", { name: "input", placeholder: '{"day": "${{ schedule.time }}"}' })),
    h("button", { id: "schedule-create" }, "Create"));
  form.addEventListener("submit", e => {
    e.preventDefault();
    const f = new FormData(form);
    const spec = { name: f.get("name").trim(), definition: f.get("definition"), overlap: f.get("overlap"), catch_up: f.get("catch_up") };
    for (const k of ["cron", "every", "timezone"]) if (f.get(k).trim()) spec[k] = f.get(k).trim();
    if (f.get("input").trim()) {
      try { spec.input = JSON.parse(f.get("input")); } catch (err) { toast("input is not JSON: " + err.message, true); return; }
    }
    api("POST", "/api/v1/schedules", spec, newKey())
      .then(r => { toast(r.applied ? `schedule ${spec.name} created` : "sent; no scheduler has applied it yet"); form.reset(); page.last = null; refresh(); })
      .catch(err => toast(err.message, true));
  });
  const act = (name, op) => {
    if (op === "delete" && !window.confirm(`Delete schedule ${name}? The processes it started go on.`)) return;
    const method = op === "delete" ? "DELETE" : "POST";
    const path = "/api/v1/schedules/" + encodeURIComponent(name) + (op === "delete" ? "" : "/" + op);
    api(method, path, undefined, newKey())
      .then(r => { toast(r.applied ? `schedule ${name}: ${op} done` : "sent; no scheduler has applied it yet"); refresh(); })
      .catch(err => toast(err.message, true));
  };
  const when = s => s.every ? "every " + s.every : s.cron + (s.timezone ? ` (${s.timezone})` : "");
  const procLink = pid => pid ? h("a", { href: "#/p/" + encodeURIComponent(pid), class: "mono" }, pid) : "–";
  page.render = async () => {
    const [list, defs, trs] = await Promise.all([api("GET", "/api/v1/schedules"), api("GET", "/api/v1/definitions"), api("GET", "/api/v1/triggers")]);
    if (current !== page || !changed(page, [list, defs, trs])) return;
    const sel = form.querySelector('[name="definition"]');
    const names = [...new Set(defs.definitions.map(d => d.name))];
    if (sel.options.length !== names.length) sel.replaceChildren(...names.map(n => h("option", {}, n)));
    const rows = list.schedules.map(r => {
      const paused = r.spec.paused;
      return h("tr", { "data-schedule": r.spec.name },
        h("td", { class: "mono" }, r.spec.name), h("td", {}, r.spec.definition + (r.spec.version ? " v" + r.spec.version : "")),
        h("td", { class: "mono" }, when(r.spec)), h("td", {}, r.spec.overlap), h("td", {}, r.spec.catch_up),
        h("td", {}, h("span", { class: "badge " + (paused ? "paused" : "running"), "data-status": paused ? "paused" : "active" }, paused ? "paused" : "active")),
        h("td", { title: r.state.armed_at || "" }, paused || !r.state.armed_at ? "–" : inTime(r.state.armed_at) + " (" + new Date(r.state.armed_at).toISOString().slice(0, 16).replace("T", " ") + " UTC)"),
        h("td", {}, procLink(r.state.last_process_id)), h("td", {}, r.state.started), h("td", { title: r.state.last_skip || "" }, r.state.skipped),
        h("td", {},
          h("button", { class: "ghost " + (paused ? "resume" : "pause"), onclick: () => act(r.spec.name, paused ? "resume" : "pause") }, paused ? "Resume" : "Pause"), " ",
          h("button", { class: "ghost danger delete", onclick: () => act(r.spec.name, "delete") }, "Delete")));
    });
    const table = h("table", { id: "schedules" },
      h("thead", {}, h("tr", {}, ["Name", "Definition", "When", "Overlap", "Catch up", "State", "Next tick", "Last run", "Started", "Skipped", ""].map(x => h("th", {}, x)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 11, class: "muted" }, "No schedule yet: create one below."))));
    const triggers = h("table", { id: "triggers" },
      h("thead", {}, h("tr", {}, ["Definition", "Trigger", "Topic", "Subscription", "Dead letters", "Started", "Ignored", "Dead-lettered"].map(x => h("th", {}, x)))),
      h("tbody", {}, trs.triggers.length ? trs.triggers.map(t => h("tr", { "data-trigger": t.definition + "/" + t.id },
        h("td", {}, `${t.definition} v${t.version}`), h("td", { class: "mono" }, t.id), h("td", { class: "mono" }, t.topic),
        h("td", { class: "mono" }, t.subscription), h("td", { class: "mono" }, t.dead_letter_topic),
        h("td", {}, t.started), h("td", {}, t.ignored), h("td", { title: t.last_error || "" }, t.dead_lettered))) :
        h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No definition declares a trigger (see docs/language.md#triggers)."))));
    view.replaceChildren(h("h1", {}, "Schedules"), h("div", { class: "panel" }, table), h("h2", {}, "New schedule"), form,
      h("h2", {}, "Triggers"), h("div", { class: "panel" }, triggers));
  };
  return page;
}
