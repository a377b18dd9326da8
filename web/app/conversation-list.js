// The conversations, newest first: picture and presence, name, the last message and its time,
// the unread count; "typing…" instead of the last message while someone types.
import { html } from "./html.js";
import { Avatar } from "./avatar.js";
import { shortTime, summary, eventText } from "./format.js";
import { Ticks } from "./ticks.js";

function lastLine(store, conv) {
  const typists = store.typists(conv.key);
  if (typists.length) return html`<span class="typing">typing…</span>`;
  const m = conv.last;
  if (!m) return html`<span class="muted">No messages yet</span>`;
  if (m.type === "event") return eventText(m, (u) => (u === store.me ? "you" : store.displayName(u)));
  const mine = m.from === store.me;
  const who = conv.group && !mine ? `${store.displayName(m.from)}: ` : "";
  return html`${mine && html`<${Ticks} status=${m.status} />`} ${who}${summary(m)}`;
}

/** The list; a click opens the chat. */
export function ConversationList({ store }) {
  const list = store.sortedConversations();
  if (!list.length) {
    return html`<div class="empty muted" data-testid="conversations-empty">
      No conversations yet. Start one with the pencil above.
    </div>`;
  }
  return html`
    <ul class="conversations" data-testid="conversations">
      ${list.map((c) => {
        const title = store.chatTitle(c.key);
        return html`
          <li key=${c.key}>
            <button class=${`conv ${c.key === store.open ? "active" : ""}`} data-testid="conversation"
              data-chat=${c.key} onClick=${() => store.openChat(c.key)}>
              <${Avatar} store=${store} user=${c.with} group=${c.group} name=${title}
                online=${c.with && store.presence.get(c.with)?.status === "online"} />
              <span class="conv-main">
                <span class="row">
                  <span class="name" data-testid="conversation-name">${title}</span>
                  <time class="muted" data-testid="conversation-time">${shortTime(c.last?.ts)}</time>
                </span>
                <span class="row">
                  <span class="last" data-testid="conversation-last">${lastLine(store, c)}</span>
                  ${c.unread > 0 && html`<span class="badge" data-testid="conversation-unread">${c.unread}</span>`}
                </span>
              </span>
            </button>
          </li>
        `;
      })}
    </ul>
  `;
}
