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

/** Ticks for `status`; `counts` of a group message tell how many members read it. */
export function Ticks({ status, error, counts }) {
  const s = status in TITLE ? status : "sent";
  let title = error ? `${TITLE[s]}: ${error}` : TITLE[s];
  if (counts && (s === "sent" || s === "delivered")) {
    title += ` — read by ${counts.read} of ${counts.members}`;
  }
  return html`<span class=${`ticks ${s}`} data-testid="ticks" data-status=${s}
    title=${title}>${GLYPH[s] || html`<${Icon} name=${s === "failed" ? "alert" : "clock"} size="1.1em" />`}</span>`;
}
