// Server-Sent Events over fetch: EventSource cannot send an Authorization header.
// Reads `id:`/`event:`/`data:` lines from a ReadableStream and reconnects with
// Last-Event-ID, so no event is lost or repeated across a dropped connection.

import { parseJson } from "./json.js";
import { apiUrl, authHeaders, executions, signalUnauthorized } from "./api.js";

const TERMINAL = new Set(["execution_completed", "execution_failed"]);

/** Yields {id, event, data} messages from a byte stream, as the SSE format defines them. */
export async function* sseMessages(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let message = { data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop(); // the last piece may be a half line
      for (const line of lines) {
        if (line === "") {
          if (message.data.length || message.event) yield { ...message, data: message.data.join("\n") };
          message = { data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // a comment (keep-alive)
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") message.data.push(text);
        else if (field === "id" || field === "event") message[field] = text;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

/**
 * Follows an execution's log from `after + 1` on. `onEvent(event)` gets each
 * log event (the /events shape); `onStatus(s)` gets "connecting", "live",
 * "reconnecting", "ended" or "unauthorized". Returns {close}.
 */
export function followExecution(executionId, { after = -1, onEvent, onStatus = () => {} }) {
  const controller = new AbortController();
  const { signal } = controller;
  let lastId = after;

  async function run() {
    let backoff = 500;
    while (!signal.aborted) {
      let ended = false;
      try {
        onStatus("connecting");
        const headers = { Accept: "text/event-stream", ...authHeaders() };
        if (lastId >= 0) headers["Last-Event-ID"] = String(lastId);
        const url = apiUrl(`/executions/${encodeURIComponent(executionId)}/stream`);
        const response = await fetch(url, { headers, signal, cache: "no-store" });
        if (response.status === 401) {
          signalUnauthorized(Boolean(headers.Authorization));
          onStatus("unauthorized");
          return;
        }
        if (response.status === 404) {
          onStatus("ended");
          return;
        }
        if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
        onStatus("live");
        backoff = 500;
        for await (const message of sseMessages(response.body)) {
          if (!message.data) continue;
          const event = parseJson(message.data);
          if (event.sequence <= lastId) continue; // already seen (a resumed stream never repeats, but be safe)
          lastId = event.sequence;
          onEvent(event);
          if (TERMINAL.has(event.type)) ended = true;
        }
        // The server closes the stream once the execution is terminal and every event was sent;
        // a proxy or a network drop may close it sooner: then resume after the last event seen.
        if (ended) {
          onStatus("ended");
          return;
        }
        const execution = await executions.get(executionId, signal);
        if (["completed", "failed"].includes(execution.status) && lastId >= execution.last_sequence) {
          onStatus("ended");
          return;
        }
      } catch (err) {
        if (signal.aborted) return;
        console.warn("event stream:", err);
      }
      onStatus("reconnecting");
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 10_000);
    }
  }

  run();
  return { close: () => controller.abort() };
}
