// Typing indicators and presence watches: the part of the store that follows who is there and
// who is writing.
import { chatOf } from "./keys.js";

const TYPING_SHOWN_MS = 5000;
const TYPING_SENT_EVERY_MS = 2500;

/** Store methods (mixed into Store): typing sent and shown, presence watched. */
export const liveMethods = {
  /** Tells the others of `key` that I am typing (at most every few seconds). */
  typing(key) {
    const now = Date.now();
    if (now - (this.lastTypingSent.get(key) || 0) < TYPING_SENT_EVERY_MS) return;
    this.lastTypingSent.set(key, now);
    const target = chatOf(key);
    this.client?.typing(target.group ? { group: target.group } : { to: target.with });
  },

  /** Someone is typing: shown for a few seconds unless repeated. */
  typingReceived(t) {
    const key = t.group ? `g:${t.group}` : `u:${t.from}`;
    const who = this.typingIn.get(key) || new Map();
    clearTimeout(who.get(t.from));
    who.set(t.from, setTimeout(() => this.clearTyping(key, t.from), TYPING_SHOWN_MS));
    this.typingIn.set(key, who);
    this.changed();
  },

  /** `user` stopped typing in `key` (a message came, or the time ran out). */
  clearTyping(key, user) {
    const who = this.typingIn.get(key);
    if (!who?.has(user)) return;
    clearTimeout(who.get(user));
    who.delete(user);
    this.changed();
  },

  /** Who is typing in `key`. */
  typists(key) {
    return [...(this.typingIn.get(key)?.keys() || [])];
  },

  /** Follows the presence of users not followed yet (the SDK keeps watches across reconnects). */
  watch(users) {
    const fresh = users.filter((u) => u && !this.watched.has(u));
    if (!fresh.length || !this.client) return;
    fresh.forEach((u) => this.watched.add(u));
    this.client.presence.watch(fresh).catch(() => fresh.forEach((u) => this.watched.delete(u)));
  },
};
