// A small layered ("Sugiyama") layout, top to bottom, for the top-level graph:
// 1. depth-first search from the entrypoint marks the edges that close a loop (back edges);
// 2. every node gets the layer of its longest forward path from the entrypoint;
// 3. long edges get invisible waypoints, one per layer they cross;
// 4. barycenter sweeps order each layer to cut crossings;
// 5. nodes move toward the mean x of their neighbours, keeping their order and a gap;
// 6. forward edges run through their waypoints, back edges up a channel on the right.

const LAYER_GAP = 64;
const NODE_GAP = 36;
const WAYPOINT_GAP = 14;
const MARGIN = 16;
const CHANNEL_GAP = 18;

function findBackEdges(ids, edges, entrypoint) {
  const out = new Map(ids.map((id) => [id, []]));
  for (const edge of edges) if (out.has(edge.from) && out.has(edge.to)) out.get(edge.from).push(edge);
  const state = new Map(); // 1: on the stack, 2: done
  const back = new Set();
  const order = [];
  const visit = (id) => {
    state.set(id, 1);
    order.push(id);
    for (const edge of out.get(id)) {
      const seen = state.get(edge.to);
      if (seen === 1) back.add(edge.index);
      else if (!seen) visit(edge.to);
    }
    state.set(id, 2);
  };
  for (const id of [entrypoint, ...ids]) if (out.has(id) && !state.get(id)) visit(id);
  return { back, order };
}

function assignLayers(ids, forward) {
  const preds = new Map(ids.map((id) => [id, []]));
  const indegree = new Map(ids.map((id) => [id, 0]));
  for (const edge of forward) {
    preds.get(edge.to).push(edge.from);
    indegree.set(edge.to, indegree.get(edge.to) + 1);
  }
  const layer = new Map(ids.map((id) => [id, 0]));
  const queue = ids.filter((id) => indegree.get(id) === 0);
  const succ = new Map(ids.map((id) => [id, []]));
  for (const edge of forward) succ.get(edge.from).push(edge.to);
  while (queue.length) {
    const id = queue.shift();
    for (const next of succ.get(id)) {
      layer.set(next, Math.max(layer.get(next), layer.get(id) + 1));
      indegree.set(next, indegree.get(next) - 1);
      if (indegree.get(next) === 0) queue.push(next);
    }
  }
  return layer;
}

/**
 * sizes: {id: {w, h}}; edges: [{index, from, to, labelWidth}].
 * Returns {boxes: {id: {x, y, w, h}}, routes: [{index, points, back, label: {x, y}}], width, height}.
 */
export function layout(ids, sizes, edges, entrypoint) {
  const known = new Set(ids);
  const usable = edges.filter((e) => known.has(e.from) && known.has(e.to) && e.from !== e.to);
  const { back, order } = findBackEdges(ids, usable, entrypoint);
  const forward = usable.filter((e) => !back.has(e.index));
  const layerOf = assignLayers(ids, forward);

  // Items of the layout: real nodes and waypoints of long edges.
  const items = new Map();
  const discovery = new Map(order.map((id, i) => [id, i]));
  for (const id of ids) items.set(id, { id, layer: layerOf.get(id), w: sizes[id].w, h: sizes[id].h, rank: discovery.get(id) ?? 1e6 });
  const links = []; // [upper item id, lower item id]
  const chains = new Map(); // edge index -> item ids from source to target
  for (const edge of forward) {
    const chain = [edge.from];
    const top = layerOf.get(edge.from);
    const bottom = layerOf.get(edge.to);
    for (let l = top + 1; l < bottom; l++) {
      const id = `~${edge.index}~${l}`;
      const w = l === top + 1 && edge.labelWidth ? edge.labelWidth : 8;
      items.set(id, { id, layer: l, w, h: 0, rank: items.get(edge.from).rank + 0.5, waypoint: true });
      chain.push(id);
    }
    chain.push(edge.to);
    chains.set(edge.index, chain);
    for (let i = 1; i < chain.length; i++) links.push([chain[i - 1], chain[i]]);
  }

  const layerCount = Math.max(0, ...[...items.values()].map((it) => it.layer)) + 1;
  const layers = Array.from({ length: layerCount }, () => []);
  for (const item of items.values()) layers[item.layer].push(item.id);
  for (const layer of layers) layer.sort((a, b) => items.get(a).rank - items.get(b).rank);

  const up = new Map([...items.keys()].map((id) => [id, []]));
  const down = new Map([...items.keys()].map((id) => [id, []]));
  for (const [a, b] of links) {
    down.get(a).push(b);
    up.get(b).push(a);
  }

  // Barycenter ordering, alternating downward and upward sweeps.
  const position = new Map();
  const renumber = () => layers.forEach((layer) => layer.forEach((id, i) => position.set(id, i)));
  renumber();
  const sweep = (layer, neighbours) => {
    const keyed = layer.map((id, i) => {
      const ns = neighbours.get(id);
      const key = ns.length ? ns.reduce((sum, n) => sum + position.get(n), 0) / ns.length : i;
      return { id, key, i };
    });
    keyed.sort((a, b) => a.key - b.key || a.i - b.i);
    keyed.forEach((k, i) => {
      layer[i] = k.id;
      position.set(k.id, i);
    });
  };
  for (let pass = 0; pass < 6; pass++) {
    if (pass % 2 === 0) for (let l = 1; l < layerCount; l++) sweep(layers[l], up);
    else for (let l = layerCount - 2; l >= 0; l--) sweep(layers[l], down);
  }

  // x: start packed and centred, then pull each node toward its neighbours.
  const x = new Map();
  const gapAfter = (a, b) => (items.get(a).waypoint || items.get(b).waypoint ? WAYPOINT_GAP : NODE_GAP);
  const widest = Math.max(...layers.map((layer) => layer.reduce((s, id) => s + items.get(id).w, 0) + layer.length * NODE_GAP));
  for (const layer of layers) {
    let cursor = (widest - layer.reduce((s, id) => s + items.get(id).w + NODE_GAP, 0)) / 2;
    for (const id of layer) {
      x.set(id, cursor + items.get(id).w / 2);
      cursor += items.get(id).w + NODE_GAP;
    }
  }
  const place = (layer, desired) => {
    // Left to right, then right to left, each as close to `desired` as the gaps allow; then the mean.
    const n = layer.length;
    const half = (i) => items.get(layer[i]).w / 2;
    const left = new Array(n);
    const right = new Array(n);
    for (let i = 0; i < n; i++) {
      left[i] = i === 0 ? desired[i] : Math.max(desired[i], left[i - 1] + half(i - 1) + gapAfter(layer[i - 1], layer[i]) + half(i));
    }
    for (let i = n - 1; i >= 0; i--) {
      right[i] = i === n - 1 ? desired[i] : Math.min(desired[i], right[i + 1] - half(i + 1) - gapAfter(layer[i], layer[i + 1]) - half(i));
    }
    for (let i = 0; i < n; i++) {
      let value = (left[i] + right[i]) / 2;
      if (i > 0) value = Math.max(value, x.get(layer[i - 1]) + half(i - 1) + gapAfter(layer[i - 1], layer[i]) + half(i));
      x.set(layer[i], value);
    }
  };
  for (let pass = 0; pass < 8; pass++) {
    const downward = pass % 2 === 0;
    const range = downward ? [...layers.keys()] : [...layers.keys()].reverse();
    for (const l of range) {
      const layer = layers[l];
      const desired = layer.map((id) => {
        const ns = [...(downward ? up.get(id) : down.get(id)), ...(pass > 3 ? (downward ? down.get(id) : up.get(id)) : [])];
        return ns.length ? ns.reduce((sum, n) => sum + x.get(n), 0) / ns.length : x.get(id);
      });
      place(layer, desired);
    }
  }

  // y: one band per layer, as tall as its tallest node; nodes centred in their band.
  const bandTop = [];
  let y = MARGIN;
  for (const layer of layers) {
    bandTop.push(y);
    y += Math.max(0, ...layer.map((id) => items.get(id).h)) + LAYER_GAP;
  }
  const bandHeight = layers.map((layer) => Math.max(0, ...layer.map((id) => items.get(id).h)));
  const minX = Math.min(...[...items.keys()].map((id) => x.get(id) - items.get(id).w / 2));
  const shift = MARGIN - minX;
  const boxes = {};
  const points = new Map();
  for (const [id, item] of items) {
    const cx = x.get(id) + shift;
    const top = bandTop[item.layer] + (bandHeight[item.layer] - item.h) / 2;
    if (!item.waypoint) boxes[id] = { x: cx - item.w / 2, y: top, w: item.w, h: item.h };
    points.set(id, { x: cx, y: bandTop[item.layer] + bandHeight[item.layer] / 2 });
  }
  let width = Math.max(...Object.values(boxes).map((b) => b.x + b.w), 0) + MARGIN;
  const height = y - LAYER_GAP + MARGIN;

  // Spread the ends of edges that share a node side, in the order of the other end's x.
  const spread = (side, key, other) => {
    const groups = new Map();
    for (const edge of forward) {
      const list = groups.get(edge[key]) || [];
      list.push(edge);
      groups.set(edge[key], list);
    }
    const at = new Map();
    for (const [id, list] of groups) {
      const box = boxes[id];
      const chainEnd = (edge) => {
        const chain = chains.get(edge.index);
        return points.get(side === "bottom" ? chain[1] : chain[chain.length - 2]).x;
      };
      list.sort((a, b) => chainEnd(a) - chainEnd(b));
      list.forEach((edge, i) => {
        const span = Math.min(box.w * 0.6, (list.length - 1) * 24);
        const px = box.x + box.w / 2 - span / 2 + (list.length > 1 ? (span * i) / (list.length - 1) : 0);
        at.set(edge.index, { x: px, y: side === "bottom" ? box.y + box.h : box.y });
      });
    }
    return at;
  };
  const starts = spread("bottom", "from", "to");
  const ends = spread("top", "to", "from");

  const routes = [];
  for (const edge of forward) {
    const chain = chains.get(edge.index);
    const pts = [starts.get(edge.index), ...chain.slice(1, -1).map((id) => points.get(id)), ends.get(edge.index)];
    const first = chain.length > 2 ? points.get(chain[1]) : { x: (pts[0].x + pts[1].x) / 2, y: (pts[0].y + pts[1].y) / 2 };
    routes.push({ index: edge.index, points: pts, back: false, label: first });
  }
  // Back edges: out of the source's right side, up a channel of their own, into the target's right side.
  let channel = width;
  for (const edge of usable.filter((e) => back.has(e.index))) {
    const a = boxes[edge.from];
    const b = boxes[edge.to];
    const laneX = channel + CHANNEL_GAP;
    channel = laneX;
    const pts = [
      { x: a.x + a.w, y: a.y + a.h / 2 },
      { x: laneX, y: a.y + a.h / 2 },
      { x: laneX, y: b.y + b.h / 2 },
      { x: b.x + b.w, y: b.y + b.h / 2 },
    ];
    routes.push({ index: edge.index, points: pts, back: true, label: { x: laneX, y: (pts[1].y + pts[2].y) / 2 } });
  }
  width = Math.max(width, channel + MARGIN + (routes.some((r) => r.back) ? 8 : 0));
  return { boxes, routes, width, height };
}
