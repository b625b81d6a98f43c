// The schedules list: each schedule with its next fire time and its recent ticks' executions.
// Pause, resume and trigger act at once; schedules are created with `cerebelum schedules create`
// or `POST /api/v1/schedules`.

import { schedules } from "../api.js";
import { h, replace } from "../dom.js";
import { badge, shortId, timeEl } from "../format.js";
import { href } from "../router.js";
import { errorBox, pageHeader, poll } from "./common.js";

function when(s) {
  return s.cron ? `cron ${s.cron} (${s.timezone})` : `every ${s.every_s} s`;
}

function recentCell(s) {
  if (!s.recent.length) return h("span", { class: "muted" }, "none yet");
  return s.recent.map((t) => h("div", { class: "small", dataset: { outcome: t.outcome } },
    timeEl(t.tick), " ",
    t.execution_id
      ? [h("a", { href: href(["executions", t.execution_id]), title: t.execution_id }, shortId(t.execution_id)), " ",
        t.status ? badge(t.status) : null]
      : h("span", { class: "muted", title: t.reason || "" }, t.outcome)));
}

export function schedulesView(root) {
  const controller = new AbortController();
  const list = h("div", { id: "schedule-list" }, h("p", { class: "muted" }, "Loading…"));
  const message = h("div");
  const act = async (name, action) => {
    try {
      await schedules.act(name, action);
      replace(message);
      await load();
    } catch (err) {
      replace(message, errorBox(err, `${action} ${name}: `));
    }
  };
  const load = async () => {
    try {
      const page = await schedules.list(controller.signal);
      if (!page.items.length) {
        replace(list, h("div", { class: "empty" }, "No schedules yet. Create one with ",
          h("code", {}, "cerebelum schedules create NAME --workflow W --cron '0 3 * * *'"), " or ",
          h("code", {}, "POST /api/v1/schedules"), "."));
        return;
      }
      replace(list, h("div", { class: "table-scroll" }, h("table", { class: "list", id: "schedules" },
        h("thead", {}, h("tr", {}, ["schedule", "workflow", "when", "state", "next fire", "recent executions", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, page.items.map((s) => h("tr", { dataset: { name: s.name } },
          h("td", {}, s.name),
          h("td", {}, h("a", { href: href(["workflows", s.workflow]) }, s.workflow)),
          h("td", { class: "mono small" }, when(s)),
          h("td", {}, h("span", { class: `badge s-${s.state === "active" ? "running" : "paused"}` }, s.state)),
          h("td", { class: "next-fire" }, s.next_fires.length ? timeEl(s.next_fires[0]) : "—"),
          h("td", {}, recentCell(s)),
          h("td", {},
            h("button", { type: "button", class: "small ghost", onclick: () => act(s.name, s.state === "active" ? "pause" : "resume") },
              s.state === "active" ? "Pause" : "Resume"), " ",
            h("button", { type: "button", class: "small", onclick: () => act(s.name, "trigger") }, "Trigger now"))))))));
    } catch (err) {
      if (err.name !== "AbortError") replace(list, errorBox(err));
    }
  };
  replace(root, pageHeader("Schedules"), message, list);
  load();
  const stop = poll(load, 5000);
  return () => {
    stop();
    controller.abort();
  };
}
