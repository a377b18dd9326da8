// The client's state and everything that changes it: the connection, conversations, the
// messages of each chat, receipts, presence, typing, profiles and groups. Screens read its
// fields and call its methods; every change re-renders through `subscribe`.
import { connect, login } from "../sdk/index.js";
import { chatKey, chatOf, messageKey } from "./keys.js";
import {
  emptyChat, upsert, remove, oldestServerId, pendingId, furthest, groupReceipts, applyGroupReceipt,
} from "./messages.js";
import { loadSession, saveSession, clearSession, serverUrls } from "./session.js";
import { kindOf, metaOf } from "./media.js";
import { summary } from "./format.js";
import { describe } from "./errors.js";
import { inBackground, notifyMessage, showUnreadInTitle } from "./notify.js";

const PAGE = 30;
const TYPING_SHOWN_MS = 5000;
const TYPING_SENT_EVERY_MS = 2500;

/** The app's state; one per page. */
export class Store {
  constructor(urls = serverUrls()) {
    this.urls = urls;
    this.listeners = new Set();
    this.version = 0;
    this.queued = false;
    this.reset();
    document.addEventListener("visibilitychange", () => this.visibilityChanged());
  }

  /** Back to the login screen's state. */
  reset() {
    this.client = null;
    this.me = null;
    /** `login` | `connecting` | `ready` */
    this.phase = "login";
    /** The SDK's connection state. */
    this.conn = "closed";
    this.connError = null;
    this.loginError = null;
    this.conversations = new Map();
    this.chats = new Map();
    this.presence = new Map();
    this.typingIn = new Map();
    this.profiles = new Map();
    this.groups = new Map();
    this.mediaInfo = new Map();
    this.pendingByCid = new Map();
    this.chatOfId = new Map();
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
    try {
      await this.connectAs(s.user, s.token);
    } catch (e) {
      this.loginError = e.code === "not_authorized" ? "Your session expired; please log in again." : describe(e);
      this.phase = "login";
      this.changed();
    }
  }

  /** Exchanges the password for a token, saves the token, connects. */
  async login(user, password) {
    const token = await login(this.urls.httpBase, user, password);
    saveSession(user, token);
    await this.connectAs(user, token.token);
  }

  async connectAs(user, token) {
    this.phase = "connecting";
    this.loginError = null;
    this.changed();
    let client;
    try {
      client = await connect({ url: this.urls.wsUrl, user, password: token });
    } catch (e) {
      if (e.code === "not_authorized") clearSession();
      this.phase = "login";
      this.changed();
      throw e;
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

  attach(c) {
    c.on("state", (s, detail) => {
      this.conn = s;
      this.connError = detail || null;
      if (s === "refused") clearSession();
      this.changed();
    });
    c.on("message", (m) => this.received(m));
    c.on("ack", (a) => this.acked(a.cid, a));
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
    clearSession();
    this.reset();
    this.changed();
    await c?.close().catch(() => {});
  }

  // ---- conversations ----

  async refreshConversations() {
    try {
      const { conversations } = await this.client.conversations({ limit: 100 });
      this.mergeConversations(conversations);
    } catch {
      // The SDK fetches them again after every reconnect and emits `conversations`.
    }
  }

  mergeConversations(list) {
    for (const c of list) {
      const key = chatKey(c);
      const old = this.conversations.get(key) || {};
      const last = old.last && c.last && old.last.id > c.last.id ? old.last : c.last || old.last;
      const unread = key === this.open && !inBackground() ? 0 : c.unread;
      this.conversations.set(key, { ...old, key, with: c.with, group: c.group, name: c.name ?? old.name, last, unread });
      if (key === this.open && c.unread > 0 && !inBackground()) this.markChatRead(key);
    }
    const peers = list.filter((c) => c.with).map((c) => c.with);
    this.loadProfiles(peers);
    this.watch(peers);
    this.changed();
  }

  /** Conversations, newest first. */
  sortedConversations() {
    return [...this.conversations.values()].sort((a, b) => (b.last?.id || b.started || "").localeCompare(a.last?.id || a.started || ""));
  }

  totalUnread() {
    let n = 0;
    for (const c of this.conversations.values()) n += c.unread || 0;
    return n;
  }

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
    this.loadProfiles([found]);
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
      if (!chat.loaded) this.loadHistory(key);
      else this.markChatRead(key);
      const { with: peer, group } = chatOf(key);
      if (peer) {
        this.watch([peer]);
        this.loadProfiles([peer]);
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
    this.changed();
    try {
      const q = { ...chatOf(key), limit: PAGE };
      if (older) q.before = oldestServerId(chat);
      if (older && !q.before) return;
      const { messages, more } = await this.client.history(q);
      for (const m of messages) this.addMessage(this.fromHistory(m), { live: false });
      chat.more = more;
      chat.loaded = true;
      if (key === this.open) this.markChatRead(key);
    } catch (e) {
      chat.error = describe(e);
    } finally {
      chat.loading = false;
      this.changed();
    }
  }

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
    if (!conv.last || conv.last.id < m.id || (m.pending && !conv.last.pending)) conv.last = m;
    if (live && m.from !== this.me && m.type !== "event") {
      if (key === this.open && !inBackground()) this.markChatRead(key);
      else conv.unread = (conv.unread || 0) + 1;
    }
    return true;
  }

  /** A message or group event from the inbox (also the newest history of the open chat after a
   * reconnect, which the SDK emits the same way). */
  received(m) {
    const isNew = this.addMessage({ ...m }, { live: true });
    if (!isNew) return;
    if (m.from !== this.me && m.type !== "event") {
      this.client.markDelivered([m.id]).catch(() => {});
      this.loadProfiles([m.from]);
      const key = messageKey(m, this.me);
      const conv = this.conversation(key);
      this.clearTyping(key, m.from);
      notifyMessage({
        title: m.group ? `${this.displayName(m.from)} in ${conv.name || "a group"}` : this.displayName(m.from),
        body: summary(m),
        tag: key,
        onOpen: () => this.openChat(key),
      });
    }
    if (m.type === "event") this.groupEvent(m);
    this.changed();
  }

  groupEvent(m) {
    const conv = this.conversation(`g:${m.group}`);
    if (m.name) conv.name = m.name;
    const gone = (m.event === "member_removed" || m.event === "member_left") && (m.users || [m.by]).includes(this.me);
    if (gone) conv.left = true;
    if (m.event === "member_added" && (m.users || []).includes(this.me)) conv.left = false;
    if (this.groups.has(m.group) || `g:${m.group}` === this.open) this.loadGroup(m.group);
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
    this.changed();
    try {
      const ack = await this.client.send(out);
      this.acked(cid, ack);
    } catch (e) {
      pending.status = "failed";
      pending.error = describe(e);
      this.pendingByCid.delete(cid);
      this.changed();
    }
  }

  /** Uploads a file (or recording) and sends it as the message type its MIME type calls for. */
  async sendFile(key, file, { caption, duration } = {}) {
    const kind = kindOf(file.type);
    const localUrl = URL.createObjectURL(file);
    try {
      const meta = await metaOf(file, kind);
      if (duration) meta.duration = duration;
      const { media } = await this.client.media.upload(file, meta);
      this.mediaInfo.set(media, { ...meta, media, url: localUrl, size: file.size, expires: Infinity });
      const fields = { type: kind, media };
      if (caption) fields.text = caption;
      await this.send(key, fields);
    } catch (e) {
      URL.revokeObjectURL(localUrl);
      throw e;
    }
  }

  /** The server's ack of `cid`: the pending message becomes the stored one. */
  acked(cid, ack) {
    const pending = this.pendingByCid.get(cid);
    if (!pending) return;
    this.pendingByCid.delete(cid);
    const key = messageKey(pending, this.me);
    const chat = this.chat(key);
    remove(chat, pending.id);
    const sent = { ...pending, id: ack.id, ts: ack.ts, status: "sent", pending: false };
    delete sent.cid;
    if (sent.group) sent.receipts = groupReceipts(null, this.otherMembers(sent.group));
    this.addMessage(sent, { live: false });
    const conv = this.conversation(key);
    if (conv.last === pending) conv.last = chat.byId.get(ack.id);
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
      return;
    }
    if (m.group) {
      if (!m.receipts) m.receipts = groupReceipts(null, this.otherMembers(m.group));
      applyGroupReceipt(m, r.by, r.status);
    } else {
      m.status = furthest(m.status, r.status);
    }
    this.changed();
  }

  // ---- typing and presence ----

  /** Tells the others of `key` that I am typing (at most every few seconds). */
  typing(key) {
    const now = Date.now();
    if (now - (this.lastTypingSent.get(key) || 0) < TYPING_SENT_EVERY_MS) return;
    this.lastTypingSent.set(key, now);
    const target = chatOf(key);
    this.client?.typing(target.group ? { group: target.group } : { to: target.with });
  }

  typingReceived(t) {
    const key = t.group ? `g:${t.group}` : `u:${t.from}`;
    const who = this.typingIn.get(key) || new Map();
    clearTimeout(who.get(t.from));
    who.set(t.from, setTimeout(() => this.clearTyping(key, t.from), TYPING_SHOWN_MS));
    this.typingIn.set(key, who);
    this.changed();
  }

  clearTyping(key, user) {
    const who = this.typingIn.get(key);
    if (!who?.has(user)) return;
    clearTimeout(who.get(user));
    who.delete(user);
    this.changed();
  }

  /** Who is typing in `key`. */
  typists(key) {
    return [...(this.typingIn.get(key)?.keys() || [])];
  }

  watch(users) {
    const fresh = users.filter((u) => u && !this.watched.has(u));
    if (!fresh.length || !this.client) return;
    fresh.forEach((u) => this.watched.add(u));
    this.client.presence.watch(fresh).catch(() => fresh.forEach((u) => this.watched.delete(u)));
  }

  // ---- profiles ----

  /** Fetches the profiles of users not asked about yet; a failure leaves plain user ids. */
  loadProfiles(users) {
    const fresh = [...new Set(users)].filter((u) => u && !this.profiles.has(u));
    if (!fresh.length || !this.client) return;
    for (const u of fresh) this.profiles.set(u, { user: u, name: null, avatar: null });
    for (let i = 0; i < fresh.length; i += 100) {
      this.client.profile
        .get(fresh.slice(i, i + 100))
        .then((list) => {
          for (const p of list) this.profiles.set(p.user, p);
          this.changed();
        })
        .catch(() => {});
    }
  }

  /** The name a user is shown with. */
  displayName(user) {
    if (!user) return "";
    return this.profiles.get(user)?.name || user;
  }

  /** The title of a chat. */
  chatTitle(key) {
    const conv = this.conversations.get(key);
    if (key.startsWith("g:")) return conv?.name || this.groups.get(key.slice(2))?.name || "Group";
    return this.displayName(key.slice(2));
  }

  /** Sets my name and, with `avatarFile`, a new picture. */
  async saveProfile({ name, avatarFile }) {
    const p = { name: name || null };
    if (avatarFile) {
      const meta = await metaOf(avatarFile, "image");
      p.avatar = (await this.client.media.upload(avatarFile, meta)).media;
    }
    await this.client.profile.set(p);
    const mine = this.profiles.get(this.me) || { user: this.me };
    this.profiles.set(this.me, { ...mine, ...p });
    this.changed();
  }

  // ---- media ----

  /** What `media.download` says about `media` (cached while its URL is valid); null while it is
   * being fetched or when it failed (then `mediaError`). */
  media(id) {
    const info = this.mediaInfo.get(id);
    if (info && (info.loading || info.failed || info.expires > Date.now() + 30_000)) return info.loading ? null : info;
    this.mediaInfo.set(id, { loading: true });
    this.client.media
      .download(id)
      .then((i) => this.mediaInfo.set(id, i))
      .catch((e) => this.mediaInfo.set(id, { failed: describe(e) }))
      .finally(() => this.changed());
    return null;
  }

  // ---- groups ----

  otherMembers(group) {
    const info = this.groups.get(group);
    return info ? info.members.filter((m) => m.user !== this.me).length : undefined;
  }

  async loadGroup(group) {
    try {
      const info = await this.client.groups.info(group);
      this.groups.set(group, info);
      const conv = this.conversation(`g:${group}`);
      conv.name = info.name;
      conv.left = !info.members.some((m) => m.user === this.me);
      this.loadProfiles(info.members.map((m) => m.user));
    } catch (e) {
      if (e.code === "forbidden" || e.code === "not_found") this.conversation(`g:${group}`).left = true;
    }
    this.changed();
  }

  /** Creates a group with the given members and opens it. */
  async createGroup(name, members) {
    for (const u of members) await this.findUser(u);
    const group = await this.client.groups.create(name, members);
    const conv = this.conversation(`g:${group}`);
    conv.name = name;
    this.openChat(`g:${group}`);
  }

  /** A group change (`add`, `remove`, `promote`, `demote`, `leave`, `rename`), then the new
   * member list. */
  async groupAction(group, action, arg) {
    if (action === "leave") await this.client.groups.leave(group);
    else if (action === "rename") await this.client.groups.rename(group, arg);
    else await this.client.groups[action](group, arg);
    await this.loadGroup(group);
  }

  // ---- screens ----

  showPanel(panel) {
    this.panel = panel;
    this.changed();
  }
}

function newCid() {
  if (crypto.randomUUID) return `w-${crypto.randomUUID()}`;
  return `w-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}
