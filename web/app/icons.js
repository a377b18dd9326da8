// Line icons drawn inline (no icon font, no emoji font needed), sized by the text around them.
import { html } from "./html.js";

const PATHS = {
  pencil: "M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4",
  people: "M3 20c0-3.3 2.7-6 6-6s6 2.7 6 6M9 11a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM16 14c2.8 0 5 2.2 5 5M17 11.5a2.5 2.5 0 1 0 0-5",
  info: "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 11v6M12 7.5v.5",
  clip: "M20 11.5l-8.5 8.5a5 5 0 0 1-7-7L13 4.5a3.5 3.5 0 0 1 5 5l-8.5 8.5a2 2 0 0 1-3-3L14 7.5",
  mic: "M12 14a3 3 0 0 0 3-3V6a3 3 0 0 0-6 0v5a3 3 0 0 0 3 3zM5 11a7 7 0 0 0 14 0M12 18v3",
  back: "M15 5l-7 7 7 7",
  close: "M6 6l12 12M18 6L6 18",
  clock: "M12 20a8 8 0 1 0 0-16 8 8 0 0 0 0 16zM12 8v4l3 2",
  file: "M6 3h8l4 4v14H6zM14 3v4h4",
  alert: "M12 3l9.5 17h-19zM12 10v4M12 17v.5",
  send: "M4 12l16-8-6 16-2-7z",
};

/** The icon `name`. */
export function Icon({ name, size = "1.25em" }) {
  return html`<svg class="icon" width=${size} height=${size} viewBox="0 0 24 24" fill="none"
    stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"
    aria-hidden="true"><path d=${PATHS[name]} /></svg>`;
}
