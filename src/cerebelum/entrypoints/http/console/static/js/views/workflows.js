// The workflows list: every stored definition with its versions, and a form to add one.

import { workflows } from "../api.js";
import { h, replace } from "../dom.js";
import { plural, timeEl } from "../format.js";
import { href } from "../router.js";
import { errorBox, pageHeader } from "./common.js";

function groupByName(items) {
  const groups = new Map();
  for (const wf of items) {
    const group = groups.get(wf.name) || { name: wf.name, versions: [] };
    group.versions.push(wf);
    groups.set(wf.name, group);
  }
  for (const group of groups.values()) group.versions.sort((a, b) => b.version - a.version);
  return [...groups.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function addForm(onCreated) {
  const text = h("textarea", {
    id: "new-workflow", rows: 12, spellcheck: "false", class: "mono",
    placeholder: '{"name": "hello", "entrypoint": "greet", "nodes": {"greet": {"type": "function", "config": {"handler": "greet"}}}}',
  });
  const result = h("div");
  const submit = async (event) => {
    event.preventDefault();
    const source = text.value.trim();
    if (!source) return;
    let yaml = false;
    try {
      JSON.parse(source);
    } catch {
      yaml = true; // not JSON: let the server read it as YAML
    }
    try {
      const stored = await workflows.create(source, yaml);
      replace(result, h("div", { class: "callout ok" }, `Stored ${stored.name} v${stored.version}.`));
      onCreated(stored);
    } catch (err) {
      replace(result, errorBox(err, "Not stored: "));
    }
  };
  return h("details", { class: "card add-workflow" },
    h("summary", {}, "Add a workflow (paste a JSON or YAML definition)"),
    h("form", { onsubmit: submit },
      h("p", { class: "muted small" }, "Its handlers must be registered in the server (", h("code", {}, "cerebelum serve --handlers …"),
        "). The same definition again reuses its version; a changed one becomes the next version."),
      text, h("div", { class: "row end" }, h("button", { type: "submit", class: "primary" }, "Validate and store")), result));
}

export function workflowsView(root) {
  const controller = new AbortController();
  const list = h("div", { id: "workflow-list" }, h("p", { class: "muted" }, "Loading…"));
  const load = async () => {
    try {
      const page = await workflows.list({ limit: 500 }, controller.signal);
      const groups = groupByName(page.items);
      if (!groups.length) {
        replace(list, h("div", { class: "empty" }, "No workflows yet. Add one below, or run ",
          h("code", {}, "cerebelum run flow.json"), " / ", h("code", {}, "POST /api/v1/workflows"), "."));
        return;
      }
      replace(list, h("div", { class: "table-scroll" }, h("table", { class: "list", id: "workflows" },
        h("thead", {}, h("tr", {}, ["workflow", "latest", "versions", "updated", "description", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, groups.map((g) => {
          const latest = g.versions[0];
          return h("tr", { dataset: { name: g.name } },
            h("td", {}, h("a", { href: href(["workflows", g.name]) }, g.name)),
            h("td", {}, `v${latest.version}`),
            h("td", {}, plural(g.versions.length, "version")),
            h("td", {}, timeEl(latest.created_at)),
            h("td", { class: "muted desc" }, latest.definition.description || ""),
            h("td", {}, h("a", { class: "button small", href: href(["workflows", g.name], { start: 1 }) }, "Start…"),
              " ", h("a", { class: "button small ghost", href: href(["executions"], { workflow: g.name }) }, "Executions")));
        })))));
    } catch (err) {
      if (err.name !== "AbortError") replace(list, errorBox(err));
    }
  };
  replace(root, pageHeader("Workflows"), list, addForm(() => load()));
  load();
  return () => controller.abort();
}
