// Hash routes (`#/executions/ID`): the server only ever serves `/`, so any link can be reloaded.

/** Parses "#/a/b?x=1" into {parts: ["a", "b"], query: URLSearchParams}. */
export function currentRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = hash.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(search) };
}

export function href(parts, query = {}) {
  const path = parts.map((p) => encodeURIComponent(p)).join("/");
  const search = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const text = search.toString();
  return `#/${path}${text ? `?${text}` : ""}`;
}

/** Changes the query of the current route without adding a history entry or re-rendering. */
export function replaceQuery(query) {
  const { parts } = currentRoute();
  history.replaceState(null, "", href(parts, query));
}

/**
 * Renders the view that matches the hash, and again whenever it changes.
 * routes: [[pattern, view]] where pattern is an array of literals and ":name" holes;
 * a view is (root, {params, query}) => cleanup function (or nothing).
 */
export function startRouter(root, routes, notFound) {
  let cleanup = null;
  function render() {
    if (typeof cleanup === "function") cleanup();
    cleanup = null;
    const { parts, query } = currentRoute();
    for (const [pattern, view] of routes) {
      if (pattern.length !== parts.length) continue;
      const params = {};
      if (pattern.every((p, i) => (p.startsWith(":") ? ((params[p.slice(1)] = parts[i]), true) : p === parts[i]))) {
        cleanup = view(root, { params, query });
        return;
      }
    }
    cleanup = notFound(root, { params: {}, query });
  }
  window.addEventListener("hashchange", render);
  render();
  return { refresh: render };
}
