// The chat on screen: its header (who, online / last seen / typing, group members), the
// messages with older history loaded on scrolling up, and the composer.
import { useRef, useLayoutEffect } from "preact/hooks";
import { html } from "./html.js";
import { Icon } from "./icons.js";
import { Avatar } from "./avatar.js";
import { Message } from "./message.js";
import { Composer } from "./composer.js";
import { lastSeen, dayLabel } from "./format.js";
import { chatOf } from "./keys.js";

/** How close to the top (px) scrolling starts loading older messages. */
const LOAD_MARGIN = 120;

/** The subtitle: who is typing, else presence (1:1) or the member count (groups). */
function subtitle(store, key) {
  const typists = store.typists(key);
  if (typists.length) {
    const names = key.startsWith("g:") ? `${typists.map((u) => store.displayName(u)).join(", ")} ` : "";
    return { text: `${names}typing…`, typing: true };
  }
  const { with: peer, group } = chatOf(key);
  if (peer) return { text: lastSeen(store.presence.get(peer)) };
  const info = store.groups.get(group);
  if (store.conversations.get(key)?.left) return { text: "you are not a member" };
  return { text: info ? `${info.members.length} members` : "" };
}

/** The messages with a line above each day's first one: one flat, keyed list, so that older
 * messages put above do not re-create the ones shown. */
function rows(store, messages, showSender) {
  const out = [];
  let lastDay = null;
  for (const m of messages) {
    const day = dayLabel(m.ts);
    if (day !== lastDay) out.push(html`<div class="day" key=${`day-${day}`} data-testid="day">${day}</div>`);
    lastDay = day;
    out.push(html`<${Message} key=${m.id} store=${store} m=${m} showSender=${showSender} />`);
  }
  return out;
}

/** Chat `chatKey`. */
export function ChatView({ store, chatKey }) {
  const chat = store.chat(chatKey);
  const conv = store.conversations.get(chatKey);
  const { with: peer, group } = chatOf(chatKey);
  const sub = subtitle(store, chatKey);
  const list = useRef(null);
  const seen = useRef({ key: null, first: null, last: null, height: 0, top: 0 });

  // Keeps the view where the reader is: at the bottom for new messages (when they were there,
  // or sent them), and at the same message when older ones are put above.
  useLayoutEffect(() => {
    const el = list.current;
    if (!el) return;
    const s = seen.current;
    const msgs = chat.messages;
    const first = msgs[0]?.id;
    const last = msgs[msgs.length - 1];
    if (s.key !== chatKey) {
      el.scrollTop = el.scrollHeight;
    } else if (first !== s.first && s.first && last?.id === s.last) {
      el.scrollTop = el.scrollHeight - s.height + s.top;
    } else if (last?.id !== s.last) {
      const nearBottom = s.height - s.top - el.clientHeight < 150;
      if (nearBottom || last?.from === store.me) el.scrollTop = el.scrollHeight;
    }
    Object.assign(s, { key: chatKey, first, last: last?.id, height: el.scrollHeight, top: el.scrollTop });
    // A first page shorter than the screen cannot be scrolled: load more at once.
    if (chat.loaded && chat.more && !chat.loading && !chat.error && el.scrollHeight <= el.clientHeight) {
      store.loadHistory(chatKey, true);
    }
  });

  function scrolled(e) {
    const el = e.currentTarget;
    Object.assign(seen.current, { height: el.scrollHeight, top: el.scrollTop });
    if (el.scrollTop < LOAD_MARGIN && chat.more && chat.loaded && !chat.loading && !chat.error) {
      store.loadHistory(chatKey, true);
    }
  }

  return html`
    <section class="chat" data-testid="chat-view" data-chat=${chatKey}>
      <header class="bar">
        <button class="icon-button back" data-testid="chat-back" title="Back" onClick=${() => store.openChat(null)}><${Icon} name="back" /></button>
        <${Avatar} store=${store} user=${peer} group=${group} name=${store.chatTitle(chatKey)}
          online=${peer && store.presence.get(peer)?.status === "online"} size=${36} />
        <button class="title ghost" onClick=${() => group && store.showPanel("group")}
          data-testid="chat-header">
          <span class="name" data-testid="chat-title">${store.chatTitle(chatKey)}</span>
          <span class=${`sub ${sub.typing ? "typing" : ""}`} data-testid="chat-status">${sub.text}</span>
        </button>
        ${group && html`<button class="icon-button" data-testid="group-info-button" title="Group info"
          onClick=${() => store.showPanel(store.panel === "group" ? null : "group")}><${Icon} name="info" /></button>`}
      </header>
      <div class="messages" ref=${list} onScroll=${scrolled} data-testid="messages">
        ${chat.loading && html`<div class="loading" data-testid="history-loading">Loading…</div>`}
        ${chat.loaded && !chat.more && html`<div class="start muted" data-testid="history-start">The start of the conversation</div>`}
        ${chat.error && html`<div class="error history-error" data-testid="history-error">
          ${chat.error}
          <button class="ghost small" onClick=${() => store.loadHistory(chatKey, chat.loaded)}>Retry</button>
        </div>`}
        ${rows(store, chat.messages, Boolean(group))}
      </div>
      ${conv?.left
        ? html`<div class="notice" data-testid="group-left-notice">You are no longer a member of this group.</div>`
        : html`<${Composer} store=${store} chatKey=${chatKey} />`}
    </section>
  `;
}
