// The workflow drawn as SVG from its definition, and coloured by an execution's state.
// Top-level nodes are placed by layout.js; parallel branches, sequential steps and a
// map's per-item node are drawn inside their parent. `update()` recolours in place,
// so live events never rebuild the drawing.

import { clear, s } from "./dom.js";
import { ITEM, itemPaths, kindLine } from "./definition.js";
import { childCounts, nodeState } from "./fold.js";
import { clock, duration, STATUS_LABELS } from "./format.js";
import { layout } from "./layout.js";

const LEAF_H = 60;
const HEADER_H = 60;
const PAD = 10;
const CHILD_GAP = 12;
const STEP_GAP = 22;
const CELL = 11;
const CELL_GAP = 3;
const CELLS_PER_ROW = 16;
const MAX_CELLS = 64; // beyond this a map shows a proportion bar instead of one cell per item
const CHAR_W = 7.1;
const LABEL_CHAR_W = 6.3;
const MAX_LABEL = 34;

const fit = (text, max) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);
const textWidth = (text, charW = CHAR_W) => text.length * charW;

function leafWidth(node) {
  const kind = fit(kindLine(node), 34);
  return Math.min(240, Math.max(176, textWidth(node.name) + 36, textWidth(kind, 6.2) + 28));
}

/** Sizes every node of the tree (children first); stores {w, h} on a Map keyed by path. */
function measure(node, sizes) {
  let size;
  const kids = node.children.map((c) => measure(c, sizes));
  const own = leafWidth(node);
  if (node.type === "parallel" && kids.length) {
    const w = kids.reduce((sum, k) => sum + k.w, 0) + CHILD_GAP * (kids.length - 1) + 2 * PAD;
    size = { w: Math.max(own, w), h: HEADER_H + Math.max(...kids.map((k) => k.h)) + PAD };
  } else if (node.type === "sequential" && kids.length) {
    const h = kids.reduce((sum, k) => sum + k.h, 0) + STEP_GAP * (kids.length - 1);
    size = { w: Math.max(own, Math.max(...kids.map((k) => k.w)) + 2 * PAD), h: HEADER_H + h + PAD };
  } else if (node.type === "map") {
    const strip = CELLS_PER_ROW * (CELL + CELL_GAP) + 2 * PAD;
    const kid = kids[0] || { w: 0, h: 0 };
    size = { w: Math.max(own, strip, kid.w + 2 * PAD), h: HEADER_H + 16 + (kid.h ? kid.h + PAD + 8 : 0) + PAD };
  } else {
    size = { w: own, h: LEAF_H };
  }
  sizes.set(node.path, size);
  return size;
}

function shapeFor(node, w, h) {
  if (node.type === "conditional") {
    const t = 14;
    return s("polygon", { class: "shape", points: `${t},0 ${w - t},0 ${w},${h / 2} ${w - t},${h} ${t},${h} 0,${h / 2}` });
  }
  return s("rect", { class: "shape", width: w, height: h, rx: node.children.length || node.type === "map" ? 10 : 8 });
}

/** Draws one node (and its inline children) at (x, y); records drawn parts in `parts`. */
function drawNode(node, x, y, sizes, parts, onSelect) {
  const { w, h } = sizes.get(node.path);
  const template = node.path.includes(ITEM);
  const g = s("g", {
    class: ["gnode", `t-${node.type}`, template && "template"], transform: `translate(${x},${y})`,
    dataset: { path: node.path, state: "pending" }, tabindex: template ? null : "0", role: template ? null : "button",
    "aria-label": `${node.path} (${node.type})`,
  });
  const about = `${node.path} · ${node.type}${node.description ? `\n${node.description}` : ""}`;
  const title = s("title", {}, about);
  const status = s("text", { class: "status", x: 12, y: 50 }, "");
  g.append(title, shapeFor(node, w, h),
    s("text", { class: "name", x: 12, y: 20 }, fit(node.name, Math.floor((w - 24) / CHAR_W))),
    s("text", { class: "kind", x: 12, y: 35 }, fit(kindLine(node), Math.floor((w - 20) / 6.2))),
    status);
  if (!template) {
    g.addEventListener("click", (event) => {
      event.stopPropagation();
      onSelect(node.path);
    });
    g.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        onSelect(node.path);
      }
    });
  }
  const part = { node, g, status, title, about, w, h };
  parts.set(node.path, part);

  if (node.type === "parallel") {
    const total = node.children.reduce((sum, c) => sum + sizes.get(c.path).w, 0) + CHILD_GAP * (node.children.length - 1);
    let cx = (w - total) / 2;
    for (const c of node.children) {
      g.append(drawNode(c, cx, HEADER_H, sizes, parts, onSelect));
      cx += sizes.get(c.path).w + CHILD_GAP;
    }
  } else if (node.type === "sequential") {
    let cy = HEADER_H;
    node.children.forEach((c, i) => {
      const cw = sizes.get(c.path).w;
      if (i > 0) g.append(s("path", { class: "step-arrow", d: `M${w / 2},${cy - STEP_GAP + 3} L${w / 2},${cy - 3}`, "marker-end": "url(#arrow)" }));
      g.append(drawNode(c, (w - cw) / 2, cy, sizes, parts, onSelect));
      cy += sizes.get(c.path).h + STEP_GAP;
    });
  } else if (node.type === "map") {
    part.cells = s("g", { class: "cells", transform: `translate(${PAD},${HEADER_H - 4})` });
    g.append(part.cells);
    const c = node.children[0];
    if (c) {
      const cw = sizes.get(c.path).w;
      g.append(drawNode(c, (w - cw) / 2, HEADER_H + 16 + 8, sizes, parts, onSelect));
    }
  }
  return g;
}

function curve(points) {
  // A smooth top-to-bottom path: each hop is a cubic with vertical tangents.
  let d = `M${points[0].x},${points[0].y}`;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1];
    const b = points[i];
    const dy = (b.y - a.y) / 2;
    d += ` C${a.x},${a.y + dy} ${b.x},${b.y - dy} ${b.x},${b.y}`;
  }
  return d;
}

function backPath(points) {
  const [a, b, c, d] = points;
  const r = 10;
  return `M${a.x},${a.y} L${b.x - r},${b.y} Q${b.x},${b.y} ${b.x},${b.y - r} L${c.x},${c.y + r} Q${c.x},${c.y} ${c.x - r},${c.y} L${d.x},${d.y}`;
}

function edgeLabel(text, at, back) {
  const shown = fit(text, MAX_LABEL);
  const w = textWidth(shown, LABEL_CHAR_W) + 10;
  const x = back ? at.x + 6 : at.x - w / 2;
  return s("g", { class: "edge-label", transform: `translate(${x},${at.y - 9})` },
    s("title", {}, text),
    s("rect", { width: w, height: 18, rx: 4 }),
    s("text", { x: 5, y: 13 }, shown));
}

function markers() {
  const arrow = (id) => s("marker", {
    id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse",
  }, s("path", { d: "M0,0 L10,5 L0,10 z" }));
  return s("defs", {}, arrow("arrow"), arrow("arrow-taken"));
}

/**
 * Draws `spec` (from readDefinition) into `container`. Returns {update(view), select(path)}:
 * `view` is {nodes, edges, now, over, paused} where nodes are fold or /state node runs by path.
 */
export function drawGraph(container, spec, { onSelect = () => {} } = {}) {
  const sizes = new Map();
  spec.nodes.forEach((n) => measure(n, sizes));
  const ids = spec.nodes.map((n) => n.path);
  const boxSizes = Object.fromEntries(ids.map((id) => [id, sizes.get(id)]));
  const edges = spec.edges.map((e) => ({
    ...e, labelWidth: e.label ? Math.min(MAX_LABEL, e.label.length) * LABEL_CHAR_W + 14 : 0,
  }));
  const placed = layout(ids, boxSizes, edges, spec.entrypoint);

  const parts = new Map();
  const edgeParts = new Map();
  const edgeLayer = s("g", { class: "edges" });
  const labelLayer = s("g", { class: "labels" });
  const nodeLayer = s("g", { class: "nodes" });
  let extraWidth = 0;
  for (const route of placed.routes) {
    const edge = spec.edges[route.index];
    const path = s("path", {
      class: ["edge", route.back && "back", edge.on === "error" && "on-error"], d: route.back ? backPath(route.points) : curve(route.points),
      "marker-end": "url(#arrow)", dataset: { edge: route.index, from: edge.from, to: edge.to },
    });
    edgeLayer.append(path);
    let label = null;
    if (edge.label) {
      label = edgeLabel(edge.label, route.label, route.back);
      labelLayer.append(label);
      if (route.back) extraWidth = Math.max(extraWidth, route.label.x + textWidth(fit(edge.label, MAX_LABEL), LABEL_CHAR_W) + 24 - placed.width);
    }
    edgeParts.set(route.index, { path, label, edge });
  }
  for (const node of spec.nodes) {
    const box = placed.boxes[node.path];
    nodeLayer.append(drawNode(node, box.x, box.y, sizes, parts, onSelect));
  }
  const width = placed.width + Math.max(0, extraWidth);
  const svg = s("svg", {
    class: "graph", viewBox: `0 0 ${width} ${placed.height}`, width, height: placed.height,
    role: "img", "aria-label": `Graph of workflow ${spec.name}`,
  }, markers(), edgeLayer, nodeLayer, labelLayer);
  svg.addEventListener("click", () => onSelect(null));
  clear(container).append(svg);

  function statusText(part, run, state, view) {
    const { node } = part;
    if (node.type === "map" && run) {
      const paths = itemPaths(node.path, run);
      const c = childCounts(paths, view.nodes, view.now, view.over, view.paused);
      const active = (c.running || 0) + (c.retrying || 0) + (c.timer || 0) + (c.waiting || 0);
      const more = [active && `${active} running`, c.paused && `${c.paused} paused`, c.failed && `${c.failed} failed`]
        .filter(Boolean).join(" · ");
      return `${c.completed || 0}/${c.total} items done${more ? ` · ${more}` : ""}`;
    }
    if (node.type === "parallel" && run && state !== "completed") {
      const c = childCounts(node.children.map((k) => k.path), view.nodes, view.now, view.over, view.paused);
      return `${c.completed || 0}/${c.total} branches done`;
    }
    switch (state) {
      case "running": {
        const attempt = run.attempt > 1 ? `attempt ${run.attempt} · ` : "";
        return run.started_at ? `${attempt}running ${duration(view.now - new Date(run.started_at))}` : `${attempt}running`;
      }
      case "retrying":
        return `retry ${run.attempt} at ${clock(run.not_before)}`;
      case "timer":
        return `timer fires ${clock(run.fires_at)}`;
      case "waiting":
        return `signal ${run.waits_for}?`;
      case "completed":
        return run.started_at && run.ended_at ? `done in ${duration(new Date(run.ended_at) - new Date(run.started_at))}` : "done";
      case "failed": // the colour says failed: the line says why
        return run.error ? run.error.message : "failed";
      default:
        return STATUS_LABELS[state] || state;
    }
  }

  function drawCells(part, run, view) {
    clear(part.cells);
    const paths = itemPaths(part.node.path, run);
    if (!paths.length) {
      part.cells.append(s("text", { class: "kind", x: 2, y: 10 }, run ? "no items" : "items known once it starts"));
      return;
    }
    if (paths.length > MAX_CELLS) {
      const c = childCounts(paths, view.nodes, view.now, view.over, view.paused);
      const width = CELLS_PER_ROW * (CELL + CELL_GAP) - CELL_GAP;
      let x = 0;
      for (const state of ["completed", "failed", "cancelled", "running", "paused", "retrying", "timer", "waiting", "pending", "not-run"]) {
        if (!c[state]) continue;
        const w = (c[state] / c.total) * width;
        part.cells.append(s("rect", { class: "cell", x, y: 0, width: w, height: CELL, dataset: { state } }));
        x += w;
      }
      return;
    }
    paths.forEach((path, i) => {
      const state = nodeState(view.nodes[path], view.now, view.over, view.paused);
      const cell = s("rect", {
        class: "cell", x: (i % CELLS_PER_ROW) * (CELL + CELL_GAP), y: Math.floor(i / CELLS_PER_ROW) * (CELL + CELL_GAP),
        width: CELL, height: CELL, rx: 2, dataset: { path, state },
      }, s("title", {}, `${path}: ${STATUS_LABELS[state] || state}`));
      cell.addEventListener("click", (event) => {
        event.stopPropagation();
        onSelect(path);
      });
      part.cells.append(cell);
    });
  }

  let selected = null;
  return {
    svg,
    /** Recolours every node and edge for `view` = {nodes, edges, now: Date, over: bool, paused: bool}. */
    update(view) {
      for (const part of parts.values()) {
        if (part.node.path.includes(ITEM)) continue; // the per-item node is a template: its items are the cells
        const run = view.nodes[part.node.path];
        const state = nodeState(run, view.now, view.over, view.paused);
        part.g.dataset.state = state;
        const text = statusText(part, run, state, view);
        part.status.textContent = fit(text, Math.floor((part.w - 20) / 6.2));
        part.title.textContent = `${part.about}\n${text}`;
        if (part.cells) drawCells(part, run, view);
      }
      for (const [index, { path, label }] of edgeParts) {
        const taken = view.edges[index] || 0;
        path.classList.toggle("taken", taken > 0);
        path.setAttribute("marker-end", taken > 0 ? "url(#arrow-taken)" : "url(#arrow)");
        if (label) label.classList.toggle("taken", taken > 0);
        path.dataset.taken = String(taken);
      }
    },
    select(path) {
      if (selected) parts.get(selected)?.g.classList.remove("selected");
      selected = path && parts.has(path) ? path : null;
      if (selected) parts.get(selected).g.classList.add("selected");
    },
  };
}
