// The client's state and everything that changes it: the connection, conversations, the
// messages of each chat and their receipts here; typing and presence, profiles, media and groups
// in store-*.js, mixed into the same object. Screens read its fields and call its methods;
// every change re-renders through `subscribe`.
import { connect, login } from "../sdk/index.js";
import { chatKey, chatOf, messageKey } from "./keys.js";
import {
  emptyChat, upsert, remove, oldestServerId, pendingId, furthest, groupReceipts, applyGroupReceipt,
} from "./messages.js";
import { loadSession, saveSession, clearSession, serverUrls } from "./session.js";
import { summary } from "./format.js";
import { describe } from "./errors.js";
import { inBackground, notifyMessage, showUnreadInTitle } from "./notify.js";
import { liveMethods } from "./store-live.js";
import { profileMethods } from "./store-profiles.js";
import { mediaMethods } from "./store-media.js";
import { groupMethods } from "./store-groups.js";

const PAGE = 30;
/** A saved token that expires sooner than this is not resumed: the user logs in again instead
 * of being logged out a few minutes later. */
const RESUME_MARGIN_MS = 10 * 60_000;
/** Receipts kept for messages not known yet (oldest dropped beyond). */
const EARLY_RECEIPTS_MAX = 2000;
const EXPIRED = "Your session expired; please log in again.";

/** The app's state; one per page. */
export class Store {
  constructor(urls = serverUrls()) {
    this.urls = urls;
    this.listeners = new Set();
    this.version = 0;
    this.queued = false;
    /** Counts connection attempts: one given up (logout meanwhile) is not taken when it lands. */
    this.attempt = 0;
    /** Aborts the first connection of the attempt under way (see `logout`). */
    this.connecting = null;
    this.reset();
    document.addEventListener("visibilitychange", () => this.visibilityChanged());
  }

  /** Back to the login screen's state. */
  reset() {
    this.revokeLocalMedia?.();
    this.client = null;
    this.me = null;
    /** `login` | `connecting` | `ready` */
    this.phase = "login";
    /** The SDK's connection state. */
    this.conn = "closed";
    this.connError = null;
    this.loginError = null;
    /** The user whose saved login is being resumed (a splash instead of the login form). */
    this.resuming = null;
    this.conversations = new Map();
    this.chats = new Map();
    this.presence = new Map();
    this.typingIn = new Map();
    this.profiles = new Map();
    this.groups = new Map();
    this.mediaInfo = new Map();
    /** Media ids whose `media.download` is under way. */
    this.mediaAsked = new Set();
    this.pendingByCid = new Map();
    this.chatOfId = new Map();
    /** Where the next page of conversations starts (null: none). */
    this.conversationsNext = null;
    this.earlyReceipts = new Map();
    this.watched = new Set();
    this.lastTypingSent = new Map();
    /** The chat on screen (a key) and the panel over it. */
    this.open = null;
    this.panel = null;
  }

  /** Calls `fn` after every change (batched); returns the function that stops it. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Something changed: listeners run once after the current task. */
  changed() {
    this.version++;
    if (this.queued) return;
    this.queued = true;
    queueMicrotask(() => {
      this.queued = false;
      showUnreadInTitle(this.totalUnread());
      for (const fn of this.listeners) fn(this.version);
    });
  }

  // ---- login and connection ----

  /** On page load: connects with the saved token, if any. */
  async resume() {
    const s = loadSession();
    if (!s) return;
    if (s.expires < Date.now() + RESUME_MARGIN_MS) {
      clearSession();
      this.loginError = EXPIRED;
      this.changed();
      return;
    }
    this.resuming = s.user;
    try {
      await this.connectAs(s.user, s.token);
    } catch (e) {
      this.loginError = e.code === "not_authorized" ? EXPIRED : describe(e);
      this.phase = "login";
      this.changed();
    } finally {
      this.resuming = null;
    }
  }

  /** Exchanges the password for a token, saves the token, connects. */
  async login(user, password) {
    const token = await login(this.urls.httpBase, user, password);
    saveSession(user, token);
    await this.connectAs(user, token.token);
  }

  /** Connects with a token (the MQTT password) and loads the first state. */
  async connectAs(user, token) {
    this.phase = "connecting";
    this.loginError = null;
    this.changed();
    const attempt = ++this.attempt;
    let client;
    try {
      this.connecting = new AbortController();
      client = await connect({ url: this.urls.wsUrl, user, password: token, signal: this.connecting.signal });
    } catch (e) {
      if (attempt !== this.attempt) return;
      if (e.code === "not_authorized") clearSession();
      this.phase = "login";
      this.changed();
      throw e;
    }
    if (attempt !== this.attempt) {
      client.close().catch(() => {});
      return;
    }
    this.client = client;
    this.me = client.user;
    this.conn = client.state;
    this.phase = "ready";
    this.attach(client);
    this.changed();
    await Promise.all([this.refreshConversations(), this.restorePending()]);
    this.loadProfiles([this.me]);
  }

  /** Turns the SDK's events into store changes. */
  attach(c) {
    c.on("state", (s, detail) => {
      this.conn = s;
      this.connError = detail || null;
      if (s === "refused") clearSession();
      this.changed();
    });
    c.on("message", (m, meta) => this.received(m, meta));
    c.on("ack", (a) => this.acked(a.cid, a));
    c.on("sendFailed", ({ entry, error }) => this.sendRefused(entry.cid, error));
    c.on("receipt", (r) => this.receipt(r));
    c.on("typing", (t) => this.typingReceived(t));
    c.on("presence", (p) => {
      this.presence.set(p.user, p);
      this.changed();
    });
    c.on("conversations", (list) => this.mergeConversations(list));
  }

  /** Closes the connection and forgets the token. */
  async logout() {
    const c = this.client;
    this.attempt++;
    // A first connection still being tried stops now, not when it finally lands.
    this.connecting?.abort();
    clearSession();
    this.reset();
    this.changed();
    await c?.close().catch(() => {});
  }

  // ---- conversations ----

  /** Reads the first page of conversations, or with `older` the page after those listed. */
  async refreshConversations(older = false) {
    try {
      const q = { limit: 100 };
      if (older) q.before = this.conversationsNext;
      const { conversations, more, next } = await this.client.conversations(q);
      this.conversationsNext = more ? next : null;
      this.mergeConversations(conversations);
    } catch {
      // The SDK fetches the first page again after every reconnect and emits `conversations`.
    }
  }

  /** Takes the server's conversation list, keeping chats only this page knows (new, empty). */
  mergeConversations(list) {
    for (const c of list) {
      const key = chatKey(c);
      const old = this.conversations.get(key) || {};
      const chat = this.chats.get(key);
      // The chat's own copy of the server's last message, so that receipts reach the list's ticks.
      let serverLast = c.last;
      const known = c.last && chat?.byId.get(c.last.id);
      if (known) {
        known.status = furthest(known.status, c.last.status);
        serverLast = known;
      } else if (c.last && chat?.loaded) {
        // Sent from another device of mine, or taken off the queue by one: this page never got
        // it, so the chat loads its newest page again when opened.
        chat.stale = true;
      }
      const last = serverLast && !replacesLast(old.last, serverLast) ? old.last : serverLast || old.last;
      const unread = key === this.open && !inBackground() ? 0 : c.unread;
      this.conversations.set(key, {
        ...old, key, with: c.with, group: c.group, name: c.name ?? old.name, last, unread,
        // The server's unread count includes everything up to here.
        countedUpTo: c.last?.id ?? old.countedUpTo,
      });
      if (key === this.open && chat?.stale) this.loadHistory(key);
      else if (key === this.open && c.unread > 0 && !inBackground()) this.markChatRead(key);
    }
    const peers = list.filter((c) => c.with).map((c) => c.with);
    this.loadProfiles(peers);
    this.watch(peers);
    this.changed();
  }

  /** Conversations, newest first. */
  sortedConversations() {
    return [...this.conversations.values()].sort((a, b) => byText(b.last?.id || b.started || "", a.last?.id || a.started || ""));
  }

  /** Unread messages over all conversations (for the tab's title). */
  totalUnread() {
    let n = 0;
    for (const c of this.conversations.values()) n += c.unread || 0;
    return n;
  }

  /** The conversation `key`, created empty when new. */
  conversation(key) {
    let c = this.conversations.get(key);
    if (!c) {
      c = { key, ...chatOf(key), unread: 0, started: pendingId(Date.now(), "") };
      this.conversations.set(key, c);
    }
    return c;
  }

  /** Starts (or opens) a chat with a user id, checked with `users.find`. */
  async startChat(user) {
    const found = await this.findUser(user);
    if (found === this.me) throw new Error("That is you.");
    const key = `u:${found}`;
    this.conversation(key);
    this.openChat(key);
  }

  /** The exact user id `user` as the server knows it; throws "No user …" for an unknown one.
   * A server without `users.find` (refused as a bad request) takes the id as typed: sends to an
   * unknown user are then refused in their ack. */
  async findUser(user) {
    try {
      return (await this.client.users.find(user)).user;
    } catch (e) {
      if (e.code === "not_found") throw new Error(`No user “${user}”.`);
      if (e.code === "bad_request") return user;
      throw e;
    }
  }

  // ---- the chat on screen ----

  /** The messages of chat `key`, created empty when new. */
  chat(key) {
    let c = this.chats.get(key);
    if (!c) {
      c = emptyChat(key);
      this.chats.set(key, c);
    }
    return c;
  }

  /** Shows the chat `key` (or none): loads its newest history, marks it read, watches presence. */
  openChat(key) {
    this.open = key;
    this.panel = null;
    this.client?.openChat(key ? chatOf(key) : null);
    if (key) {
      this.conversation(key);
      const chat = this.chat(key);
      if (!chat.loaded || chat.stale) this.loadHistory(key);
      else this.markChatRead(key);
      const { with: peer, group } = chatOf(key);
      if (peer) {
        this.watch([peer]);
        this.loadProfiles([peer], 0);
      }
      if (group) this.loadGroup(group);
    }
    this.changed();
  }

  /** The newest page of a chat, or with `older` the page before what is loaded. */
  async loadHistory(key, older = false) {
    const chat = this.chat(key);
    if (chat.loading || (older && !chat.more)) return;
    chat.loading = true;
    chat.error = null;
    this.changed();
    try {
      const q = { ...chatOf(key), limit: PAGE };
      if (older) q.before = oldestServerId(chat);
      if (older && !q.before) return;
      const { messages, more } = await this.client.history(q);
      for (const m of messages) this.addMessage(this.fromHistory(m), { live: false });
      if (!older) chat.stale = false;
      // A reload of the newest page keeps the older pages loaded before: there are more.
      if (!older && chat.loaded) chat.more = chat.more || more;
      else chat.more = more;
      chat.loaded = true;
      if (key === this.open) this.markChatRead(key);
    } catch (e) {
      chat.error = describe(e);
    } finally {
      chat.loading = false;
      this.changed();
    }
  }

  /** A history entry as the store keeps it: a group message of mine with its receipts as sets. */
  fromHistory(m) {
    const copy = { ...m };
    if (m.group && m.from === this.me && m.type !== "event") {
      copy.receipts = groupReceipts(m.receipts, this.otherMembers(m.group));
    }
    return copy;
  }

  /** Sends read receipts for what the others sent in `key` that I have not read. */
  markChatRead(key) {
    if (inBackground() || !this.client) return;
    const chat = this.chat(key);
    const ids = [];
    for (const m of chat.messages) {
      if (m.from && m.from !== this.me && m.type !== "event" && !m.readByMe && !m.pending) {
        m.readByMe = true;
        ids.push(m.id);
      }
    }
    const conv = this.conversations.get(key);
    if (conv && conv.unread) {
      conv.unread = 0;
      this.changed();
    }
    for (let i = 0; i < ids.length; i += 100) {
      this.client.markRead(ids.slice(i, i + 100)).catch(() => {});
    }
  }

  /** Back in the foreground: the open chat is read now. */
  visibilityChanged() {
    if (!inBackground() && this.open) this.markChatRead(this.open);
    this.changed();
  }

  // ---- messages ----

  /** Adds a message to its chat and the conversation list; false when it was there already. */
  addMessage(m, { live }) {
    const key = messageKey(m, this.me);
    if (m.from !== this.me && m.status === "read" && !m.group) m.readByMe = true;
    if (m.group && m.from !== this.me && m.receipts?.read_by?.includes(this.me)) m.readByMe = true;
    const early = this.earlyReceipts.get(m.id);
    const isNew = upsert(this.chat(key), m);
    if (!isNew) return false;
    this.chatOfId.set(m.id, key);
    if (early) {
      this.earlyReceipts.delete(m.id);
      for (const r of early) this.receipt(r);
    }
    const conv = this.conversation(key);
    if (replacesLast(conv.last, m)) conv.last = m;
    // Not unread: read already (here or elsewhere), or counted in the server's unread count.
    const counted = conv.countedUpTo && !m.pending && m.id <= conv.countedUpTo;
    if (live && m.from !== this.me && m.type !== "event" && m.status !== "read" && !m.readByMe && !counted) {
      if (key === this.open && !inBackground()) this.markChatRead(key);
      else conv.unread = (conv.unread || 0) + 1;
    }
    return true;
  }

  /** A message or group event from the inbox (also the newest history of the open chat after a
   * reconnect, which the SDK emits the same way). */
  received(m, { resync = false } = {}) {
    // Also history entries (the SDK re-reads the open chat after a reconnect): their receipts
    // are read like a history page's, and they are neither unread nor notified.
    const copy = this.fromHistory(m);
    if (!this.addMessage(copy, { live: !resync })) return;
    if (m.from !== this.me && m.type !== "event") {
      const key = messageKey(m, this.me);
      const conv = this.conversation(key);
      // A re-synced message of the chat on screen is read like a live one (addMessage reads
      // live ones).
      if (resync && key === this.open && !inBackground()) this.markChatRead(key);
      // Read at once when its chat is on screen (read implies delivered), else delivered.
      if (!copy.readByMe) this.client.markDelivered([m.id]).catch(() => {});
      this.loadProfiles([m.from], 60_000);
      if (!m.group) this.watch([m.from]);
      if (!resync) {
        this.clearTyping(key, m.from);
        notifyMessage({
          title: m.group ? `${this.displayName(m.from)} in ${conv.name || "a group"}` : this.displayName(m.from),
          body: summary(m),
          tag: key,
          onOpen: () => this.openChat(key),
        });
      }
    }
    if (m.type === "event") this.groupEvent(m);
    this.changed();
  }

  /** Sends a text (or, with `fields`, any message) to the chat `key`. */
  async send(key, fields, extra = {}) {
    const cid = newCid();
    const queued = Date.now();
    const target = chatOf(key);
    const out = { ...(target.group ? { group: target.group } : { to: target.with }), type: "text", ...fields, cid };
    const pending = { ...out, ...extra, id: pendingId(queued, cid), from: this.me, ts: queued, status: "pending", pending: true };
    this.pendingByCid.set(cid, pending);
    this.addMessage(pending, { live: false });
    // The next keystroke starts a new "typing…" at once: the message ended the last one.
    this.lastTypingSent.delete(key);
    this.changed();
    try {
      const ack = await this.client.send(out);
      this.acked(cid, ack);
    } catch (e) {
      this.sendRefused(cid, e);
    }
  }

  /** The server refused `cid` for good (also one queued by an earlier page): it shows as failed,
   * with a way to retry, instead of pending for ever. */
  sendRefused(cid, error) {
    const pending = this.pendingByCid.get(cid);
    if (!pending) return;
    // The login expired: the message stays in the outbox and goes after the next login.
    if (error?.code === "not_authorized" && this.conn === "refused") return;
    pending.status = "failed";
    pending.error = describe(error);
    this.pendingByCid.delete(cid);
    this.changed();
  }

  /** Sends a refused message again (with a new cid: the refusal was final for the old one). */
  retry(m) {
    const key = messageKey(m, this.me);
    remove(this.chat(key), m.id);
    const fields = { type: m.type };
    for (const f of ["text", "media", "reply_to"]) if (m[f]) fields[f] = m[f];
    this.send(key, fields);
  }

  /** The server's ack of `cid`: the pending message becomes the stored one. */
  acked(cid, ack) {
    const pending = this.pendingByCid.get(cid);
    if (!pending) return;
    this.pendingByCid.delete(cid);
    const key = messageKey(pending, this.me);
    const chat = this.chat(key);
    remove(chat, pending.id);
    this.chatOfId.delete(pending.id);
    const sent = { ...pending, id: ack.id, ts: ack.ts, status: "sent", pending: false };
    delete sent.cid;
    if (sent.group) sent.receipts = groupReceipts(null, this.otherMembers(sent.group));
    this.addMessage(sent, { live: false });
    const conv = this.conversation(key);
    if (conv.last === pending) conv.last = chat.byId.get(ack.id);
    if (sent.media) this.mediaSent(sent.media);
    // A profile shows only once a conversation is shared: after my first message in a new chat
    // the peer's name may be readable now.
    if (sent.to && !conv.sentHere) {
      conv.sentHere = true;
      this.loadProfiles([sent.to], 0);
    }
    this.changed();
  }

  /** After a reload, the messages still in the outbox show as pending in their chats. */
  async restorePending() {
    let entries = [];
    try {
      entries = await this.client.pending();
    } catch {
      return;
    }
    for (const e of entries) {
      if (this.pendingByCid.has(e.cid)) continue;
      const pending = { ...e, id: pendingId(e.queued, e.cid), from: this.me, ts: e.queued, status: "pending", pending: true };
      delete pending.queued;
      this.pendingByCid.set(e.cid, pending);
      this.addMessage(pending, { live: false });
    }
    this.changed();
  }

  /** A delivered/read receipt for a message I sent. */
  receipt(r) {
    const key = this.chatOfId.get(r.id);
    const m = key && this.chat(key).byId.get(r.id);
    if (!m) {
      // The receipt can overtake the ack (or the history page) that makes the message known.
      const list = this.earlyReceipts.get(r.id) || [];
      list.push(r);
      this.earlyReceipts.set(r.id, list);
      if (this.earlyReceipts.size > EARLY_RECEIPTS_MAX) {
        this.earlyReceipts.delete(this.earlyReceipts.keys().next().value);
      }
      return;
    }
    if (m.group) {
      if (!m.receipts) m.receipts = groupReceipts(null, this.otherMembers(m.group));
      // Sent before the member list had loaded: count the members now.
      if (!m.receipts.members) m.receipts.members = this.otherMembers(m.group) ?? 0;
      applyGroupReceipt(m, r.by, r.status);
    } else {
      m.status = furthest(m.status, r.status);
      // The list may show the server's copy of the same message.
      const last = this.conversations.get(key)?.last;
      if (last && last !== m && last.id === m.id) last.status = furthest(last.status, r.status);
    }
    this.changed();
  }

  // ---- screens ----

  /** Shows a dialog or panel (`profile`, `new-chat`, `new-group`, `group`) or none. */
  showPanel(panel) {
    this.panel = panel;
    this.changed();
  }
}

/** Plain comparison for sorting (not `localeCompare`: pending ids start with '~', which must sort
 * after digits). */
function byText(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Whether `m` is newer than the conversation's `last`: by id between server messages, by time
 * when one is pending or failed (a failed message does not stay last for ever). */
function replacesLast(last, m) {
  if (!last) return true;
  if (last.id === m.id) return true;
  const local = (x) => x.pending || x.status === "failed" || x.id.startsWith("~");
  if (local(last) !== local(m)) return m.ts > last.ts;
  return last.id < m.id;
}

/** A client message id, unique per sender. */
function newCid() {
  if (crypto.randomUUID) return `w-${crypto.randomUUID()}`;
  return `w-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// The store's other concerns live in files of their own, as methods of the same object.
Object.assign(Store.prototype, liveMethods, profileMethods, mediaMethods, groupMethods);
