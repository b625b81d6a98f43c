// One readable sentence per event, so the timeline can be read without its JSON.

import { clock, duration, plural, preview } from "./format.js";

const errorText = (error) => (error ? `${error.kind}: ${error.message}` : "");

export const EVENT_LABELS = {
  execution_started: "started",
  node_started: "node started",
  attempt_failed: "attempt failed",
  node_completed: "node completed",
  node_failed: "node failed",
  node_cancelled: "node cancelled",
  timer_started: "timer set",
  timer_fired: "timer fired",
  edge_taken: "edge taken",
  execution_paused: "paused",
  execution_resumed: "resumed",
  code_version_changed: "code version changed",
  checkpoint_created: "checkpoint",
  execution_completed: "completed",
  execution_failed: "failed",
  signal_received: "signal received",
};

/** The tone of an event's badge: ok, bad, warn, info or quiet. */
export function eventTone(type) {
  if (type === "execution_completed" || type === "node_completed") return "ok";
  if (type === "execution_failed" || type === "node_failed") return "bad";
  if (type === "attempt_failed" || type === "node_cancelled" || type === "execution_paused" || type === "code_version_changed") return "warn";
  if (type === "timer_started" || type === "timer_fired" || type === "signal_received") return "timer";
  if (type === "edge_taken" || type === "checkpoint_created") return "quiet";
  return "info";
}

export function describeEvent(event, startedAt) {
  const p = event.payload || {};
  switch (event.type) {
    case "execution_started":
      return `${p.workflow} v${p.version} started (${p.clock} time, seed ${p.seed})`;
    case "node_started": {
      const what = p.handler ? `handler ${p.handler}` : p.child ? `child ${p.child} (${p.workflow})` : p.type;
      const items = Array.isArray(p.items) ? `, ${plural(p.items.length, "item")}` : "";
      return `${what}${items}${p.run > 1 ? `, run ${p.run}` : ""}`;
    }
    case "attempt_failed":
      return `attempt ${p.attempt} failed: ${errorText(p.error)}${p.retry_at ? `; retry at ${clock(p.retry_at)}` : "; no retry left"}`;
    case "node_completed":
      return `output ${preview(p.output, 90)}${p.attempt > 1 ? ` (attempt ${p.attempt})` : ""}${p.signal !== undefined ? ` (signal #${p.signal})` : ""}`;
    case "node_failed":
    case "node_cancelled":
    case "execution_failed":
      return errorText(p.error);
    case "timer_started":
      return `fires at ${clock(p.fires_at)}`;
    case "timer_fired":
      return event.node_id === null ? `the deadline ${clock(p.deadline)} passed` : "the timer is due";
    case "signal_received":
      if (p.name === "cerebelum.child") return `child ${p.payload?.child} ${p.payload?.status}`;
      return `signal ${p.name}${p.key ? ` (key ${p.key})` : ""}: ${preview(p.payload, 80)}`;
    case "edge_taken":
      return `${p.from} → ${p.to}${p.on === "error" ? ` on error (${p.error?.kind})` : ""}${p.iteration > 1 ? ` (time ${p.iteration})` : ""}`;
    case "execution_paused":
      return p.reason === "divergence" ? `paused by the drift guard: ${errorText(p.error)}` : "paused on request";
    case "execution_resumed":
      return "resumed";
    case "code_version_changed":
      return `code version ${p.from ?? "(none)"} → ${p.to}${p.reason === "upgrade" ? " (executions upgrade)" : " (continued by another deploy)"}`;
    case "checkpoint_created":
      return "the state was saved (recovery and replay start here)";
    case "execution_completed": {
      const took = startedAt ? ` after ${duration(new Date(event.timestamp) - new Date(startedAt))}` : "";
      return `completed${took}: ${preview(p.output, 90)}`;
    }
    default:
      return preview(p, 100);
  }
}
