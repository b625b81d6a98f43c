// The bearer token: kept in localStorage, asked for when the API answers 401.

import { h } from "./dom.js";

const KEY = "cerebelum.token";

export function getToken() {
  return localStorage.getItem(KEY) || "";
}

export function setToken(token) {
  if (token) localStorage.setItem(KEY, token);
  else localStorage.removeItem(KEY);
  window.dispatchEvent(new CustomEvent("cerebelum:token-changed"));
}

/** The token dialog; `onSaved` re-renders the page with the new token. */
export function tokenDialog(onSaved) {
  const input = h("input", {
    type: "password", name: "token", autocomplete: "off", spellcheck: "false",
    placeholder: "paste a token from CEREBELUM_API_TOKENS", "aria-label": "Bearer token",
  });
  const reason = h("p", { class: "muted", id: "token-reason" });
  const form = h("form", { method: "dialog", class: "token-form" },
    h("h2", {}, "Bearer token"),
    reason,
    h("label", {}, "Token", input),
    h("p", { class: "muted small" },
      "Stored in this browser only (localStorage) and sent as ",
      h("code", {}, "Authorization: Bearer"), " with every API call."),
    h("div", { class: "row end" },
      h("button", { type: "button", class: "ghost", id: "token-forget", onclick: () => { setToken(""); input.value = ""; } },
        "Forget token"),
      h("button", { type: "button", class: "ghost", onclick: () => dialog.close() }, "Close"),
      h("button", { type: "submit", class: "primary", id: "token-save" }, "Save")),
  );
  const dialog = h("dialog", { id: "token-dialog" }, form);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    dialog.close();
    onSaved();
  });
  return {
    element: dialog,
    open(message) {
      reason.textContent = message || "";
      if (dialog.open) return; // a poll's 401 must not wipe what is being typed
      input.value = getToken();
      dialog.showModal();
      input.focus();
    },
  };
}
