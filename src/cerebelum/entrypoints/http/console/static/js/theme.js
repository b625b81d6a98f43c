// Light or dark: follows the system (prefers-color-scheme) unless the user picks one.

const KEY = "cerebelum.theme";
const ORDER = ["auto", "light", "dark"];
const LABELS = { auto: "◐ Auto", light: "☀ Light", dark: "☾ Dark" };

function apply(choice) {
  if (choice === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = choice;
}

/** Applies the saved choice and wires `button` to cycle auto → light → dark. */
export function setupTheme(button) {
  let choice = localStorage.getItem(KEY) || "auto";
  if (!ORDER.includes(choice)) choice = "auto";
  const show = () => {
    button.textContent = LABELS[choice];
    button.title = `Theme: ${choice} (click to change)`;
  };
  apply(choice);
  show();
  button.addEventListener("click", () => {
    choice = ORDER[(ORDER.indexOf(choice) + 1) % ORDER.length];
    localStorage.setItem(KEY, choice);
    apply(choice);
    show();
  });
}
