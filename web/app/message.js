// One message in a chat: a bubble (mine on the right) with its text or media, time and ticks;
// a group event as a centred line.
import { html } from "./html.js";
import { shortTime, eventText } from "./format.js";
import { Ticks } from "./ticks.js";
import { MediaView } from "./media-view.js";
import { groupCounts } from "./messages.js";

/** Message `m` of a chat; `showSender` in groups. */
export function Message({ store, m, showSender }) {
  if (m.type === "event") {
    return html`<div class="event" data-testid="group-event" data-id=${m.id}>
      ${eventText(m, (u) => (u === store.me ? "you" : store.displayName(u)))}
    </div>`;
  }
  const mine = m.from === store.me;
  const counts = mine && m.receipts ? groupCounts(m.receipts) : null;
  return html`
    <div class=${`msg ${mine ? "mine" : "theirs"}`} data-testid="message" data-id=${m.pending ? "" : m.id}
      data-from=${m.from} data-status=${mine ? m.status : ""} data-read=${counts?.read}>
      ${showSender && !mine && html`<div class="sender">${store.displayName(m.from)}</div>`}
      ${m.media && html`<${MediaView} store=${store} m=${m} />`}
      ${m.text && html`<div class="text" data-testid="message-text">${m.text}</div>`}
      ${m.status === "failed" && html`<div class="error" data-testid="message-error">${m.error}</div>`}
      <div class="meta">
        <time>${shortTime(m.ts)}</time>
        ${mine && html`<${Ticks} status=${m.status} error=${m.error} counts=${counts} />`}
        ${m.status === "failed" && html`<button class="ghost small" data-testid="message-retry"
          title=${m.error} onClick=${() => store.retry(m)}>Retry</button>`}
      </div>
    </div>
  `;
}
