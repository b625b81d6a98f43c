// The console's entry point: header, theme, token dialog and the routes.

import { getToken, tokenDialog } from "./token.js";
import { setupTheme } from "./theme.js";
import { startRouter } from "./router.js";
import { h, replace } from "./dom.js";
import { executionsView } from "./views/executions.js";
import { executionView } from "./views/execution.js";
import { workflowsView } from "./views/workflows.js";
import { workflowView } from "./views/workflow.js";
import { schedulesView } from "./views/schedules.js";
import { queuesView } from "./views/queues.js";

const main = document.getElementById("main");
setupTheme(document.getElementById("theme"));

const tokenButton = document.getElementById("token-button");
const showToken = () => {
  tokenButton.textContent = getToken() ? "Token ✓" : "Token";
  tokenButton.classList.toggle("on", Boolean(getToken()));
};
showToken();
window.addEventListener("cerebelum:token-changed", showToken);

let router = null;
const dialog = tokenDialog(() => router && router.refresh());
document.body.append(dialog.element);
tokenButton.addEventListener("click", () => dialog.open(""));
window.addEventListener("cerebelum:ask-token", () => dialog.open("This server needs a bearer token."));
window.addEventListener("cerebelum:unauthorized", (event) => {
  dialog.open(event.detail.hadToken ? "The server refused this token: enter a valid one." : "This server needs a bearer token.");
});

function markNav() {
  const section = location.hash.replace(/^#\/?/, "").split(/[/?]/)[0] || "executions";
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("on", link.dataset.nav === section);
  }
}
window.addEventListener("hashchange", markNav);
markNav();

const notFound = (root) => {
  replace(root, h("div", { class: "empty" }, h("h1", {}, "Nothing here"), h("a", { href: "#/executions" }, "Go to the executions")));
};

router = startRouter(main, [
  [[], executionsView],
  [["executions"], executionsView],
  [["executions", ":id"], executionView],
  [["workflows"], workflowsView],
  [["workflows", ":name"], workflowView],
  [["schedules"], schedulesView],
  [["queues"], queuesView],
], notFound);
