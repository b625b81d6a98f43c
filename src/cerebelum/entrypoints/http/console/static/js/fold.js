// The browser's fold of an execution's events: node runs, taken edges and timings.
// It mirrors the node part of src/cerebelum/domain/state.py (same field names as
// the `nodes` of GET /state?at=N), plus the timestamps the console shows.

const isTopLevel = (path) => !path.includes(".") && !path.includes("[");

export function emptyFold() {
  return {
    sequence: -1, status: "pending", nodes: {}, edges: {}, startedAt: null, endedAt: null,
    lastTimestamp: null, output: null, error: null, paused: [], signals: [],
  };
}

/** Applies one event in place (events must come in sequence order; older ones are ignored). */
export function applyEvent(fold, event) {
  if (event.sequence <= fold.sequence) return fold;
  fold.sequence = event.sequence;
  fold.lastTimestamp = event.timestamp;
  const p = event.payload || {};
  const path = event.node_id;
  const run = path ? fold.nodes[path] : null;
  switch (event.type) {
    case "execution_started":
      fold.status = "running";
      fold.startedAt = event.timestamp;
      break;
    case "node_started":
      if (isTopLevel(path)) {
        // A loop re-runs a top-level node: its previous run's children are forgotten.
        for (const key of Object.keys(fold.nodes)) {
          if (key.startsWith(`${path}.`) || key.startsWith(`${path}[`)) delete fold.nodes[key];
        }
      }
      fold.nodes[path] = {
        path, run: p.run, type: p.type, status: "running", attempt: 1, not_before: null,
        output: null, error: null, fires_at: null, fired: false, items: p.items ?? null, waits_for: p.signal ?? null, child: p.child ?? null,
        started_at: event.timestamp, ended_at: null, failures: [],
      };
      break;
    case "node_completed":
      if (run) Object.assign(run, { status: "completed", output: p.output ?? null, ended_at: event.timestamp, not_before: null });
      if (p.signal !== undefined) {
        const signal = fold.signals.find((s) => s.sequence === p.signal);
        if (signal) signal.consumed_by = path;
      }
      break;
    case "attempt_failed":
      if (run) {
        run.attempt = p.attempt + 1;
        run.not_before = p.retry_at ?? null;
        run.failures.push({ attempt: p.attempt, error: p.error, at: event.timestamp });
      }
      break;
    case "node_failed":
    case "node_cancelled":
      if (run) {
        run.status = event.type === "node_failed" ? "failed" : "cancelled";
        run.error = p.error ?? null;
        run.ended_at = event.timestamp;
      }
      break;
    case "timer_started":
      if (run) run.fires_at = p.fires_at;
      break;
    case "timer_fired":
      if (run) run.fired = true;
      break;
    case "signal_received":
      fold.signals.push({ sequence: event.sequence, name: p.name, payload: p.payload, consumed_by: null });
      break;
    case "edge_taken":
      fold.edges[p.edge] = (fold.edges[p.edge] || 0) + 1;
      break;
    case "execution_paused":
      fold.status = "paused";
      fold.error = p.error ?? null;
      fold.paused.push(event.timestamp);
      break;
    case "execution_resumed":
      fold.status = "running";
      fold.error = null;
      break;
    case "execution_completed":
      fold.status = "completed";
      fold.output = p.output ?? null;
      fold.endedAt = event.timestamp;
      break;
    case "execution_failed":
      fold.status = "failed";
      fold.error = p.error ?? null;
      fold.endedAt = event.timestamp;
      break;
    default:
      break; // checkpoint_created and anything newer: nothing to show
  }
  return fold;
}

export function foldEvents(events, upTo = Infinity) {
  const fold = emptyFold();
  for (const event of events) {
    if (event.sequence > upTo) break;
    applyEvent(fold, event);
  }
  return fold;
}

/**
 * What a node looks like at `now` (a Date): pending, running, retrying,
 * timer (waiting on a delay), waiting (for a signal), completed, failed, cancelled, not-run once
 * the execution is over, or paused while the execution is. `run` is a fold or /state node entry (or undefined).
 */
export function nodeState(run, now, executionOver, paused = false) {
  if (!run) return executionOver ? "not-run" : "pending";
  if (run.status !== "running") return run.status;
  if (paused) return "paused"; // a handler in flight may still finish, but nothing new starts
  if (run.waits_for) return "waiting";
  if (run.fires_at && !run.fired) return "timer";
  if (run.not_before && new Date(run.not_before) > now) return "retrying";
  return "running";
}

/** Counts of child states under a map or parallel path: {completed, running, failed, ..., total}. */
export function childCounts(paths, nodes, now, executionOver, paused = false) {
  const counts = { total: paths.length };
  for (const path of paths) {
    const state = nodeState(nodes[path], now, executionOver, paused);
    counts[state] = (counts[state] || 0) + 1;
  }
  return counts;
}
