// One message in a chat: a bubble (mine on the right) with its text or media, time and ticks;
// a group event as a centred line.
import { html } from "./html.js";
import { shortTime, eventText } from "./format.js";
import { Ticks } from "./ticks.js";
import { MediaView } from "./media-view.js";

/** Message `m` of a chat; `showSender` in groups. */
export function Message({ store, m, showSender }) {
  if (m.type === "event") {
    return html`<div class="event" data-testid="group-event" data-id=${m.id}>
      ${eventText(m, (u) => (u === store.me ? "you" : store.displayName(u)))}
    </div>`;
  }
  const mine = m.from === store.me;
  return html`
    <div class=${`msg ${mine ? "mine" : "theirs"}`} data-testid="message" data-id=${m.pending ? "" : m.id}
      data-from=${m.from} data-status=${mine ? m.status : ""}>
      ${showSender && !mine && html`<div class="sender">${store.displayName(m.from)}</div>`}
      ${m.media && html`<${MediaView} store=${store} m=${m} />`}
      ${m.text && html`<div class="text" data-testid="message-text">${m.text}</div>`}
      <div class="meta">
        <time>${shortTime(m.ts)}</time>
        ${mine && html`<${Ticks} status=${m.status} error=${m.error} />`}
      </div>
    </div>
  `;
}
