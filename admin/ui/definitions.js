// pulsaga dashboard: the definitions (#/definitions) and one definition
// (#/d/<name>?version=N): its versions with their processes, the step graph
// and the YAML it was registered from; clicking a step shows its lines.
// Uses h, api, ago, changed, setParams, listLink, graph and current from
// app.js and graph.js.
"use strict";

function definitionsPage() {
  const page = {};
  page.render = async () => {
    const [defs, o] = await Promise.all([api("GET", "/api/v1/definitions"), api("GET", "/api/v1/overview?window=24h")]);
    if (current !== page || !changed(page, [defs, o])) return;
    const byName = new Map();
    for (const d of defs.definitions) {
      const e = byName.get(d.name) || { name: d.name, versions: [] };
      e.versions.push(d);
      byName.set(d.name, e);
    }
    const counts = Object.fromEntries(o.by_definition.map(d => [d.definition, d]));
    const rows = [...byName.values()].sort((a, b) => a.name.localeCompare(b.name)).map(e => {
      const latest = e.versions.reduce((a, b) => (b.version > a.version ? b : a));
      const c = counts[e.name];
      const live = c ? (c.by_status.running || 0) + (c.by_status.paused || 0) + (c.by_status.compensating || 0) + (c.by_status.compensation_failed || 0) : 0;
      return h("tr", { class: "row", "data-definition": e.name, onclick: () => { location.hash = "#/d/" + encodeURIComponent(e.name); } },
        h("td", {}, h("a", { href: "#/d/" + encodeURIComponent(e.name) }, e.name)),
        h("td", {}, `v${latest.version}` + (e.versions.length > 1 ? ` (${e.versions.length} versions)` : "")),
        h("td", { class: "mono" }, latest.file || "–"),
        h("td", {}, ago(latest.registered_at)),
        h("td", { class: "num" }, c ? listLink({ definition: e.name }, String(c.total)) : "0"),
        h("td", { class: "num" }, live),
        h("td", { class: "num" }, c && c.stuck ? listLink({ definition: e.name, stuck: "true" }, String(c.stuck), { class: "stuck" }) : "0"));
    });
    mount(h("h1", {}, "Definitions"),
      h("div", { class: "panel" }, h("table", { id: "definitions" },
        h("thead", {}, h("tr", {}, ["Name", "Latest", "File", "Registered", "Processes", "Live", "Stuck"].map(x => h("th", {}, x)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No definition registered: pulsaga register FILE.yaml"))))));
  };
  return page;
}

function definitionPage(name, params) {
  const page = {};
  let version = parseInt(params.get("version") || "0", 10) || 0;
  let selected = params.get("step") || "";
  page.render = async () => {
    const d = await api("GET", `/api/v1/definitions/${encodeURIComponent(name)}` + (version ? `?version=${version}` : ""));
    if (current !== page || !changed(page, [d, selected])) return;
    const q = new URLSearchParams();
    if (version) q.set("version", version);
    if (selected) q.set("step", selected);
    setParams("/d/" + encodeURIComponent(name), q);
    const step = d.steps.find(x => x.id === selected);
    const lines = (d.source || "").split("\n");
    const [from, to] = step ? stepLines(d.steps, step, lines) : [0, -1];
    const src = h("pre", { class: "yaml", id: "yaml" }, lines.map((l, i) => h("span", {
      class: "line" + (i + 1 >= from && i + 1 <= to ? " hl" : ""), "data-line": i + 1,
    }, h("span", { class: "ln" }, String(i + 1)), l + "\n")));
    const pick = id => { selected = selected === id ? "" : id; page.last = null; refresh(); };
    const versions = h("div", { class: "versions", id: "versions" }, (d.versions || []).map(v => h("a", {
      class: "version" + (v.version === d.version ? " active" : ""), "data-version": v.version,
      href: `#/d/${encodeURIComponent(name)}?version=${v.version}`,
      onclick: e => { e.preventDefault(); version = v.version; selected = ""; page.last = null; refresh(); },
      title: `registered ${v.registered_at ? new Date(v.registered_at).toISOString() : "?"} from ${v.file || "?"}`,
    }, `v${v.version}`, h("span", { class: "muted" }, ` ${v.live} live / ${v.processes}`))));
    mount(
      h("h1", {}, h("span", { id: "def-name" }, d.name), h("span", { class: "badge def" }, "v" + d.version),
        h("div", { class: "actions" }, listLink({ definition: d.name }, "Processes →"))),
      d.description ? h("p", { class: "muted", id: "def-description" }, d.description) : null,
      h("div", { class: "panel" }, h("dl", { class: "meta" },
        h("dt", {}, "Versions"), h("dd", {}, versions),
        h("dt", {}, "File"), h("dd", { class: "mono" }, d.file || "–"),
        h("dt", {}, "Registered"), h("dd", {}, d.registered_at ? `${new Date(d.registered_at).toISOString()} (${ago(d.registered_at)})` : "–"),
        h("dt", {}, "Steps"), h("dd", {}, String(d.steps.length)))),
      h("h2", {}, "Step graph ", h("span", { class: "muted" }, "(click a step to see its YAML)")),
      h("div", { class: "panel", id: "graph" }, graph(d, null, pick, selected)),
      step ? h("div", { class: "panel", id: "step-detail", "data-step": step.id }, h("dl", { class: "meta" },
        h("dt", {}, "Step"), h("dd", { class: "mono" }, step.id),
        h("dt", {}, "Kind"), h("dd", {}, step.kind + (step.for_each ? " (for each)" : "") + (step.conditional ? " (conditional)" : "")),
        step.service ? [h("dt", {}, "Command"), h("dd", { class: "mono" }, `${step.service}.${step.command}`)] : null,
        step.needs && step.needs.length ? [h("dt", {}, "Needs"), h("dd", { class: "mono" }, step.needs.join(", "))] : null,
        step.compensate ? [h("dt", {}, "Compensation"), h("dd", { class: "mono" }, step.compensate_command || "yes")] : null,
        step.max_attempts ? [h("dt", {}, "Retry"), h("dd", {}, `up to ${step.max_attempts} attempts` + (step.timeout ? `, ${step.timeout} each` : ""))] : null,
        step.signal ? [h("dt", {}, "Waits for"), h("dd", { class: "mono" }, step.signal)] : null,
        step.on_failure ? [h("dt", {}, "On failure"), h("dd", {}, step.on_failure)] : null,
        h("dt", {}, "Processes"), h("dd", {}, listLink({ definition: d.name, step: step.id, step_status: "failed" }, "failed at this step"), " · ",
          listLink({ definition: d.name, step: step.id, step_status: "waiting" }, "waiting here"), " · ",
          listLink({ definition: d.name, step: step.id, step_status: "running" }, "running it")))) : null,
      h("h2", {}, "Source"),
      h("div", { class: "panel" }, d.source ? src : h("p", { class: "muted" }, "No source kept for this version.")),
    );
    if (step) {
      const first = src.querySelector(".hl");
      if (first) first.scrollIntoView({ block: "nearest" });
    }
  };
  return page;
}

// stepLines is the YAML lines [from, to] of a step: from its line to the
// line before the next step's, a top-level key, or the end.
function stepLines(steps, step, lines) {
  const starts = steps.map(x => x.line).filter(n => n > 0).sort((a, b) => a - b);
  const from = step.line || 0;
  let to = (starts.find(n => n > from) || lines.length + 1) - 1;
  for (let i = from; i < to; i++) if (/^\S/.test(lines[i])) { to = i; break; }
  while (to > from && !lines[to - 1].trim()) to--;
  return [from, to];
}
