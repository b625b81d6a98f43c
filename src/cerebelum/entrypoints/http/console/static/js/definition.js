// A workflow definition as a tree the graph can draw: every node with its event path,
// its inline children (parallel branches, sequential steps, the map's per-item node),
// and the edges with their conditions.

/** A map's per-item node is drawn once; its real paths are `ship[0]`, `ship[1]`, ... */
export const ITEM = "[*]";

function child(parentPath, key) {
  return typeof key === "number" ? `${parentPath}[${key}]` : `${parentPath}.${key}`;
}

function spec(path, name, raw, role) {
  const config = raw.config || {};
  const node = { path, name, type: raw.type, config, description: raw.description || "", role, children: [] };
  if (raw.type === "parallel") {
    node.children = Object.entries(config.branches || {}).map(([key, sub]) => spec(child(path, key), key, sub, "branch"));
  } else if (raw.type === "sequential") {
    node.children = (config.steps || []).map((sub, i) => spec(child(path, i), `step ${i + 1}`, sub, "step"));
  } else if (raw.type === "map" && config.node) {
    node.children = [spec(`${path}${ITEM}`, "each item", config.node, "item")];
  }
  return node;
}

/** {nodes: [top-level spec], byPath: {path: spec}, edges: [{index, from, to, when, max_iterations, on, label}]} */
export function readDefinition(definition) {
  const nodes = Object.entries(definition.nodes || {}).map(([id, raw]) => spec(id, id, raw, "top"));
  const byPath = {};
  const index = (node) => {
    byPath[node.path] = node;
    node.children.forEach(index);
  };
  nodes.forEach(index);
  const seenFrom = new Set();
  const edges = (definition.edges || []).map((edge, i) => {
    // Edges are tried in order: one without `when` after others from the same node is the fallback.
    // Error edges (`on: "error"`) are tried, apart, after the node failed for good.
    const on = edge.on === "error" ? "error" : "success";
    const group = `${on}:${edge.from}`;
    let label = edge.when || (seenFrom.has(group) ? "otherwise" : "");
    if (on === "error") label = `on error${label ? ": " + label : ""}`;
    if (edge.max_iterations) label = `${label}${label ? " " : ""}(≤ ${edge.max_iterations}×)`;
    seenFrom.add(group);
    return { index: i, from: edge.from, to: edge.to, when: edge.when || null, max_iterations: edge.max_iterations || null, on, label };
  });
  return { name: definition.name, entrypoint: definition.entrypoint, nodes, byPath, edges, output: definition.output || null };
}

/** The short line under a node's name: its handler, delay, items expression, ... */
export function kindLine(node) {
  const c = node.config;
  switch (node.type) {
    case "function": {
      const extras = [];
      if (c.retry && c.retry.max_attempts > 1) extras.push(`retry ×${c.retry.max_attempts}`);
      if (c.timeout_s) extras.push(`${c.timeout_s} s timeout`);
      return `ƒ ${c.handler}${extras.length ? ` · ${extras.join(" · ")}` : ""}`;
    }
    case "delay":
      return c.seconds !== undefined ? `delay ${c.seconds} s` : `delay until ${c.until}`;
    case "workflow":
      return `workflow ${c.workflow}${c.version !== undefined ? ` v${c.version}` : ""}`;
    case "wait":
      return `wait for signal ${c.signal}${c.timeout_s !== undefined ? ` (${c.timeout_s} s)` : ""}`;
    case "conditional":
      return "conditional";
    case "map":
      return `map over ${c.items}${c.max_concurrency !== undefined ? ` · ≤ ${c.max_concurrency || "∞"} at once` : ""}`;
    case "parallel":
      return `parallel · ${node.children.length} branches`;
    case "sequential":
      return `sequential · ${node.children.length} steps`;
    default:
      return node.type;
  }
}

/** The real paths of a map's items, once the map has started and recorded its items. */
export function itemPaths(mapPath, run) {
  const items = run && Array.isArray(run.items) ? run.items : [];
  return items.map((_, i) => `${mapPath}[${i}]`);
}
