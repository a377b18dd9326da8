// The status of a message I sent: a clock while it waits in the outbox, one tick when the
// server stored it, two when delivered, two blue ones when read (in a group: by every member).
import { html } from "./html.js";
import { Icon } from "./icons.js";

const GLYPH = { sent: "✓", delivered: "✓✓", read: "✓✓" };
const TITLE = {
  pending: "Waiting to be sent",
  sent: "Sent",
  delivered: "Delivered",
  read: "Read",
  failed: "Not sent",
};

/** Ticks for `status`. */
export function Ticks({ status, error }) {
  const s = status in TITLE ? status : "sent";
  return html`<span class=${`ticks ${s}`} data-testid="ticks" data-status=${s}
    title=${error ? `${TITLE[s]}: ${error}` : TITLE[s]}>${GLYPH[s] || html`<${Icon} name=${s === "failed" ? "alert" : "clock"} size="1.1em" />`}</span>`;
}
