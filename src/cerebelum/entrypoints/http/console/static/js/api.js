// The HTTP API client: JSON in and out, the bearer token, and the shared error body.

import { parseJson, toJson } from "./json.js";
import { getToken } from "./token.js";

// Relative to the page, so the console also works behind a proxy that adds a path prefix.
export const API_BASE = new URL("api/v1/", document.baseURI);

export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export function apiUrl(path, params = {}) {
  const url = new URL(path.replace(/^\//, ""), API_BASE);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

/** Tells the page that the server wants a (valid) token. */
export function signalUnauthorized(hadToken) {
  window.dispatchEvent(new CustomEvent("cerebelum:unauthorized", { detail: { hadToken } }));
}

async function errorFrom(response) {
  let body = null;
  try {
    body = parseJson(await response.text());
  } catch {
    // not the shared error body (a proxy's page, say)
  }
  const error = body && body.error;
  if (error) return new ApiError(response.status, error.code, error.message, error.details || []);
  return new ApiError(response.status, "http_error", `${response.status} ${response.statusText}`);
}

/** api("/executions", {params: {status: "running"}}) -> the parsed JSON body; throws ApiError. */
export async function api(path, { method = "GET", params, body, raw, contentType, signal } = {}) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (body !== undefined || raw !== undefined) headers["Content-Type"] = contentType || "application/json";
  let response;
  try {
    response = await fetch(apiUrl(path, params), {
      method, headers, signal, body: raw !== undefined ? raw : body === undefined ? undefined : toJson(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "unreachable", "The server does not answer. Is `cerebelum serve` still running?");
  }
  if (response.status === 401) signalUnauthorized(Boolean(headers.Authorization));
  if (!response.ok) throw await errorFrom(response);
  return response.status === 204 ? null : parseJson(await response.text());
}

export const executions = {
  list: (params, signal) => api("/executions", { params, signal }),
  get: (id, signal) => api(`/executions/${encodeURIComponent(id)}`, { signal }),
  events: (id, from = 0, signal) => api(`/executions/${encodeURIComponent(id)}/events`, { params: { from }, signal }),
  stateAt: (id, at, signal) => api(`/executions/${encodeURIComponent(id)}/state`, { params: { at }, signal }),
  start: (workflow, version, input) => api("/executions", { method: "POST", body: { workflow, version, input } }),
  control: (id, action) => api(`/executions/${encodeURIComponent(id)}/${action}`, { method: "POST" }),
  replay: (id, strict) => api(`/executions/${encodeURIComponent(id)}/replay`, { method: "POST", params: { strict } }),
  signal: (id, name, payload) => api(`/executions/${encodeURIComponent(id)}/signals/${encodeURIComponent(name)}`,
    { method: "POST", body: { payload } }),
  fork: (id, at) => api(`/executions/${encodeURIComponent(id)}/fork`, { method: "POST", body: at === undefined ? {} : { at } }),
};

export const queues = {
  list: (signal) => api("/queues", { signal }),
  get: (name, signal) => api(`/queues/${encodeURIComponent(name)}`, { signal }),
};

export const workflows = {
  list: (params, signal) => api("/workflows", { params, signal }),
  versions: (name, signal) => api(`/workflows/${encodeURIComponent(name)}/versions`, { signal }),
  version: (name, version, signal) => api(`/workflows/${encodeURIComponent(name)}/versions/${version}`, { signal }),
  /** `text` is a JSON or YAML definition, sent as it was written. */
  create: (text, yaml) => api("/workflows", { method: "POST", raw: text, contentType: yaml ? "application/yaml" : "application/json" }),
};

export const schedules = {
  list: (signal) => api("/schedules", { signal }),
  get: (name, signal) => api(`/schedules/${encodeURIComponent(name)}`, { signal }),
  /** action: pause, resume or trigger. */
  act: (name, action) => api(`/schedules/${encodeURIComponent(name)}/${action}`, { method: "POST" }),
};
