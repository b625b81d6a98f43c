// The event log as a table: every event in order with a readable line and its payload,
// filterable by node and by kind. Clicking a row shows the execution at that sequence.

import { describeEvent, EVENT_LABELS, eventTone } from "./describe.js";
import { clear, h } from "./dom.js";
import { duration } from "./format.js";
import { jsonView } from "./jsonview.js";
import { tracebackView } from "./views/common.js";

const EXECUTION = "(execution)";

/** Mounts the timeline in `container`; `onPick(sequence)` is called when a row is chosen. */
export function timeline(container, { onPick }) {
  let events = [];
  let startedAt = null;
  let picked = null;
  const rows = new Map(); // sequence -> {row, event}
  const nodeFilter = h("select", { id: "timeline-node", "aria-label": "Only events of this node" },
    h("option", { value: "" }, "all nodes"));
  const kindFilter = h("select", { id: "timeline-kind", "aria-label": "Only events of this kind" },
    h("option", { value: "" }, "all kinds"),
    ...Object.entries(EVENT_LABELS).map(([type, label]) => h("option", { value: type }, label)));
  const count = h("span", { class: "muted", id: "timeline-count" });
  const body = h("tbody");
  const scroller = h("div", { class: "table-scroll timeline-scroll" });
  const table = h("table", { class: "timeline", id: "timeline" },
    h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", {}, "time"), h("th", {}, "event"),
      h("th", {}, "node"), h("th", {}, "what happened"))),
    body);
  const knownNodes = new Set();

  scroller.append(table);
  clear(container).append(
    h("div", { class: "toolbar" }, h("label", {}, "Node ", nodeFilter), h("label", {}, "Kind ", kindFilter), count),
    scroller,
  );

  const matches = (event) => {
    const node = nodeFilter.value;
    const kind = kindFilter.value;
    if (kind && event.type !== kind) return false;
    if (!node) return true;
    if (node === EXECUTION) return event.node_id === null;
    // A node's filter includes its inline children (ship shows ship[0], ship[1], ...).
    const id = event.node_id || "";
    return id === node || id.startsWith(`${node}.`) || id.startsWith(`${node}[`);
  };

  function refreshCount() {
    const shown = events.filter(matches).length;
    count.textContent = shown === events.length ? `${events.length} events` : `${shown} of ${events.length} events`;
  }

  function addNodeOption(id) {
    const value = id ?? EXECUTION;
    if (knownNodes.has(value)) return;
    knownNodes.add(value);
    nodeFilter.append(h("option", { value }, value));
  }

  function rowFor(event) {
    const offset = startedAt ? `+${duration(new Date(event.timestamp) - new Date(startedAt))}` : "";
    const row = h("tr", {
      class: ["ev", `tone-${eventTone(event.type)}`], dataset: { sequence: event.sequence, type: event.type },
      tabindex: "0", title: "Show the execution as it was after this event",
    },
    h("td", { class: "num" }, String(event.sequence)),
    h("td", { class: "time" }, h("time", { datetime: event.timestamp, title: event.timestamp }, offset)),
    h("td", {}, h("span", { class: `ev-badge tone-${eventTone(event.type)}` }, EVENT_LABELS[event.type] || event.type)),
    h("td", { class: "node-cell" }, event.node_id || "—"),
    h("td", { class: "what" }, describeEvent(event, startedAt)));
    const choose = () => onPick(event.sequence);
    row.addEventListener("click", choose);
    row.addEventListener("keydown", (e) => {
      if (e.key === "Enter") choose();
    });
    row.hidden = !matches(event);
    return row;
  }

  /** Brings a row into the table's own view, without scrolling the page. */
  function scrollToRow(row) {
    if (!row || row.hidden) return;
    const top = row.offsetTop - table.tHead.offsetHeight;
    if (top < scroller.scrollTop || row.offsetTop + row.offsetHeight > scroller.scrollTop + scroller.clientHeight) {
      scroller.scrollTop = Math.max(0, top - scroller.clientHeight / 3);
    }
  }

  function showPayload() {
    body.querySelector("tr.payload")?.remove();
    body.querySelector("tr.picked")?.classList.remove("picked");
    const entry = rows.get(picked);
    if (!entry) return;
    entry.row.classList.add("picked");
    const detail = h("tr", { class: "payload" }, h("td", { colspan: 5 },
      h("div", { class: "payload-meta muted small" },
        `${entry.event.type} · ${entry.event.timestamp} · engine ${entry.event.engine_version ?? "?"} · workflow v${entry.event.workflow_version ?? "?"} · code ${entry.event.code_version ?? "?"}`),
      tracebackView(entry.event.payload && entry.event.payload.error, "timeline-traceback"),
      jsonView(entry.event.payload, { openDepth: 1 })));
    detail.hidden = entry.row.hidden;
    entry.row.after(detail);
  }

  function applyFilters() {
    for (const { row, event } of rows.values()) row.hidden = !matches(event);
    const detail = body.querySelector("tr.payload");
    if (detail) detail.hidden = rows.get(picked)?.row.hidden ?? true;
    refreshCount();
  }
  nodeFilter.addEventListener("change", applyFilters);
  kindFilter.addEventListener("change", applyFilters);

  return {
    /** Appends events in sequence order (already known ones are skipped). */
    add(newEvents) {
      const fragment = document.createDocumentFragment();
      for (const event of newEvents) {
        if (rows.has(event.sequence)) continue;
        if (event.type === "execution_started") startedAt = event.timestamp;
        events.push(event);
        addNodeOption(event.node_id);
        const row = rowFor(event);
        rows.set(event.sequence, { row, event });
        fragment.append(row);
      }
      body.append(fragment);
      refreshCount();
    },
    /** Marks the row of `sequence` (null: none) and shows its payload. */
    pick(sequence) {
      picked = sequence;
      showPayload();
      scrollToRow(rows.get(sequence)?.row);
    },
    filterNode(path) {
      if (path && ![...nodeFilter.options].some((o) => o.value === path)) nodeFilter.append(h("option", { value: path }, path));
      nodeFilter.value = path || "";
      applyFilters();
    },
    reset() {
      events = [];
      rows.clear();
      clear(body);
      refreshCount();
    },
  };
}
