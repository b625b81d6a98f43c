// One workflow: its graph, its nodes, its versions side by side, and a form to start it.

import { parseJson, toJson } from "../json.js";
import { executions, workflows } from "../api.js";
import { h, replace } from "../dom.js";
import { diffTable } from "../diff.js";
import { kindLine, readDefinition } from "../definition.js";
import { timeEl } from "../format.js";
import { drawGraph } from "../graph.js";
import { href, replaceQuery } from "../router.js";
import { errorBox, fitButton } from "./common.js";

/** The `input.x` fields the definition's expressions read: a hint for the start form. */
export function inputFields(definition) {
  const text = toJson(definition);
  return [...new Set([...text.matchAll(/\binput\.([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]))];
}

/** Checks the input text: {value} when it is JSON, {error} (with where) when not. */
export function checkInput(text) {
  if (!text.trim()) return { value: {} };
  try {
    return { value: parseJson(text) };
  } catch (err) {
    return { error: err.message };
  }
}

function startForm(name, versions, chosen) {
  const select = h("select", { id: "start-version", "aria-label": "Version" },
    versions.map((wf) => h("option", { value: wf.version, selected: wf.version === chosen.version },
      `v${wf.version}${wf === versions[0] ? " (latest)" : ""}`)));
  const input = h("textarea", { id: "start-input", rows: 10, spellcheck: "false", class: "mono", "aria-label": "Input (JSON)" }, "{}");
  const status = h("div", { id: "start-check", class: "small", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary", id: "start-submit" }, "Start execution");
  const result = h("div", { id: "start-result" });
  const hint = h("p", { class: "muted small", id: "start-hint" });

  const current = () => versions.find((wf) => String(wf.version) === select.value) || versions[0];
  function validate() {
    const checked = checkInput(input.value);
    const fields = inputFields(current().definition);
    hint.textContent = fields.length ? `Its expressions read input.${fields.join(", input.")}.` : "";
    input.classList.toggle("invalid", Boolean(checked.error));
    submit.disabled = Boolean(checked.error);
    if (checked.error) {
      replace(status, h("span", { class: "bad-text" }, `Not valid JSON: ${checked.error}`));
      return checked;
    }
    const value = checked.value;
    const missing = value && typeof value === "object" && !Array.isArray(value) ? fields.filter((f) => !(f in value)) : [];
    replace(status, missing.length
      ? h("span", { class: "warn-text" }, `Valid JSON. Not given: ${missing.join(", ")} (the workflow may need them).`)
      : h("span", { class: "ok-text" }, "Valid JSON."));
    return checked;
  }
  const prefill = h("button", { type: "button", class: "ghost small", id: "start-prefill", onclick: async () => {
    try {
      const page = await executions.list({ workflow: name, limit: 1 });
      if (page.items.length) {
        // A list leaves out a large input (`omitted`): the execution's own route has it.
        const latest = (page.items[0].omitted || []).includes("input") ? await executions.get(page.items[0].execution_id) : page.items[0];
        input.value = toJson(latest.input, 2);
        validate();
      } else {
        replace(status, h("span", { class: "muted" }, "No execution of this workflow yet."));
      }
    } catch (err) {
      replace(result, errorBox(err));
    }
  } }, "Use the latest execution's input");
  input.addEventListener("input", validate);
  select.addEventListener("change", validate);
  const form = h("form", { id: "start-form", onsubmit: async (event) => {
    event.preventDefault();
    const checked = validate();
    if (checked.error) return;
    submit.disabled = true;
    try {
      const execution = await executions.start(name, Number(select.value), checked.value);
      location.hash = href(["executions", execution.execution_id]);
    } catch (err) {
      replace(result, errorBox(err, "Not started: "));
      submit.disabled = false;
    }
  } },
  h("label", {}, "Version ", select),
  h("div", { class: "row input-head" }, h("label", { for: "start-input" }, "Input (JSON)"), h("span", { class: "spacer" }), prefill),
  input,
  hint, status, h("div", { class: "row end" }, submit), result);
  validate();
  return form;
}

function versionsCard(name, versions, query) {
  const box = h("div", { id: "diff-box" });
  const pick = (side, initial) => h("select", { id: `diff-${side}`, "aria-label": `Version ${side}` },
    versions.map((wf) => h("option", { value: wf.version, selected: wf.version === initial }, `v${wf.version}`)));
  const newest = versions[0]?.version;
  const older = versions[1]?.version ?? newest;
  const a = pick("a", Number(query.get("a")) || older);
  const b = pick("b", Number(query.get("b")) || newest);
  const show = () => {
    const left = versions.find((wf) => String(wf.version) === a.value);
    const right = versions.find((wf) => String(wf.version) === b.value);
    if (!left || !right) return;
    replace(box, diffTable(toJson(left.definition, 2), toJson(right.definition, 2),
      `v${left.version}`, `v${right.version}`));
  };
  a.addEventListener("change", show);
  b.addEventListener("change", show);
  if (versions.length > 1) show();
  return h("section", { class: "card", id: "versions" },
    h("div", { class: "card-head" }, h("h2", {}, "Versions")),
    h("table", { class: "list compact" },
      h("thead", {}, h("tr", {}, ["version", "stored", "id", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, versions.map((wf) => h("tr", {},
        h("td", {}, `v${wf.version}`), h("td", {}, timeEl(wf.created_at)), h("td", { class: "mono muted small" }, wf.id),
        h("td", {}, h("a", { href: href(["workflows", name], { v: wf.version }) }, "view")))))),
    versions.length > 1
      ? h("div", { class: "row" }, h("span", {}, "Compare "), a, h("span", {}, " with "), b)
      : h("p", { class: "muted" }, "Only one version: a changed definition stored under the same name becomes v2."),
    box);
}

export function workflowView(root, { params, query }) {
  const { name } = params;
  const controller = new AbortController();
  replace(root, h("p", { class: "muted" }, "Loading…"));
  (async () => {
    let versions;
    try {
      versions = (await workflows.versions(name, controller.signal)).items.sort((x, y) => y.version - x.version);
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(root, h("div", { class: "crumbs" }, h("a", { href: "#/workflows" }, "← Workflows")), errorBox(err));
      return;
    }
    const wanted = Number(query.get("v"));
    const chosen = versions.find((wf) => wf.version === wanted) || versions[0];
    const spec = readDefinition(chosen.definition);
    const graphBox = h("div", { class: "graph-box definition-only", id: "graph" });
    const versionSelect = h("select", { id: "view-version", "aria-label": "Version shown",
      onchange: () => { location.hash = href(["workflows", name], { v: versionSelect.value }); } },
    versions.map((wf) => h("option", { value: wf.version, selected: wf === chosen }, `v${wf.version}`)));
    const nodes = [];
    const walk = (n, depth) => {
      nodes.push(h("tr", {}, h("td", { class: `mono depth-${Math.min(depth, 4)}` }, `${depth ? "↳ " : ""}${n.path}`), h("td", {}, n.type),
        h("td", { class: "small" }, kindLine(n)), h("td", { class: "muted small" }, n.description)));
      n.children.forEach((c) => walk(c, depth + 1));
    };
    spec.nodes.forEach((n) => walk(n, 0));
    const startCard = h("section", { class: "card", id: "start" }, h("div", { class: "card-head" }, h("h2", {}, "Start an execution")),
      startForm(name, versions, chosen));
    replace(root,
      h("div", { class: "crumbs" }, h("a", { href: "#/workflows" }, "← Workflows")),
      h("div", { class: "page-head" },
        h("div", { class: "title-row" }, h("h1", { id: "workflow-name" }, name), versionSelect),
        h("div", { class: "row" }, h("a", { class: "button ghost", href: href(["executions"], { workflow: name }) }, "Its executions"))),
      chosen.definition.description ? h("p", { class: "lead" }, chosen.definition.description) : null,
      h("div", { class: "exec-grid" },
        h("section", { class: "card graph-card" }, h("div", { class: "card-head" }, h("h2", {}, `Graph of v${chosen.version}`), fitButton(graphBox)), graphBox,
          spec.output ? h("p", { class: "small muted" }, "Output: ", h("code", {}, spec.output)) : null),
        startCard),
      h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Nodes")),
        h("div", { class: "table-scroll" }, h("table", { class: "list compact nodes-table" },
          h("thead", {}, h("tr", {}, ["node", "type", "does", "description"].map((t) => h("th", {}, t)))), h("tbody", {}, nodes)))),
      versionsCard(name, versions, query));
    const graph = drawGraph(graphBox, spec, { onSelect: () => {} });
    graph.update({ nodes: {}, edges: {}, now: new Date(), over: false });
    if (query.get("start")) {
      startCard.scrollIntoView({ block: "start" });
      root.querySelector("#start-input").focus();
      replaceQuery({ v: query.get("v") });
    }
  })();
  return () => controller.abort();
}
