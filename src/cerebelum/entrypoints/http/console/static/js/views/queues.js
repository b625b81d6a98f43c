// The queues page: each queue's limits, executions waiting and running, the oldest waiting (spec section 9).

import { queues } from "../api.js";
import { h, replace } from "../dom.js";
import { timeEl } from "../format.js";
import { errorBox, pageHeader, poll } from "./common.js";

const limit = (value) => (value === null || value === undefined ? h("span", { class: "muted" }, "unlimited") : String(value));

export function queuesView(root) {
  const controller = new AbortController();
  const list = h("div", { id: "queue-list" }, h("p", { class: "muted" }, "Loading…"));
  const load = async () => {
    try {
      const page = await queues.list(controller.signal);
      replace(list, h("div", { class: "table-scroll" }, h("table", { class: "list", id: "queues" },
        h("thead", {}, h("tr", {}, ["queue", "concurrency", "per key", "rate", "waiting", "running", "oldest waiting"]
          .map((t) => h("th", {}, t)))),
        h("tbody", {}, page.items.map((q) => h("tr", { dataset: { name: q.name } },
          h("td", { class: "name" }, q.name),
          h("td", { class: "concurrency" }, limit(q.concurrency)),
          h("td", { class: "per-key" }, limit(q.per_key_concurrency)),
          h("td", { class: "rate" }, limit(q.rate)),
          h("td", { class: "waiting" }, String(q.waiting)),
          h("td", { class: "running" }, String(q.running)),
          h("td", {}, q.oldest_waiting ? timeEl(q.oldest_waiting) : h("span", { class: "muted" }, "-"))))))),
      h("p", { class: "muted small" }, "Running: started and not ended (parked and paused executions hold their slot). Set limits with ",
        h("code", {}, "cerebelum queues set NAME --concurrency N --rate 60/m"), " or ", h("code", {}, "PUT /api/v1/queues/NAME"), "."));
    } catch (err) {
      if (err.name !== "AbortError") replace(list, errorBox(err));
    }
  };
  replace(root, pageHeader("Queues"), list);
  load();
  const stop = poll(load, 2000);
  return () => {
    stop();
    controller.abort();
  };
}
