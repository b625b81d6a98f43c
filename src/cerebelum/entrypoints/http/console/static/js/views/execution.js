// One execution: its graph coloured live, the controls, input/output, the timeline and time travel.

import { toJson } from "../json.js";
import { ApiError, executions, workflows } from "../api.js";
import { clear, debounce, h, replace } from "../dom.js";
import { ITEM, itemPaths, kindLine, readDefinition } from "../definition.js";
import { applyEvent, emptyFold, foldEvents, nodeState } from "../fold.js";
import { badge, between, clock, duration, executionStatus, STATUS_LABELS, timeEl } from "../format.js";
import { drawGraph } from "../graph.js";
import { jsonView } from "../jsonview.js";
import { href } from "../router.js";
import { followExecution } from "../sse.js";
import { timeline } from "../timeline.js";
import { travelBar } from "../timetravel.js";
import { errorBox, fitButton, poll, tracebackView } from "./common.js";

const TERMINAL = new Set(["completed", "failed"]);
const LEGEND = ["pending", "running", "retrying", "timer", "waiting", "paused", "completed", "failed", "cancelled", "not-run"];
const LIVE_LABELS = {
  connecting: "connecting…", live: "● live", reconnecting: "reconnecting…", ended: "finished", unauthorized: "needs a token",
};

/** The spec drawn for `path`: a map item `ship[3]` (or `ship[3].a`) is drawn as `ship[*]` (`ship[*].a`). */
function specFor(byPath, path) {
  const segments = path.match(/^[^.[]+|\.[^.[]+|\[\d+\]/g) || [path];
  let current = segments[0];
  for (const seg of segments.slice(1)) {
    current += seg.startsWith("[") && byPath[current]?.type === "map" ? ITEM : seg;
  }
  return byPath[current] || null;
}

function fact(label, value, id) {
  return h("div", { class: "fact", id }, h("div", { class: "fact-label" }, label), h("div", { class: "fact-value" }, value));
}

export function executionView(root, { params }) {
  const id = params.id;
  const controller = new AbortController();
  const cleanups = [() => controller.abort()];
  let execution = null;
  let spec = null;
  let graph = null;
  let stream = null;
  const events = [];
  const fold = emptyFold();
  let travel = null; // {sequence, state, fold} while looking at the past
  let selected = null;
  let tab = "overview";
  let loading = true;

  const title = h("h1", { class: "mono", id: "execution-id", title: id }, id);
  const statusSlot = h("span", { id: "execution-status" });
  const liveSlot = h("span", { class: "live", id: "live-status" });
  const buttons = {
    pause: h("button", { type: "button", id: "btn-pause", onclick: () => control("pause") }, "Pause"),
    resume: h("button", { type: "button", id: "btn-resume", onclick: () => control("resume") }, "Resume"),
    cancel: h("button", { type: "button", id: "btn-cancel", class: "danger", onclick: () => askCancel() }, "Cancel"),
    replay: h("button", { type: "button", id: "btn-replay", onclick: () => replay() }, "Replay"),
    retry: h("button", { type: "button", id: "btn-retry", title: "Fork: a new execution that keeps every completed node and runs on from just before the failure", onclick: () => fork() }, "Retry from the failure"),
  };
  const signalsSlot = h("div", { id: "signal-forms" });
  const familySlot = h("div", { id: "family" });
  let kids = []; // the child executions it started
  let shownWaits = "";
  const strict = h("input", { type: "checkbox", id: "replay-strict" });
  const facts = h("div", { class: "facts", id: "facts" });
  const notices = h("div", { class: "notices", id: "notices" });
  const replaySlot = h("div", { id: "replay-result" });
  const graphBox = h("div", { class: "graph-box", id: "graph" });
  const side = h("div", { class: "side-body", id: "side" });
  const tabs = h("div", { class: "tabs", role: "tablist" });
  const timelineBox = h("div", { id: "timeline-box" });
  const travelNote = h("div", { class: "travel-note", id: "travel-note", hidden: true });

  const bar = travelBar({ onChange: (sequence) => showAt(sequence) });
  const log = timeline(timelineBox, { onPick: (sequence) => {
    bar.show(sequence);
    showAt(sequence);
  } });

  replace(root,
    h("div", { class: "crumbs" }, h("a", { href: "#/executions" }, "← Executions")),
    h("div", { class: "page-head" },
      h("div", { class: "title-row" }, title, statusSlot, liveSlot),
      h("div", { class: "row actions" }, buttons.pause, buttons.resume, buttons.cancel, buttons.retry,
        h("span", { class: "sep" }), buttons.replay,
        h("label", { class: "small", title: "Also re-run every handler with the recorded time and randomness" }, strict, " strict"))),
    facts, familySlot, notices, signalsSlot, replaySlot,
    h("div", { class: "exec-grid" },
      h("section", { class: "card graph-card" },
        h("div", { class: "card-head" }, h("h2", {}, "Graph"), fitButton(graphBox), bar.element),
        travelNote, graphBox,
        h("div", { class: "legend", "aria-label": "Legend" },
          LEGEND.map((state) => h("span", { class: "legend-item", dataset: { state } }, h("i"), STATUS_LABELS[state])))),
      h("section", { class: "card side-card" }, tabs, side)),
    h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Timeline")), timelineBox));

  // -- what the page shows ------------------------------------------------------------------

  const over = () => TERMINAL.has(fold.status) || (execution && TERMINAL.has(execution.status));

  function graphView() {
    if (travel) {
      const nodes = {};
      for (const [path, run] of Object.entries(travel.state.nodes || {})) {
        const local = travel.fold.nodes[path] || {};
        nodes[path] = { ...run, started_at: local.started_at, ended_at: local.ended_at, failures: local.failures || [] };
      }
      const at = events[travel.sequence];
      const { status } = travel.state;
      return { nodes, edges: travel.fold.edges, now: at ? new Date(at.timestamp) : new Date(), over: TERMINAL.has(status), paused: status === "paused" };
    }
    return { nodes: fold.nodes, edges: fold.edges, now: new Date(), over: over(), paused: fold.status === "paused" };
  }

  function redrawGraph() {
    if (graph) graph.update(graphView());
  }

  function drawHeader() {
    if (!execution) return;
    const status = executionStatus(execution);
    replace(statusSlot, badge(status));
    const live = !TERMINAL.has(execution.status);
    buttons.pause.disabled = !["running", "pending"].includes(execution.status) || Boolean(execution.requested);
    buttons.resume.disabled = execution.status !== "paused" || Boolean(execution.requested);
    buttons.cancel.disabled = !live || execution.requested === "cancel";
    buttons.replay.disabled = execution.last_sequence < 0;
    buttons.retry.hidden = execution.status !== "failed";
    buttons.retry.disabled = execution.last_sequence < 0;
    const ended = execution.completed_at;
    replace(facts,
      fact("Workflow", h("a", { href: href(["workflows", execution.workflow], { v: execution.version }) },
        `${execution.workflow} v${execution.version}`), "fact-workflow"),
      fact("Created", timeEl(execution.created_at)),
      fact("Started", timeEl(execution.started_at)),
      fact("Finished", timeEl(ended)),
      fact("Duration", execution.started_at ? duration(between(execution.started_at, ended)) : "not started", "fact-duration"),
      fact("Events", String(execution.last_sequence + 1), "fact-events"),
      fact("Clock", execution.virtual_time ? "virtual" : "real"),
      fact("Seed", execution.seed === null ? "—" : String(execution.seed)),
      fact("Code version", `${execution.code_version ?? "—"}${execution.versioning === "pinned" ? " (pinned)" : ""}`, "fact-code-version"),
      fact("Queue", h("a", { href: href(["queues"]) }, execution.queue || "default"), "fact-queue"),
      fact("Priority", String(execution.priority ?? 500), "fact-priority"),
      fact("Concurrency key", execution.concurrency_key || "—", "fact-concurrency-key"));
    clear(notices);
    if (execution.waiting_for_code_version) {
      notices.append(h("div", { class: "callout info", id: "waiting-code-version" },
        h("strong", {}, `Waiting for code version ${execution.waiting_for_code_version}: `),
        "the workflow is pinned, so only workers with that code version continue it; ",
        h("code", {}, `cerebelum executions upgrade ${execution.execution_id}`), " moves it to the caller's."));
    }
    if (execution.requested) {
      notices.append(h("div", { class: "callout info", id: "requested" },
        `${execution.requested[0].toUpperCase()}${execution.requested.slice(1)} requested: it takes effect at the runner's next step.`));
    }
    if (execution.error) {
      const e = execution.error;
      const cls = e.kind === "cancelled" ? "warn" : "bad";
      notices.append(h("div", { class: `callout ${cls}`, id: "execution-error" },
        h("strong", {}, execution.status === "paused" ? "Paused: " : e.kind === "cancelled" ? "Cancelled: " : "Failed: "),
        e.message,
        e.node ? h("span", {}, " at ", h("a", { href: "#", onclick: (ev) => {
          ev.preventDefault();
          select(e.node);
        } }, e.node)) : null,
        e.attempt ? ` (attempt ${e.attempt})` : "", h("span", { class: "muted" }, ` · ${e.kind}`),
        tracebackView(e, "execution-traceback")));
    }
  }

  function drawTabs() {
    const names = [["overview", "Overview"], ["node", selected ? `Node ${selected}` : "Node"], ["input", "Input"],
      ["output", execution && execution.status === "failed" ? "Error" : "Output"], ["state", travel ? `State @${travel.sequence}` : "State"]];
    replace(tabs, names.map(([key, label]) => h("button", {
      type: "button", role: "tab", class: ["tab", tab === key && "on"], "aria-selected": String(tab === key), dataset: { tab: key },
      disabled: key === "node" && !selected,
      onclick: () => {
        tab = key;
        drawSide();
      },
    }, label)));
  }

  function nodeDetails(path) {
    const nodeSpec = spec ? specFor(spec.byPath, path) : null;
    const view = graphView();
    const run = view.nodes[path];
    const state = nodeState(run, view.now, view.over, view.paused);
    const parts = [
      h("div", { class: "node-title" }, h("h3", { class: "mono", id: "node-path" }, path), badge(state)),
      nodeSpec ? h("p", { class: "muted" }, kindLine(nodeSpec)) : null,
      nodeSpec && nodeSpec.description ? h("p", {}, nodeSpec.description) : null,
    ];
    const rows = [];
    if (run) {
      if (run.run > 1) rows.push(["Run", String(run.run)]);
      if (run.attempt > 1 || (nodeSpec && nodeSpec.type === "function")) rows.push(["Attempt", String(run.attempt)]);
      rows.push(["Started", timeEl(run.started_at)]);
      if (run.ended_at) rows.push(["Ended", timeEl(run.ended_at)]);
      if (run.started_at) rows.push(["Took", duration(between(run.started_at, run.ended_at || view.now.toISOString()))]);
      if (run.not_before && run.status === "running") rows.push(["Next attempt", timeEl(run.not_before)]);
      if (run.fires_at) rows.push(["Timer fires", h("span", {}, timeEl(run.fires_at), run.fired ? " (fired)" : "")]);
      if (run.waits_for) rows.push(["Waits for", h("span", { class: "mono" }, `signal ${run.waits_for}`)]);
      if (run.child) {
        const known = kids.find((c) => c.execution_id === run.child);
        rows.push(["Child", h("span", {}, h("a", { href: href(["executions", run.child]), class: "mono child-link" }, run.child),
          known ? h("span", {}, " ", badge(executionStatus(known))) : "")]);
      }
    } else {
      rows.push(["State", view.over ? "this node did not run" : "not started yet"]);
    }
    parts.push(h("dl", { class: "kv" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));

    // The children of a composite node, each with its state.
    let children = [];
    if (nodeSpec && nodeSpec.type === "map") children = itemPaths(path, run);
    else if (nodeSpec && nodeSpec.children.length && nodeSpec.type !== "map") children = nodeSpec.children.map((c) => c.path);
    if (children.length) {
      const items = run && Array.isArray(run.items) ? run.items : null;
      parts.push(h("h4", {}, nodeSpec.type === "map" ? `Items (${children.length})` : nodeSpec.type === "parallel" ? "Branches" : "Steps"),
        h("table", { class: "list compact", id: "children" }, h("tbody", {}, children.map((p, i) => h("tr", {
          class: "clickable", dataset: { path: p }, onclick: () => select(p),
        }, h("td", { class: "mono" }, p), h("td", {}, badge(nodeState(view.nodes[p], view.now, view.over, view.paused))),
        h("td", { class: "muted small" }, items ? toJson(items[i]).slice(0, 60) : ""))))));
    }
    for (const failure of (run && run.failures) || []) {
      parts.push(h("div", { class: "callout warn small" }, `Attempt ${failure.attempt} failed at ${clock(failure.at)}: `,
        `${failure.error.kind}: ${failure.error.message}`, tracebackView(failure.error)));
    }
    if (run && run.error) {
      parts.push(h("div", { class: "callout bad" }, h("strong", {}, `${run.error.kind}: `), run.error.message,
        tracebackView(run.error, "node-traceback")));
    }
    if (run && run.status === "completed") parts.push(h("h4", {}, "Output"), jsonView(run.output));
    parts.push(h("div", { class: "row" }, h("button", { type: "button", class: "ghost small", id: "node-events", onclick: () => {
      log.filterNode(path);
      timelineBox.scrollIntoView({ behavior: "smooth", block: "start" });
    } }, "Show its events in the timeline")));
    return parts;
  }

  /** The innermost active nodes (`notify.sms[0]`, not also `notify` and `notify.sms`). */
  function activePaths(view) {
    const active = Object.keys(view.nodes)
      .filter((p) => ["running", "retrying", "timer", "paused"].includes(nodeState(view.nodes[p], view.now, view.over, view.paused)));
    return active.filter((p) => !active.some((q) => q !== p && (q.startsWith(`${p}.`) || q.startsWith(`${p}[`))));
  }

  function overview() {
    if (!execution) return [];
    const view = graphView();
    const counts = {};
    for (const node of spec ? spec.nodes : []) {
      const state = nodeState(view.nodes[node.path], view.now, view.over, view.paused);
      counts[state] = (counts[state] || 0) + 1;
    }
    const running = activePaths(view);
    return [
      h("p", {}, `${execution.workflow} v${execution.version} is `, badge(executionStatus(execution)),
        TERMINAL.has(execution.status) ? "" : running.length ? ` at ${running.join(", ")}` : ""),
      spec ? h("p", { class: "muted" }, `Top-level nodes: `, Object.entries(counts).map(([s, n]) => `${n} ${STATUS_LABELS[s] || s}`).join(" · ")) : null,
      h("p", { class: "muted small" }, "Click a node in the graph for its details, or a timeline row to see the execution as it was then."),
      execution.status === "completed" ? [h("h4", {}, "Output"), jsonView(execution.output)] : null,
    ];
  }

  function drawSide() {
    drawTabs();
    let content;
    if (tab === "node" && selected) content = nodeDetails(selected);
    else if (tab === "input") content = [h("h4", {}, "Input"), jsonView(execution ? execution.input : null)];
    else if (tab === "output") {
      if (!execution) content = [];
      else if (execution.status === "completed") content = [h("h4", {}, "Output"), jsonView(execution.output)];
      else if (execution.error) content = [h("h4", {}, "Error"), jsonView(execution.error)];
      else content = [h("p", { class: "muted" }, "No output yet: the execution has not finished.")];
    } else if (tab === "state") content = stateTab();
    else content = overview();
    replace(side, content);
  }

  let latestState = null;
  function stateTab() {
    const state = travel ? travel.state : latestState;
    if (!state) {
      executions.stateAt(id, undefined, controller.signal).then((s) => {
        latestState = s;
        if (tab === "state" && !travel) drawSide();
      }).catch(() => {});
      return [h("p", { class: "muted" }, "Loading…")];
    }
    const rows = [
      ["After event", String(state.sequence)], ["Status", badge(state.status)],
      ["Current node", state.position.current || "—"], ["Running", state.position.running.join(", ") || "—"],
    ];
    for (const t of state.pending_timers || []) rows.push([`Timer ${t.node_id}`, timeEl(t.fires_at)]);
    for (const r of state.pending_retries || []) rows.push([`Retry ${r.node_id}`, h("span", {}, `attempt ${r.attempt} at `, timeEl(r.due_at))]);
    for (const w of state.waiting_for_signals || []) rows.push([`Waiting ${w.node_id}`, `for signal ${w.signal}`]);
    const buffered = (state.signals || []).filter((s) => s.consumed_by === null);
    if (buffered.length) rows.push(["Signals kept", buffered.map((s) => `${s.name} #${s.sequence}`).join(", ")]);
    if (state.deadline) rows.push(["Deadline", timeEl(state.deadline)]);
    return [
      h("p", { class: "muted small" }, travel ? "The state as it was after the chosen event (GET /state?at=N)." : "The latest state (GET /state)."),
      h("dl", { class: "kv", id: "state-kv" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("h4", {}, "data (what the next node receives)"), jsonView(state.data, { openDepth: 1 }),
      h("h4", {}, "results"), jsonView(state.results, { openDepth: 1 }),
    ];
  }

  function select(path) {
    selected = path;
    if (graph) graph.select(path);
    tab = path ? "node" : "overview";
    drawSide();
  }

  // -- time travel ----------------------------------------------------------------------------

  let travelRequest = null;
  const fetchAt = debounce(async (sequence) => {
    travelRequest?.abort();
    travelRequest = new AbortController();
    try {
      const state = await executions.stateAt(id, sequence, travelRequest.signal);
      if (bar.live) return;
      travel = { sequence, state, fold: foldEvents(events, sequence) };
      travelNote.hidden = false;
      const at = events[sequence];
      replace(travelNote, `Showing the execution as it was after event ${sequence}`,
        at ? ` (${at.type}${at.node_id ? ` ${at.node_id}` : ""}, ${clock(at.timestamp)})` : "", ". ",
        h("a", { href: "#", onclick: (e) => {
          e.preventDefault();
          bar.show(null);
          showAt(null);
        } }, "Back to live"), " ",
        h("button", { type: "button", class: "small", id: "btn-fork-here", title: "A new execution whose log is this one's up to here (moved back to the nearest settled point), run with the handlers loaded now", onclick: () => fork(sequence) }, "Fork from here"));
      graphBox.classList.add("past");
      redrawGraph();
      if (tab !== "node") tab = "state";
      drawSide();
    } catch (err) {
      if (err.name !== "AbortError") replace(travelNote, errorBox(err));
    }
  }, 80);

  function showAt(sequence) {
    log.pick(sequence);
    if (sequence === null) {
      travelRequest?.abort();
      travel = null;
      travelNote.hidden = true;
      graphBox.classList.remove("past");
      redrawGraph();
      if (tab === "state") latestState = null;
      drawSide();
      return;
    }
    fetchAt(sequence);
  }

  // -- steering -------------------------------------------------------------------------------

  async function refreshExecution() {
    try {
      execution = await executions.get(id, controller.signal);
      drawHeader();
      if (!travel && tab !== "node") drawSide();
      else drawTabs();
    } catch (err) {
      if (err.name !== "AbortError") console.warn(err);
    }
  }

  async function control(action) {
    Object.values(buttons).forEach((b) => { b.disabled = true; });
    try {
      execution = await executions.control(id, action);
    } catch (err) {
      notices.prepend(errorBox(err, `Could not ${action}: `));
    }
    drawHeader();
    ensureFollowing();
  }

  async function fork(at) {
    try {
      const forked = await executions.fork(id, at);
      location.hash = href(["executions", forked.execution_id]);
    } catch (err) {
      notices.prepend(errorBox(err, "Could not fork: "));
    }
  }

  /** A form per signal the execution waits for (human approval in the browser). */
  function drawSignalForms() {
    const waits = over() ? [] : [...new Set(Object.values(fold.nodes)
      .filter((run) => run.status === "running" && run.waits_for).map((run) => run.waits_for))];
    const key = waits.join("\n");
    if (key === shownWaits) return; // never wipe a payload being typed
    shownWaits = key;
    replace(signalsSlot, waits.map((name) => {
      const payload = h("textarea", { class: "signal-payload", "aria-label": `Payload of signal ${name}`, dataset: { signal: name } }, "null");
      const result = h("span", { class: "small muted" });
      const send = async () => {
        let value;
        try {
          value = JSON.parse(payload.value || "null");
        } catch (err) {
          replace(result, `The payload is not JSON: ${err.message}`);
          return;
        }
        try {
          const answer = await executions.signal(id, name, value);
          replace(result, `signal ${name} delivered as event ${answer.sequence}`);
        } catch (err) {
          replace(result, errorBox(err, "Could not send: "));
        }
      };
      return h("div", { class: "callout info signal-box", dataset: { signal: name } },
        h("strong", {}, `Waiting for signal ${name}. `), "Send it with a JSON payload (approve or reject is just a payload):",
        h("div", { class: "signal-form" }, payload,
          h("button", { type: "button", class: "btn-signal", dataset: { signal: name }, onclick: send }, `Send ${name}`), result));
    }));
  }

  /** Links both ways: the parent that started it, the children it started (a `workflow` node). */
  async function drawFamily() {
    if (!execution) return;
    try {
      kids = (await executions.list({ parent: id, limit: 100 }, controller.signal)).items;
    } catch (err) {
      if (err.name === "AbortError") return;
      kids = [];
    }
    const parts = [];
    if (execution.parent) {
      parts.push(h("div", { id: "parent-link" }, "Started by ",
        h("a", { href: href(["executions", execution.parent.execution_id]), class: "mono" }, execution.parent.execution_id),
        ` (node ${execution.parent.node})`));
    }
    if (kids.length) {
      parts.push(h("div", { id: "children" }, `Children (${kids.length}): `,
        kids.slice().sort((a, b) => (a.parent?.node || "").localeCompare(b.parent?.node || "")).map((c) => h("span", { class: "child" },
          h("a", { href: href(["executions", c.execution_id]), class: "mono", title: c.execution_id }, c.parent?.node || c.execution_id),
          " ", badge(executionStatus(c)), " "))));
    }
    replace(familySlot, parts.length ? h("div", { class: "callout info small" }, parts) : []);
  }

  function askCancel() {
    const confirmBox = h("div", { class: "callout warn", id: "confirm-cancel" },
      "Cancel this execution? Running nodes are cancelled and it ends as failed (cancelled). ",
      h("button", { type: "button", class: "danger small", id: "btn-cancel-confirm", onclick: () => {
        confirmBox.remove();
        control("cancel");
      } }, "Yes, cancel it"), " ",
      h("button", { type: "button", class: "ghost small", onclick: () => confirmBox.remove() }, "Keep it running"));
    notices.querySelector("#confirm-cancel")?.remove();
    notices.prepend(confirmBox);
  }

  async function replay() {
    buttons.replay.disabled = true;
    replace(replaySlot, h("div", { class: "callout info" }, "Replaying…"));
    try {
      const verdict = await executions.replay(id, strict.checked);
      const mode = verdict.strict ? "strict: every handler re-run with the recorded values" : "decisions only";
      if (verdict.identical) {
        replace(replaySlot, h("div", { class: "callout ok", id: "replay-verdict", dataset: { identical: "true" } },
          h("strong", {}, "Replay identical. "), `${verdict.events_checked} events checked from event ${verdict.from_sequence} (${mode}).`));
      } else {
        const d = verdict.divergence || {};
        replace(replaySlot, h("div", { class: "callout bad", id: "replay-verdict", dataset: { identical: "false" } },
          h("strong", {}, "Replay diverges"), d.sequence !== null && d.sequence !== undefined ? ` at event ${d.sequence}` : "",
          d.node_id ? ` (node ${d.node_id})` : "", `: ${d.reason}. `, h("span", { class: "muted" }, `(${mode})`),
          h("div", { class: "diverge" },
            h("div", {}, h("h4", {}, "Recorded in the log"), jsonView(d.recorded)),
            h("div", {}, h("h4", {}, "What the replay did"), jsonView(d.replayed)))));
        if (d.sequence !== null && d.sequence !== undefined && events[d.sequence]) {
          bar.show(d.sequence);
          showAt(d.sequence);
        }
      }
    } catch (err) {
      replace(replaySlot, errorBox(err, "Replay failed: "));
    }
    buttons.replay.disabled = false;
  }

  // -- live events ----------------------------------------------------------------------------

  function onEvent(event) {
    if (event.sequence !== events.length) {
      // A gap (should not happen: the stream resumes after the last id): reload the log.
      if (event.sequence > events.length) reloadEvents();
      return;
    }
    events.push(event);
    applyEvent(fold, event);
    log.add([event]);
    bar.grow(event);
    if (loading) return; // the first load draws once at the end
    drawSignalForms();
    if (!travel) {
      redrawGraph();
      if (event.type === "node_started" && !/[.[]/.test(event.node_id)) keepInView(event.node_id);
    }
    if (event.node_id === null) refreshExecution();
    else if (execution) {
      execution.last_sequence = event.sequence;
      const cell = document.querySelector("#fact-events .fact-value");
      if (cell) cell.textContent = String(event.sequence + 1);
    }
    if (!travel && (tab === "overview" || (tab === "node" && selected && event.node_id && relates(event.node_id, selected)))) drawSide();
    if (tab === "state" && !travel) latestState = null;
  }

  /** Scrolls the graph (not the page) so that a node that just started is in sight. */
  function keepInView(path) {
    const node = graphBox.querySelector(`.gnode[data-path="${CSS.escape(path)}"]`);
    if (!node) return;
    const box = graphBox.getBoundingClientRect();
    const at = node.getBoundingClientRect();
    if (at.top < box.top || at.bottom > box.bottom) graphBox.scrollTop += at.top - box.top - box.height / 3;
  }

  const relates = (a, b) => a === b || a.startsWith(`${b}.`) || a.startsWith(`${b}[`) || b.startsWith(`${a}.`) || b.startsWith(`${a}[`);

  /** Every event from `from` on, page after page (the server answers at most `limit` per page, with `next_from`). */
  async function loadEvents(from) {
    let next = from;
    while (next !== null && next !== undefined) {
      const page = await executions.events(id, next, controller.signal);
      for (const event of page.items) onEvent(event);
      if (page.next_from !== null && page.next_from !== undefined && page.next_from <= next) break; // never loop in place
      next = page.next_from;
    }
  }

  async function reloadEvents() {
    await loadEvents(events.length);
  }

  function ensureFollowing() {
    if (execution && TERMINAL.has(fold.status) && !TERMINAL.has(execution.status)) {
      refreshExecution(); // it ended between reading the execution and reading its events
      return;
    }
    if (stream || !execution || TERMINAL.has(fold.status) || TERMINAL.has(execution.status)) return;
    stream = followExecution(id, {
      after: events.length - 1,
      onEvent,
      onStatus: (status) => {
        liveSlot.textContent = LIVE_LABELS[status] || status;
        liveSlot.dataset.status = status;
        if (status === "ended" || status === "unauthorized") {
          stream = null;
          refreshExecution();
        }
      },
    });
    cleanups.push(() => stream?.close());
  }

  // -- loading --------------------------------------------------------------------------------

  async function start() {
    try {
      execution = await executions.get(id, controller.signal);
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(root, h("div", { class: "crumbs" }, h("a", { href: "#/executions" }, "← Executions")),
        err instanceof ApiError && err.status === 404
          ? h("div", { class: "empty" }, h("h1", {}, "No such execution"), h("p", { class: "mono" }, id))
          : errorBox(err));
      return;
    }
    drawHeader();
    drawFamily();
    try {
      const stored = await workflows.version(execution.workflow, execution.version, controller.signal);
      spec = readDefinition(stored.definition);
      graph = drawGraph(graphBox, spec, { onSelect: (path) => select(path) });
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(graphBox, errorBox(err, "The workflow definition cannot be loaded: "));
    }
    await loadEvents(0);
    loading = false;
    redrawGraph();
    drawSignalForms();
    const current = activePaths(graphView()).map((p) => p.split(/[.[]/)[0]).pop();
    if (current) keepInView(current);
    drawSide();
    if (TERMINAL.has(execution.status)) {
      liveSlot.textContent = LIVE_LABELS.ended;
      liveSlot.dataset.status = "ended";
    }
    ensureFollowing();
  }

  start().catch((err) => {
    if (err.name !== "AbortError") notices.append(errorBox(err));
  });
  // Running nodes show how long they have run; a paused or queued execution may change without events.
  cleanups.push(poll(async () => {
    if (!travel && !over()) redrawGraph();
    if (execution && (execution.requested || execution.status === "pending")) await refreshExecution();
    if (!stream && execution && !TERMINAL.has(execution.status)) ensureFollowing();
    if (!over() && Object.values(fold.nodes).some((run) => run.child)) await drawFamily(); // children's progress
  }, 1000));
  return () => cleanups.forEach((fn) => fn());
}
