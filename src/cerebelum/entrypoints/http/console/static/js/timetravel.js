// The time-travel bar: a slider over the log's sequences, and a way back to live.

import { h } from "./dom.js";
import { clock } from "./format.js";

/** `onChange(sequence | null)`: null means "live" (follow the latest event). */
export function travelBar({ onChange }) {
  let last = -1;
  let live = true;
  const slider = h("input", {
    type: "range", min: 0, max: 0, value: 0, step: 1, id: "travel-slider", "aria-label": "Sequence to show",
  });
  const label = h("span", { class: "travel-label", id: "travel-label" }, "live");
  const liveButton = h("button", { type: "button", class: "ghost small", id: "travel-live", disabled: true }, "Back to live");
  const bar = h("div", { class: "travel", id: "travel" },
    h("span", { class: "travel-title", title: "Drag to see the execution as it was after any event" }, "Time travel"),
    slider, label, liveButton);
  const timestamps = new Map();

  function render() {
    slider.max = String(Math.max(last, 0));
    slider.disabled = last < 0;
    if (live) slider.value = String(Math.max(last, 0));
    const at = Number(slider.value);
    label.textContent = live ? `live · event ${last < 0 ? "—" : last}` : `after event ${at} of ${last} · ${clock(timestamps.get(at))}`;
    liveButton.disabled = live;
    bar.classList.toggle("past", !live);
  }

  slider.addEventListener("input", () => {
    live = false;
    render();
    onChange(Number(slider.value));
  });
  liveButton.addEventListener("click", () => {
    live = true;
    render();
    onChange(null);
  });

  return {
    element: bar,
    /** A new event was logged. */
    grow(event) {
      last = Math.max(last, event.sequence);
      timestamps.set(event.sequence, event.timestamp);
      render();
    },
    /** Jump to `sequence` from elsewhere (a timeline row). */
    show(sequence) {
      live = sequence === null;
      if (!live) slider.value = String(sequence);
      render();
    },
    get live() {
      return live;
    },
  };
}
