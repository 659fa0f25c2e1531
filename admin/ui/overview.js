// pulsaga dashboard: the overview (#/?window=1h&definition=D): processes by
// status and by definition, starts and ends over the window, what is
// failing now, and the processes stuck longest. Every number links to the
// process list filtered on it. Uses h, s, api, ago, badge, changed,
// setParams, listLink and current from app.js.
"use strict";

const WINDOWS = ["15m", "1h", "6h", "24h"];

function overviewPage(params) {
  const page = {};
  const st = { window: WINDOWS.includes(params.get("window")) ? params.get("window") : "1h", definition: params.get("definition") || "" };
  const controls = h("form", { class: "filters panel", id: "overview-controls", autocomplete: "off" },
    h("label", {}, "Window", h("select", { id: "o-window" }, WINDOWS.map(w => h("option", { value: w }, "last " + w)))),
    h("label", {}, "Definition", h("select", { id: "o-definition" }, h("option", { value: "" }, "all"))));
  $("#o-window", controls).value = st.window;
  controls.addEventListener("change", () => {
    st.window = $("#o-window", controls).value;
    st.definition = $("#o-definition", controls).value;
    page.last = null;
    refresh();
  });
  const body = h("div", { id: "overview" });
  let mounted = false;
  let defsSeen = "";

  page.render = async () => {
    const q = new URLSearchParams({ window: st.window });
    if (st.definition) q.set("definition", st.definition);
    setParams("/", st.window === "1h" && !st.definition ? new URLSearchParams() : q);
    const [o, defs] = await Promise.all([api("GET", "/api/v1/overview?" + q), api("GET", "/api/v1/definitions")]);
    if (current !== page || !changed(page, [o, defs])) return;
    if (!mounted) { mount(h("h1", {}, "Overview"), controls, body); mounted = true; }
    const names = [...new Set(defs.definitions.map(d => d.name))].sort();
    if (names.join() !== defsSeen) {
      defsSeen = names.join();
      put($("#o-definition", controls), h("option", { value: "" }, "all"), names.map(n => h("option", { value: n }, n)));
    }
    $("#o-definition", controls).value = st.definition;
    const base = st.definition ? { definition: st.definition } : {};
    put(body,
      statusCards(o, base),
      h("h2", {}, `Started and ended, last ${o.window} (per ${shortDur(o.step)})`),
      h("div", { class: "panel", id: "throughput" }, throughputChart(o)),
      h("h2", {}, "By definition"),
      h("div", { class: "panel" }, definitionTable(o)),
      h("div", { class: "columns" },
        h("div", {},
          h("h2", {}, "Failing now ", h("span", { class: "muted" }, "(live processes by last error type)")),
          h("div", { class: "panel", id: "error-types" }, o.error_types && o.error_types.length ?
            h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Error type"), h("th", { class: "num" }, "Processes"))),
              h("tbody", {}, o.error_types.map(e => h("tr", { "data-error-type": e.type },
                h("td", { class: "mono" }, e.type), h("td", { class: "num" }, listLink(Object.assign({ error_type: e.type }, base), String(e.count))))))) :
            h("p", { class: "muted" }, "No live process has a failed step."))),
        h("div", {},
          h("h2", {}, `Stuck longest `, h("span", { class: "muted" }, `(${o.stuck} need an operator: paused, compensation failed, or no progress for ${shortDur(o.stuck_after)})`),
            o.stuck ? listLink(Object.assign({ stuck: "true" }, base), "all of them →", { class: "more" }) : null),
          h("div", { class: "panel", id: "oldest-stuck" }, stuckTable(o)))),
    );
  };
  return page;
}

function shortDur(d) {
  return String(d).replace(/(\d)h0m0s$/, "$1h").replace(/(\d)m0s$/, "$1m").replace(/^0s$/, "0s");
}

function statusCards(o, base) {
  const order = ["running", "paused", "compensating", "compensation_failed", "completed", "compensated", "failed", "terminated"];
  return h("div", { class: "cards", id: "status-cards" },
    h("a", { class: "card total", href: "#/processes?" + new URLSearchParams(base), "data-status": "all" },
      h("span", { class: "n" }, String(o.total)), h("span", { class: "label" }, "processes")),
    order.map(x => h("a", { class: "card " + x + (o.by_status[x] ? "" : " zero"), "data-status": x, href: "#/processes?" + new URLSearchParams(Object.assign({ status: x }, base)) },
      h("span", { class: "n" }, String(o.by_status[x] || 0)), h("span", { class: "label" }, x.replace("_", " ")))),
    h("a", { class: "card stuck" + (o.stuck ? "" : " zero"), "data-status": "stuck", href: "#/processes?" + new URLSearchParams(Object.assign({ stuck: "true" }, base)) },
      h("span", { class: "n" }, String(o.stuck)), h("span", { class: "label" }, "stuck")));
}

// throughputChart draws the buckets as bars (completed up, failed stacked
// above in red) with the starts as a line; it scales to any width.
function throughputChart(o) {
  const b = o.buckets || [];
  if (!b.length) return h("p", { class: "muted" }, "No data.");
  const W = 1000, H = 180, PL = 34, PB = 22, PT = 8;
  const top = Math.max(1, ...b.map(x => Math.max(x.started, x.completed + x.failed)));
  const y = v => PT + (H - PT - PB) * (1 - v / top);
  const bw = (W - PL) / b.length;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", class: "chart", role: "img", "aria-label": "processes started and ended over time" });
  for (const v of [0, Math.ceil(top / 2), top]) {
    svg.append(s("line", { x1: PL, x2: W, y1: y(v), y2: y(v), class: "grid" }));
  }
  const pts = [];
  b.forEach((x, i) => {
    const x0 = PL + i * bw + bw * 0.12, w = bw * 0.76;
    const title = `${new Date(x.start).toISOString().slice(11, 16)}: ${x.started} started, ${x.completed} completed, ${x.failed} failed`;
    const g = s("g", { class: "bucket", "data-started": x.started, "data-completed": x.completed, "data-failed": x.failed }, s("title", {}, title));
    if (x.completed) g.append(s("rect", { x: x0, width: w, y: y(x.completed), height: y(0) - y(x.completed), class: "completed" }));
    if (x.failed) g.append(s("rect", { x: x0, width: w, y: y(x.completed + x.failed), height: y(x.completed) - y(x.completed + x.failed), class: "failed" }));
    g.append(s("rect", { x: PL + i * bw, width: bw, y: PT, height: H - PT - PB, class: "hit" }));
    svg.append(g);
    pts.push(`${PL + i * bw + bw / 2},${y(x.started)}`);
  });
  svg.append(s("polyline", { points: pts.join(" "), class: "started" }));
  const totals = b.reduce((t, x) => ({ started: t.started + x.started, completed: t.completed + x.completed, failed: t.failed + x.failed }), { started: 0, completed: 0, failed: 0 });
  const clockOf = t => new Date(t).toISOString().slice(11, 16);
  return [
    h("div", { class: "chart-wrap" },
      h("div", { class: "chart-y" }, h("span", {}, String(top)), h("span", {}, String(Math.ceil(top / 2))), h("span", {}, "0")),
      svg),
    h("div", { class: "tl-axis chart-x" }, h("span", {}, clockOf(b[0].start) + " UTC"), h("span", {}, clockOf(b[b.length - 1].start) + " UTC")),
    h("div", { class: "legend", id: "throughput-totals" },
      h("span", {}, h("i", { class: "started-key" }), `${totals.started} started`),
      h("span", {}, h("i", { style: "background: var(--completed)" }), `${totals.completed} completed`),
      h("span", {}, h("i", { style: "background: var(--failed)" }), `${totals.failed} failed, compensated or terminated`)),
  ];
}

function definitionTable(o) {
  if (!o.by_definition.length) return h("p", { class: "muted" }, "No process yet.");
  const cols = ["running", "paused", "compensating", "compensation_failed", "completed", "compensated", "failed", "terminated"];
  const label = { compensation_failed: "comp. failed", compensating: "compensating" };
  return h("table", { id: "by-definition" },
    h("thead", {}, h("tr", {}, h("th", {}, "Definition"), h("th", { class: "num" }, "All"), cols.map(c => h("th", { class: "num" }, label[c] || c)), h("th", { class: "num" }, "stuck"))),
    h("tbody", {}, o.by_definition.map(d => h("tr", { "data-definition": d.definition },
      h("td", {}, h("a", { href: "#/d/" + encodeURIComponent(d.definition) }, d.definition)),
      h("td", { class: "num" }, listLink({ definition: d.definition }, String(d.total))),
      cols.map(c => h("td", { class: "num" }, d.by_status[c] ? listLink({ definition: d.definition, status: c }, String(d.by_status[c])) : h("span", { class: "muted" }, "0"))),
      h("td", { class: "num" }, d.stuck ? listLink({ definition: d.definition, stuck: "true" }, String(d.stuck), { class: "stuck" }) : h("span", { class: "muted" }, "0"))))));
}

function stuckTable(o) {
  if (!o.oldest_stuck.length) return h("p", { class: "muted" }, "Nothing is stuck.");
  return h("table", { id: "stuck" },
    h("thead", {}, h("tr", {}, ["Process", "Definition", "Status", "Since", "Why"].map(x => h("th", {}, x)))),
    h("tbody", {}, o.oldest_stuck.map(p => h("tr", { class: "row", "data-id": p.process_id, onclick: () => { location.hash = "#/p/" + encodeURIComponent(p.process_id); } },
      h("td", { class: "mono" }, h("a", { href: "#/p/" + encodeURIComponent(p.process_id) }, p.process_id)),
      h("td", {}, `${p.definition} v${p.version}`),
      h("td", {}, badge(p.status)),
      h("td", {}, ago(p.updated_at)),
      h("td", {}, h("div", { class: "stuck" }, p.stuck), p.last_error ? h("div", { class: "mono" }, p.last_error) : null)))));
}
