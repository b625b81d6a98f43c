// How times, durations, ids and statuses read on screen.

import { toJson } from "./json.js";
import { h } from "./dom.js";

export function parseTime(text) {
  return text ? new Date(text) : null;
}

/** "14:03:27" today, "25 Nov 14:03:27" otherwise (local time; the title has the full UTC time). */
export function clock(text) {
  const date = parseTime(text);
  if (!date) return "—";
  const today = new Date().toDateString() === date.toDateString();
  const time = date.toLocaleTimeString([], { hour12: false });
  return today ? time : `${date.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

export function timeEl(text) {
  return h("time", { datetime: text || "", title: text || "" }, clock(text));
}

/** 850 ms, 4.2 s, 3 min 5 s, 2 h 10 min. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function between(start, end) {
  const a = parseTime(start);
  if (!a) return null;
  const b = end ? parseTime(end) : new Date();
  return b - a;
}

/** "exec-1a2b3c4d…" keeps ids short in tables (the full id is in the title and the link). */
export function shortId(id) {
  return id.length > 17 ? `${id.slice(0, 13)}…${id.slice(-4)}` : id;
}

export const STATUS_LABELS = {
  pending: "pending",
  running: "running",
  paused: "paused",
  completed: "completed",
  failed: "failed",
  cancelled: "cancelled",
  retrying: "retrying",
  timer: "waiting on timer",
  waiting: "waiting for a signal",
  "not-run": "not run",
};

/** A coloured status badge; a failed execution whose error kind is `cancelled` shows as cancelled. */
export function badge(status, extra) {
  return h("span", { class: `badge s-${status}`, dataset: { status } }, STATUS_LABELS[status] || status, extra || null);
}

export function executionStatus(execution) {
  if (execution.status === "failed" && execution.error && execution.error.kind === "cancelled") return "cancelled";
  return execution.status;
}

export function plural(n, word, many = `${word}s`) {
  return `${n} ${n === 1 ? word : many}`;
}

/** One-line JSON preview, cut to `max` characters. */
export function preview(value, max = 80) {
  const text = toJson(value);
  if (text === undefined) return "";
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
