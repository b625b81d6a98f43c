// A JSON value as a readable, collapsible tree: keys and values, not braces and quotes.

import { toJson } from "./json.js";
import { h } from "./dom.js";

function scalar(value) {
  if (value === null) return h("span", { class: "j-null" }, "null");
  switch (typeof value) {
    case "string": return h("span", { class: "j-str" }, value === "" ? "(empty)" : value);
    case "number":
    case "bigint": return h("span", { class: "j-num" }, String(value));
    case "boolean": return h("span", { class: "j-bool" }, value ? "true" : "false");
    default: return h("span", { class: "j-null" }, "—");
  }
}

function summary(value) {
  if (Array.isArray(value)) return value.length === 1 ? "1 item" : `${value.length} items`;
  const n = Object.keys(value).length;
  return n === 1 ? "1 field" : `${n} fields`;
}

function tree(value, depth, openDepth) {
  if (value === null || typeof value !== "object") return scalar(value);
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (!entries.length) return h("span", { class: "j-null" }, Array.isArray(value) ? "empty list" : "empty object");
  const rows = h("dl", { class: "j-obj" });
  for (const [key, child] of entries) {
    rows.append(
      h("dt", { class: Array.isArray(value) ? "j-index" : "j-key" }, Array.isArray(value) ? `${key}` : key),
      h("dd", {}, tree(child, depth + 1, openDepth)),
    );
  }
  const open = depth < openDepth && entries.length <= 50;
  return h("details", { class: "j-node", open }, h("summary", {}, summary(value)), rows);
}

/** The tree, open `openDepth` levels deep, with a button to copy the raw JSON. */
export function jsonView(value, { openDepth = 2, copy = true } = {}) {
  const text = toJson(value, 2);
  const copyButton = copy && value !== null && typeof value === "object"
    ? h("button", {
      type: "button", class: "ghost tiny copy", title: "Copy as JSON",
      onclick: (event) => {
        navigator.clipboard?.writeText(text);
        event.currentTarget.textContent = "copied";
      },
    }, "copy JSON")
    : null;
  return h("div", { class: "json" }, copyButton, tree(value, 0, openDepth));
}
