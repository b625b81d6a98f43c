// Bits shared by the pages: headings, error boxes, and polling that pauses in hidden tabs.

import { h } from "../dom.js";

export function pageHeader(title, ...extra) {
  return h("div", { class: "page-head" }, h("h1", {}, title), h("div", { class: "row" }, ...extra));
}

/** A readable box for an ApiError (or any error), with the problems' locations when given. */
export function errorBox(error, prefix = "") {
  if (error && error.status === 401) {
    return h("div", { class: "callout warn", role: "alert" }, "This server needs a bearer token. ",
      h("button", { type: "button", class: "small", onclick: () => window.dispatchEvent(new CustomEvent("cerebelum:ask-token")) },
        "Enter token"));
  }
  const details = (error && error.details) || [];
  return h("div", { class: "callout bad", role: "alert" },
    h("strong", {}, prefix || "Error: "), (error && error.message) || String(error),
    details.length ? h("ul", {}, details.map((d) => h("li", {}, h("code", {}, d.location), " ", d.message))) : null);
}

/** A handler's traceback (`error.traceback`), folded: null when the error has none. */
export function tracebackView(error, id = null) {
  if (!error || typeof error.traceback !== "string" || !error.traceback) return null;
  const lines = error.traceback.trimEnd().split("\n");
  const frames = lines.filter((line) => /^ {2}File "/.test(line));
  const last = frames.length ? frames[frames.length - 1].trim().replace(/^File "(.*)", line (\d+), in (.*)$/, "$1:$2 ($3)") : "";
  return h("details", { class: "traceback", id },
    h("summary", {}, "Traceback", last ? h("span", { class: "muted" }, ` · ${last}`) : null),
    h("pre", {}, error.traceback));
}

/** Calls `tick` every `ms` while the tab is visible; returns stop(). */
export function poll(tick, ms) {
  let timer = null;
  let stopped = false;
  const loop = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await tick();
      } catch (err) {
        if (err.name !== "AbortError") console.warn(err);
      }
    }
    if (!stopped) timer = setTimeout(loop, ms);
  };
  timer = setTimeout(loop, ms);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** A toggle that shrinks a tall graph to fit its box (and back to full size). */
export function fitButton(graphBox) {
  const button = h("button", { type: "button", class: "ghost small", "aria-pressed": "false", title: "Shrink the graph to fit" }, "Fit");
  button.addEventListener("click", () => {
    const on = graphBox.classList.toggle("fit");
    button.setAttribute("aria-pressed", String(on));
    button.classList.toggle("on", on);
  });
  return button;
}
