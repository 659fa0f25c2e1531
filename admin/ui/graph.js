// pulsaga dashboard: the step graph, drawn to fit the width it is given.
// Columns by depth in "needs" (left to right) when every column can get a
// readable node; otherwise rows by depth (top to bottom), wrapping a row
// that is wider than the space. Redrawn when its box changes width.
// Uses h and s from app.js.
"use strict";

const GRAPH_MIN_W = 118, GRAPH_MAX_W = 190, GRAPH_H = 44;

// graph returns the step graph of def, coloured by the step statuses of
// state (or by step kind without a state: the definition page), and its
// legend. onStep(id), when given, is called when a node is clicked;
// selected is the step drawn as selected.
function graph(def, state, onStep, selected) {
  if (!def || !def.steps) return h("p", { class: "muted" }, "Definition not available.");
  const box = h("div", { class: "graph-box" });
  let drawn = -1;
  const draw = () => {
    if (!box.isConnected) { ro.disconnect(); return; }
    const width = Math.floor(box.clientWidth);
    if (width <= 0 || width === drawn) return;
    drawn = width;
    box.replaceChildren(drawGraph(def, state, width, onStep, selected));
  };
  const ro = new ResizeObserver(draw);
  ro.observe(box);
  const statuses = ["pending", "running", "waiting", "completed", "skipped", "failed", "compensating", "compensated", "compensation_failed", "cancelled"];
  const kinds = ["task", "wait", "sleep", "until"];
  const legend = state === undefined || state === null
    ? h("div", { class: "legend" }, kinds.map(x => h("span", {}, h("i", { class: "kind-" + x }), x)), h("span", {}, "dashed: conditional (when)"), h("span", {}, "↺: compensated on failure"))
    : h("div", { class: "legend" }, statuses.map(x => h("span", {}, h("i", { style: `background: var(--${x})` }), x)));
  return [box, legend];
}

// graphLayout places the steps for a width: {dir, pos, W, width, height}.
function graphLayout(def, width) {
  const depth = {};
  const byId = Object.fromEntries(def.steps.map(x => [x.id, x]));
  const dep = (id, seen) => {
    if (depth[id] !== undefined) return depth[id];
    if (seen.has(id)) return 0; // a cycle cannot be registered; be safe
    seen.add(id);
    const needs = ((byId[id] && byId[id].needs) || []).filter(n => byId[n]);
    depth[id] = needs.length ? 1 + Math.max(...needs.map(n => dep(n, seen))) : 0;
    return depth[id];
  };
  def.steps.forEach(x => dep(x.id, new Set()));
  const levels = [];
  for (const x of def.steps) (levels[depth[x.id]] = levels[depth[x.id]] || []).push(x.id);
  const PAD = 8, GX = 40, GY = 18;
  const pos = {};
  const n = levels.length;
  let W = Math.floor((width - 2 * PAD - (n - 1) * GX) / n);
  if (W >= GRAPH_MIN_W) {
    // Left to right: one column per depth.
    W = Math.min(W, GRAPH_MAX_W);
    levels.forEach((ids, c) => ids.forEach((id, r) => { pos[id] = { x: PAD + c * (W + GX), y: PAD + r * (GRAPH_H + GY) }; }));
    const rows = Math.max(...levels.map(l => l.length));
    return { dir: "lr", pos, W, width: 2 * PAD + n * W + (n - 1) * GX, height: 2 * PAD + rows * (GRAPH_H + GY) - GY };
  }
  // Top to bottom: one row per depth, wrapped to the width.
  const gx = 12, gy = 26;
  const perLine = Math.max(1, Math.floor((width - 2 * PAD + gx) / (Math.min(GRAPH_MIN_W, width - 2 * PAD) + gx)));
  W = Math.max(40, Math.min(GRAPH_MAX_W, Math.floor((width - 2 * PAD - (perLine - 1) * gx) / perLine)));
  let y = PAD, widest = 0;
  for (const ids of levels) {
    for (let i = 0; i < ids.length; i += perLine) {
      const line = ids.slice(i, i + perLine);
      const lineW = line.length * W + (line.length - 1) * gx;
      const x0 = PAD + Math.max(0, Math.floor((width - 2 * PAD - lineW) / 2));
      line.forEach((id, k) => { pos[id] = { x: x0 + k * (W + gx), y }; });
      widest = Math.max(widest, x0 + lineW + PAD);
      y += GRAPH_H + gy;
    }
  }
  return { dir: "tb", pos, W, width: Math.min(width, Math.max(widest, 2 * PAD + W)), height: y - gy + PAD };
}

// fit cuts text to what a node of width w shows at px pixels per character.
function fit(text, w, px) {
  const n = Math.max(3, Math.floor((w - 18) / px));
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

function drawGraph(def, state, width, onStep, selected) {
  const status = {};
  const attempts = {};
  for (const st of (state && state.steps) || []) {
    status[st.id] = st.status;
    attempts[st.id] = (st.runs || []).reduce((n, r) => n + (r.attempts || []).length, 0);
  }
  const L = graphLayout(def, width);
  const W = L.W, H = GRAPH_H;
  const svg = s("svg", { width: L.width, height: L.height, viewBox: `0 0 ${L.width} ${L.height}`, role: "img", "aria-label": "step graph", "data-layout": L.dir });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
    s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#adb5bd" }))));
  for (const x of def.steps) {
    for (const need of x.needs || []) {
      const a = L.pos[need], b = L.pos[x.id];
      if (!a || !b) continue;
      let d;
      if (L.dir === "lr") {
        const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
        d = `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2 - 2} ${y2}`;
      } else {
        const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y, my = (y1 + y2) / 2;
        d = `M ${x1} ${y1} C ${x1} ${my}, ${x2} ${my}, ${x2} ${y2 - 2}`;
      }
      svg.append(s("path", { class: "edge", d, "marker-end": "url(#arrow)" }));
    }
  }
  const withState = state !== undefined && state !== null;
  for (const x of def.steps) {
    const p = L.pos[x.id];
    const st = withState ? status[x.id] || "pending" : "def";
    let sub = x.kind === "task" ? `${x.service}.${x.command}` : x.kind === "wait" && x.signal ? `wait ${x.signal}` : x.kind === "sleep" && x.sleep ? `sleep ${x.sleep}` : x.kind;
    if (x.for_each) sub = "for each · " + sub;
    const n = attempts[x.id] ? ` · ${attempts[x.id]} att.` : "";
    const fill = withState ? `var(--${st})` : `var(--kind-${x.kind}, var(--kind-task))`;
    const tip = withState ? `${x.id}: ${st}${n}` : `${x.id} (${x.kind})${x.service ? ` ${x.service}.${x.command}` : ""}${x.compensate ? `, compensated by ${x.compensate_command || "a command"}` : ""}${x.max_attempts ? `, up to ${x.max_attempts} attempts` : ""}${x.timeout ? ` of ${x.timeout}` : ""}`;
    const g = s("g", { class: `node ${st}${x.id === selected ? " selected" : ""}`, "data-step": x.id, "data-status": st, transform: `translate(${p.x},${p.y})` },
      s("title", {}, tip),
      s("rect", { width: W, height: H, fill, stroke: "rgba(0,0,0,.15)", "stroke-dasharray": st === "skipped" || x.conditional ? "4 3" : "" }),
      s("text", { x: 10, y: 18 }, fit(x.id + (x.compensate ? " ↺" : ""), W, 7.2)),
      s("text", { x: 10, y: 34, class: "sub" }, fit(sub + n, W, 6.2)));
    if (onStep) {
      g.style.cursor = "pointer";
      g.addEventListener("click", () => onStep(x.id));
    }
    svg.append(g);
  }
  return svg;
}
