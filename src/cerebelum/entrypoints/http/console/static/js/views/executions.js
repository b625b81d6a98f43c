// The executions list: filters by status and workflow, search by id, refreshed live.

import { executions, workflows } from "../api.js";
import { clear, debounce, h, replace } from "../dom.js";
import { badge, between, duration, executionStatus, shortId, timeEl } from "../format.js";
import { href, replaceQuery } from "../router.js";
import { errorBox, pageHeader, poll } from "./common.js";

const STATUSES = ["", "running", "pending", "paused", "completed", "failed"];
const REFRESH_MS = 2000;
const PAGE = 50;

function row(execution) {
  const status = executionStatus(execution);
  const link = href(["executions", execution.execution_id]);
  const took = execution.started_at ? duration(between(execution.started_at, execution.completed_at)) : "—";
  return h("tr", { dataset: { id: execution.execution_id, status }, class: "clickable", onclick: (e) => {
    if (!e.target.closest("a")) location.hash = link;
  } },
  h("td", {}, h("a", { href: link, title: execution.execution_id, class: "mono" }, shortId(execution.execution_id))),
  h("td", {}, h("a", { href: href(["workflows", execution.workflow], { v: execution.version }) }, execution.workflow),
    h("span", { class: "muted" }, ` v${execution.version}`)),
  h("td", {}, badge(status), execution.requested ? h("span", { class: "muted small" }, ` ${execution.requested} requested`) : null),
  h("td", {}, timeEl(execution.created_at)),
  h("td", { class: "num" }, took),
  h("td", { class: "num" }, String(execution.last_sequence + 1)));
}

export function executionsView(root, { query }) {
  const filters = { status: query.get("status") || "", workflow: query.get("workflow") || "", q: query.get("q") || "" };
  let items = [];
  let cursor = null;
  let wanted = PAGE;
  let lookup = null; // an execution found by its exact id, outside the loaded pages
  const controller = new AbortController();

  const statusButtons = STATUSES.map((status) => h("button", {
    type: "button", class: ["chip", filters.status === status && "on"], dataset: { status: status || "all" },
    "aria-pressed": String(filters.status === status),
    onclick: () => {
      filters.status = status;
      statusButtons.forEach((b) => {
        const on = b.dataset.status === (status || "all");
        b.classList.toggle("on", on);
        b.setAttribute("aria-pressed", String(on));
      });
      changed();
    },
  }, status || "all"));
  const workflowSelect = h("select", { id: "filter-workflow", "aria-label": "Workflow",
    onchange: () => {
      filters.workflow = workflowSelect.value;
      changed();
    } }, h("option", { value: "" }, "all workflows"));
  if (filters.workflow) workflowSelect.append(h("option", { value: filters.workflow, selected: true }, filters.workflow));
  const search = h("input", {
    type: "search", id: "filter-id", placeholder: "Search by execution id", value: filters.q, "aria-label": "Search by execution id",
  });
  const tbody = h("tbody");
  const message = h("div", { id: "list-message" });
  const more = h("button", { type: "button", class: "ghost", id: "load-more", hidden: true, onclick: () => {
    wanted += PAGE;
    load();
  } }, "Load more");
  const updated = h("span", { class: "muted small live-dot", id: "list-updated" });

  replace(root,
    pageHeader("Executions", updated, h("a", { class: "button primary", href: "#/workflows" }, "Start an execution")),
    h("div", { class: "filters" }, h("div", { class: "chips", role: "group", "aria-label": "Status" }, statusButtons),
      workflowSelect, search),
    message,
    h("div", { class: "table-scroll" }, h("table", { class: "list", id: "executions" },
      h("thead", {}, h("tr", {}, ["execution", "workflow", "status", "created", "took", "events"].map((t) => h("th", {}, t)))),
      tbody)),
    more);

  function matching() {
    const q = filters.q.trim().toLowerCase();
    const shown = q ? items.filter((e) => e.execution_id.toLowerCase().includes(q)) : items;
    if (lookup && !shown.some((e) => e.execution_id === lookup.execution_id)) return [lookup, ...shown];
    return shown;
  }

  function draw() {
    const shown = matching();
    replace(tbody, shown.map(row));
    more.hidden = !cursor;
    clear(message);
    if (!shown.length) {
      const filtered = filters.status || filters.workflow || filters.q;
      message.append(h("div", { class: "empty" }, filtered
        ? "No execution matches these filters."
        : h("span", {}, "No executions yet. Pick a workflow and start one from ", h("a", { href: "#/workflows" }, "Workflows"),
          ", or run ", h("code", {}, "cerebelum start NAME --input '{...}'"), ".")));
    }
  }

  async function load() {
    try {
      const page = await executions.list({ status: filters.status, workflow: filters.workflow, limit: Math.min(wanted, 500) },
        controller.signal);
      items = page.items;
      cursor = page.next_cursor;
      updated.textContent = `updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
      draw();
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(message, errorBox(err));
    }
  }

  const findById = debounce(async () => {
    const q = filters.q.trim();
    lookup = null;
    if (q.length >= 8 && !items.some((e) => e.execution_id.toLowerCase().includes(q.toLowerCase()))) {
      try {
        lookup = await executions.get(q, controller.signal);
      } catch {
        lookup = null; // not an exact id: the list filter says "no match"
      }
    }
    draw();
  }, 250);

  function changed() {
    replaceQuery({ status: filters.status, workflow: filters.workflow, q: filters.q });
    wanted = PAGE;
    load();
  }
  search.addEventListener("input", () => {
    filters.q = search.value;
    replaceQuery({ status: filters.status, workflow: filters.workflow, q: filters.q });
    draw();
    findById();
  });
  search.addEventListener("keydown", (event) => {
    const shown = matching();
    if (event.key === "Enter" && shown.length === 1) location.hash = href(["executions", shown[0].execution_id]);
  });

  workflows.list({ limit: 500 }, controller.signal).then((page) => {
    const names = [...new Set(page.items.map((w) => w.name))].sort();
    for (const name of names) if (name !== filters.workflow) workflowSelect.append(h("option", { value: name }, name));
  }).catch(() => {});
  load().then(() => filters.q && findById());
  const stop = poll(load, REFRESH_MS);
  return () => {
    stop();
    controller.abort();
  };
}
