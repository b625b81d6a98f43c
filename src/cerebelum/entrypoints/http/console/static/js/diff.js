// A line diff (longest common subsequence) and its side-by-side rendering.

import { h } from "./dom.js";

const MAX_CELLS = 4_000_000; // beyond this the diff shows the two texts without alignment

/** [{op: "same" | "del" | "add", a?: line, b?: line, ai?, bi?}] turning `a` into `b`. */
export function diffLines(a, b) {
  const n = a.length;
  const m = b.length;
  if ((n + 1) * (m + 1) > MAX_CELLS) {
    return [...a.map((line, i) => ({ op: "del", a: line, ai: i })), ...b.map((line, i) => ({ op: "add", b: line, bi: i }))];
  }
  // lcs[i][j]: the LCS length of a[i..] and b[j..], in one flat array.
  const lcs = new Uint32Array((n + 1) * (m + 1));
  const at = (i, j) => i * (m + 1) + j;
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[at(i, j)] = a[i] === b[j] ? lcs[at(i + 1, j + 1)] + 1 : Math.max(lcs[at(i + 1, j)], lcs[at(i, j + 1)]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      out.push({ op: "same", a: a[i], b: b[j], ai: i++, bi: j++ });
    } else if (i < n && (j === m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)])) {
      out.push({ op: "del", a: a[i], ai: i++ }); // deletions first, so a changed line faces its new text
    } else {
      out.push({ op: "add", b: b[j], bi: j++ });
    }
  }
  return out;
}

/** Rows of a side-by-side view: a run of deletions faces the run of additions that follows it. */
export function sideBySide(ops) {
  const rows = [];
  let k = 0;
  while (k < ops.length) {
    if (ops[k].op === "same") {
      rows.push({ left: ops[k], right: ops[k], kind: "same" });
      k++;
      continue;
    }
    const dels = [];
    const adds = [];
    while (k < ops.length && ops[k].op === "del") dels.push(ops[k++]);
    while (k < ops.length && ops[k].op === "add") adds.push(ops[k++]);
    for (let r = 0; r < Math.max(dels.length, adds.length); r++) {
      rows.push({ left: dels[r] || null, right: adds[r] || null, kind: dels[r] && adds[r] ? "changed" : dels[r] ? "del" : "add" });
    }
  }
  return rows;
}

/** A table with the two texts side by side, changed lines marked; unchanged stretches folded. */
export function diffTable(aText, bText, aTitle, bTitle) {
  const rows = sideBySide(diffLines(aText.split("\n"), bText.split("\n")));
  const changed = rows.map((r) => r.kind !== "same");
  const near = (i) => changed.slice(Math.max(0, i - 3), i + 4).some(Boolean);
  const body = h("tbody");
  let folded = 0;
  const flush = () => {
    if (folded) body.append(h("tr", { class: "fold" }, h("td", { colspan: 4 }, `⋯ ${folded} unchanged lines`)));
    folded = 0;
  };
  rows.forEach((row, i) => {
    if (!near(i)) {
      folded++;
      return;
    }
    flush();
    const cell = (side, op) => [
      h("td", { class: "ln" }, op ? String((side === "left" ? op.ai : op.bi) + 1) : ""),
      h("td", { class: ["code", op && row.kind !== "same" && (side === "left" ? "del" : "add")] }, op ? (side === "left" ? op.a : op.b) : ""),
    ];
    body.append(h("tr", { class: `d-${row.kind}` }, cell("left", row.left), cell("right", row.right)));
  });
  flush();
  const count = changed.filter(Boolean).length;
  return h("div", { class: "diff", id: "diff" },
    h("p", { class: "muted small" }, count ? `${count} changed line${count === 1 ? "" : "s"}` : "The two versions are identical."),
    h("div", { class: "table-scroll" }, h("table", { class: "diff-table" },
      h("colgroup", {}, h("col", { class: "ln" }), h("col"), h("col", { class: "ln" }), h("col")),
      h("thead", {}, h("tr", {}, h("th", { colspan: 2 }, aTitle), h("th", { colspan: 2 }, bTitle))), body)));
}
