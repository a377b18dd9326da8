// The chat client: one MQTT 5 connection over WebSocket (MQTT.js), replaced by a new one after
// every loss with a backoff of its own, and everything that must survive those losses — the
// outbox, requests waiting for replies, batched receipts, presence watches, the open chat.
import mqttModule from "mqtt";
import { ChatError, RETRYABLE, fromWire } from "./errors.js";
import { backoffDelay } from "./backoff.js";
import { newCid, randomId } from "./ids.js";
import { Emitter } from "./emitter.js";
import { memoryOutbox, indexedDbOutbox } from "./outbox.js";
import { tabDeviceId } from "./device.js";
import { sha256Hex } from "./sha256.js";

// MQTT.js is CommonJS in node (its exports are the default import) and an ES module with only a
// default export in the browser bundle.
const mqttConnect = mqttModule.connect || mqttModule.default?.connect;

/** MQTT 5 CONNACK codes that refuse this login for good: the credentials must change. */
const REFUSED = new Set([0x85, 0x86, 0x87, 0x8c]);
/** CONNACK 0x9F: too many failed logins from here; the app should say "try later". */
const RATE_EXCEEDED = 0x9f;
/** DISCONNECT 0x8E: another connection with this client id took the session. */
const TAKEN_OVER = 0x8e;
/** DISCONNECT 0x98: the login was revoked (account removed, password changed). */
const REVOKED = 0x98;

/** Requests that may be sent again when the connection was lost before their reply came:
 * asking twice gives the same answer and changes nothing twice. */
const IDEMPOTENT = new Set([
  "history",
  "conversations",
  "presence.get",
  "group.info",
  "group.add",
  "group.promote",
  "group.demote",
  "group.rename",
  "media.upload",
  "media.download",
  "push.register",
  "push.unregister",
  "profile.get",
  "profile.set",
  "user.find",
]);

const RPC_RETRIES = 4;
/** A connection that lasted this long resets the reconnect backoff. */
const STABLE_MS = 10000;
const MAX_SEEN = 10000;
const RECEIPT_BATCH = 100;
const SUBSCRIBE_BATCH = 64;
const MESSAGE_FIELDS = ["cid", "to", "group", "type", "text", "media", "reply_to"];
const decoder = new TextDecoder();
const encoder = new TextEncoder();
/** The largest request payload chatd reads (docs/protocol.md, Requests). */
const MAX_REQUEST_BYTES = 24576;
/** MQTT 5's Receive Maximum when CONNACK leaves it out. */
const DEFAULT_RECEIVE_MAXIMUM = 65535;
/** Re-sync reads at most this many history pages of the open chat after a reconnect. */
const RESYNC_PAGES = 20;
const RESYNC_PAGE = 100;

function pick(obj, keys) {
  const out = {};
  for (const k of keys) if (obj[k] !== undefined && obj[k] !== null) out[k] = obj[k];
  return out;
}

function chunks(list, n) {
  const out = [];
  for (let i = 0; i < list.length; i += n) out.push(list.slice(i, i + n));
  return out;
}

/** `POST {httpBase}/auth/token`; rejects with `not_authorized` on bad credentials. */
export async function login(httpBase, user, password) {
  let r;
  try {
    r = await fetch(`${httpBase.replace(/\/+$/, "")}/auth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user, password }),
    });
  } catch (e) {
    throw new ChatError("network", `POST /auth/token failed: ${e.message}`);
  }
  if (r.status === 401) throw new ChatError("not_authorized", "wrong user name or password");
  if (r.status === 429) throw new ChatError("rate_limited", "too many failed logins; try again later");
  if (!r.ok) throw new ChatError("network", `POST /auth/token: HTTP ${r.status}`);
  const body = await r.json().catch(() => null);
  if (!body || typeof body.token !== "string") throw new ChatError("network", "POST /auth/token: unreadable answer");
  return { token: body.token, expires: body.expires };
}

/** Connects and resolves once online; rejects with `not_authorized` when the login is refused. */
export async function connect(opts) {
  if (!opts || !opts.url || !opts.user || typeof opts.password !== "string") {
    throw new ChatError("bad_request", "connect: url, user and password are required");
  }
  const deviceId = opts.deviceId || (await tabDeviceId());
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(deviceId)) throw new ChatError("bad_request", `connect: invalid device id ${deviceId}`);
  let outbox = opts.outbox;
  if (!outbox) outbox = globalThis.indexedDB ? indexedDbOutbox(opts.user, deviceId) : memoryOutbox();
  const client = new Client(opts, deviceId, outbox);
  // An abort (a logout while the first connection is still being tried) closes the client,
  // which rejects this call with `closed` instead of letting it retry until it lands.
  const signal = opts.signal;
  if (signal?.aborted) throw new ChatError("closed", "connect was aborted");
  const abort = () => client.close().catch(() => {});
  signal?.addEventListener("abort", abort, { once: true });
  try {
    await client._start();
  } finally {
    signal?.removeEventListener("abort", abort);
  }
  // Handlers are attached after `await connect()` returns, which is after this promise resolves:
  // what arrived meanwhile is replayed once the current task is over.
  setTimeout(() => client._events.release(), 0);
  return client;
}

class Client {
  constructor(opts, deviceId, outbox) {
    this.user = opts.user;
    this.deviceId = deviceId;
    this._opts = {
      minMs: opts.reconnect?.minMs ?? 500,
      maxMs: opts.reconnect?.maxMs ?? 15000,
      rpcTimeoutMs: opts.rpcTimeoutMs ?? 15000,
      receiptDelayMs: opts.receiptDelayMs ?? 50,
    };
    this._url = opts.url;
    this._password = opts.password;
    this._outbox = outbox;
    this._events = new Emitter();
    this._state = "connecting";
    this._gen = 0; // connection generation: events of a replaced connection are ignored
    this._mq = null;
    this._attempt = 0;
    this._onlineAt = 0;
    this._reconnectTimer = null;
    this._closed = false;
    this._sends = new Map(); // cid → { entry, waiters, sentGen, retryTimer, tries }
    this._calls = new Set(); // pending rpc calls
    this._rpcs = new Map(); // rid → call in flight
    this._receipts = { delivered: new Set(), read: new Set(), waiters: [], timer: null };
    this._receiptStatus = new Map(); // id → status of receipts published lately (to retry refusals)
    this._pendingPublishes = new Set(); // rejecters of publishes awaiting PUBACK on this connection
    // QoS 1 publishes of the current connection: at most `limit` (the server's Receive Maximum)
    // await their PUBACK; the rest wait in `queue` (MQTT.js does not hold them back itself).
    this._window = null;
    this._newest = new Map(); // chat key → newest message id this client has of that chat
    this._resyncFrom = new Map(); // `_newest` as it was before the current connection
    this._watches = new Set();
    this._seen = new Set();
    this._openChat = null;
    this._onlineListener = null;

    this.presence = {
      get: async (users) => (await this.rpc("presence.get", { users })).users,
      watch: (users) => this._watch(users),
      unwatch: (users) => this._unwatch(users),
    };
    this.groups = {
      create: async (name, members) => (await this.rpc("group.create", { name, members })).group,
      add: async (group, users) => void (await this.rpc("group.add", { group, users })),
      remove: async (group, users) => void (await this.rpc("group.remove", { group, users })),
      promote: async (group, users) => void (await this.rpc("group.promote", { group, users })),
      demote: async (group, users) => void (await this.rpc("group.demote", { group, users })),
      leave: async (group) => void (await this.rpc("group.leave", { group })),
      rename: async (group, name) => void (await this.rpc("group.rename", { group, name })),
      info: (group, o = {}) => this.rpc("group.info", { group, ...pick(o, ["message", "after"]) }),
    };
    this.media = {
      upload: (blob, meta) => this._upload(blob, meta),
      download: (media) => this.rpc("media.download", { media }),
    };
    this.profile = {
      set: async (p) => {
        const args = {};
        for (const k of ["name", "avatar"]) if (p && p[k] !== undefined) args[k] = p[k];
        await this.rpc("profile.set", args);
      },
      get: async (users) => (await this.rpc("profile.get", { users })).profiles,
    };
    this.users = {
      find: async (user) => {
        const r = await this.rpc("user.find", { user });
        return { user: r.user };
      },
    };
    this.push = {
      register: async (platform, token) => void (await this.rpc("push.register", { platform, token })),
      unregister: async (token) => void (await this.rpc("push.unregister", { token })),
    };
  }

  get state() {
    return this._state;
  }

  on(event, handler) {
    return this._events.on(event, handler);
  }

  off(event, handler) {
    this._events.off(event, handler);
  }

  // ---- connection ------------------------------------------------------------------------

  async _start() {
    let entries = [];
    try {
      entries = await this._outbox.list();
    } catch (e) {
      // An unreadable outbox must not keep the user from chatting; its entries wait for later.
      console.warn("chatd sdk: the outbox could not be read:", e);
    }
    for (const entry of entries) {
      if (!this._sends.has(entry.cid)) this._sends.set(entry.cid, { entry, waiters: [], sentGen: 0, retryTimer: null, tries: 0 });
    }
    const first = new Promise((ok, fail) => (this._first = { ok, fail }));
    const g = globalThis;
    if (typeof g.addEventListener === "function" && typeof g.window !== "undefined") {
      // The browser says the network is back: try at once instead of waiting out the backoff.
      this._onlineListener = () => {
        if (this._state === "offline" && this._reconnectTimer) {
          clearTimeout(this._reconnectTimer);
          this._reconnectTimer = null;
          this._open();
        }
      };
      g.addEventListener("online", this._onlineListener);
    }
    this._open();
    return first;
  }

  _setState(state, detail) {
    if (this._state === state && !detail) return;
    this._state = state;
    this._events.emit("state", state, detail);
  }

  _open() {
    if (this._closed) return;
    const gen = ++this._gen;
    this._setState("connecting");
    // Messages this connection brings must not move the point the re-sync reads from.
    this._resyncFrom = new Map(this._newest);
    const mq = mqttConnect(this._url, {
      protocolVersion: 5,
      clientId: `${this.user}:${this.deviceId}`,
      username: this.user,
      password: this._password,
      clean: true,
      reconnectPeriod: 0, // the SDK's own backoff, with jitter
      connectTimeout: 10000,
      // The server drops a client silent for 1.5 × this; 45 s still holds when a hidden tab's
      // timers are throttled to once a minute.
      keepalive: 45,
      resubscribe: false,
      queueQoSZero: false,
      // The page's CSP has no worker-src: MQTT.js's default keep-alive timer is a blob: Worker.
      timerVariant: "native",
    });
    this._mq = mq;
    let connected = false;
    let connackCode = null;
    let disconnectCode = null;
    let ended = false;
    mq.on("connect", (connack) => {
      connected = true;
      if (gen !== this._gen) return;
      const max = connack?.properties?.receiveMaximum;
      this._window = { mq, limit: Number.isInteger(max) && max > 0 ? max : DEFAULT_RECEIVE_MAXIMUM, inflight: 0, queue: [] };
      this._onConnack(gen, mq);
    });
    mq.on("message", (topic, payload) => {
      if (gen === this._gen) this._onMessage(topic, payload);
    });
    mq.on("disconnect", (packet) => {
      disconnectCode = packet?.reasonCode ?? null;
    });
    mq.on("error", (err) => {
      if (!connected && typeof err?.code === "number") connackCode = err.code;
    });
    mq.on("close", () => {
      // Publishes still waiting for room stay unwritten: MQTT.js fails the written ones now,
      // and the room they leave must not let the waiting ones onto a dead connection.
      if (this._window?.mq === mq) this._window = null;
      if (ended) return;
      ended = true;
      if (gen !== this._gen) return mq.end(true);
      // MQTT.js may report a CONNACK refusal ('error') just after closing, and the socket's
      // last bytes (a DISCONNECT saying why, e.g. taken over) may still be on their way to its
      // parser when the close is reported: ending the client now would drop them. Look, and
      // end it, once they have had their turn.
      setTimeout(() => {
        mq.end(true);
        if (gen === this._gen) this._onLost(gen, { connected, connackCode, disconnectCode });
      }, 0);
    });
  }

  async _onConnack(gen, mq) {
    const filters = [`user/${this.user}/#`, ...[...this._watches].map((u) => `presence/${u}`)];
    try {
      for (const batch of chunks(filters, SUBSCRIBE_BATCH)) {
        const grants = await mq.subscribeAsync(batch, { qos: 1 });
        const own = grants.find((g) => g.topic === `user/${this.user}/#`);
        if (own && own.qos >= 0x80) throw new Error(`SUBACK refused user/${this.user}/# (${own.qos})`);
      }
    } catch (e) {
      if (gen === this._gen && !this._closed) mq.end(true); // its close event starts the backoff
      return;
    }
    if (gen !== this._gen || this._closed) return;
    this._onlineAt = Date.now();
    this._setState("online");
    if (this._first) {
      this._first.ok();
      this._first = null;
    }
    for (const s of this._sends.values()) this._publishSend(s);
    for (const call of this._calls) this._publishRpc(call);
    this._flushReceipts();
    this._resync(gen);
  }

  _onLost(gen, { connected, connackCode, disconnectCode }) {
    this._mq = null;
    this._window = null;
    for (const reject of this._pendingPublishes) reject(new ChatError("network", "connection lost"));
    this._pendingPublishes.clear();
    // Requests in flight on the lost connection: their replies went with it. One still waiting
    // for room in the publish window never left: it goes again on the next connection.
    for (const [rid, call] of this._rpcs) {
      this._rpcs.delete(rid);
      if (call.written && !IDEMPOTENT.has(call.op)) {
        this._finishCall(call, new ChatError("network", `connection lost before the reply to ${call.op}; it may or may not have been applied`));
      }
    }
    if (this._closed) return;
    // The backoff starts over only after a connection that lasted: one the server accepts and
    // drops at once must not be retried in a tight loop.
    if (connected && this._onlineAt && Date.now() - this._onlineAt > STABLE_MS) this._attempt = 0;
    this._onlineAt = 0;
    if (disconnectCode === TAKEN_OVER) return this._stop("taken_over", new ChatError("taken_over", "another connection with this device id took the session over"));
    if (disconnectCode === REVOKED) return this._stop("refused", new ChatError("not_authorized", "the login was revoked"));
    if (connackCode !== null && REFUSED.has(connackCode)) return this._stop("refused", new ChatError("not_authorized", `login refused (reason 0x${connackCode.toString(16)})`));
    if (connackCode === RATE_EXCEEDED && this._first) return this._stop("refused", new ChatError("rate_limited", "too many failed logins from here; try again later"));
    const delay = backoffDelay(this._attempt++, this._opts.minMs, this._opts.maxMs);
    this._setState("offline");
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._open();
    }, delay);
  }

  /** Stops for good (refused, taken over): nothing reconnects; pending work stays pending. */
  _stop(state, error) {
    this._closed = true;
    this._setState(state, error);
    this._teardown(error);
    if (this._first) {
      this._first.fail(error);
      this._first = null;
    }
  }

  _teardown(error) {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    clearTimeout(this._receipts.timer);
    this._receipts.timer = null;
    if (this._onlineListener) globalThis.removeEventListener("online", this._onlineListener);
    for (const call of [...this._calls]) this._finishCall(call, error);
    for (const s of this._sends.values()) {
      clearTimeout(s.retryTimer);
      for (const w of s.waiters) w.reject(error);
      s.waiters = [];
    }
    for (const w of this._receipts.waiters) w.reject(error);
    this._receipts.waiters = [];
  }

  /** Disconnects for good (state `closed`); pending sends stay in the outbox. */
  async close() {
    if (this._closed) return;
    this._closed = true;
    const mq = this._mq;
    this._mq = null;
    this._gen++;
    const closed = new ChatError("closed", "the client was closed");
    this._teardown(closed);
    if (this._first) {
      // A close before the first CONNACK ends `connect()` too.
      this._first.fail(closed);
      this._first = null;
    }
    this._setState("closed");
    if (mq) {
      if (mq.connected) {
        await new Promise((r) => {
          const t = setTimeout(r, 2000);
          mq.end(false, {}, () => {
            clearTimeout(t);
            r();
          });
        });
      }
      mq.end(true);
    }
  }

  /** Publishes; a QoS 1 publish waits while the server's Receive Maximum of them await their
   * PUBACK (one more would be DISCONNECT 0x93). `onWrite` runs when it is handed to MQTT.js. */
  _publish(topic, obj, qos, onWrite) {
    const mq = this._mq;
    const w = this._window;
    if (!mq || !w || w.mq !== mq || this._state !== "online") return Promise.reject(new ChatError("network", "not connected"));
    return new Promise((ok, fail) => {
      this._pendingPublishes.add(fail);
      const write = () => {
        if (qos === 1) w.inflight++;
        onWrite?.();
        mq.publish(topic, JSON.stringify(obj), { qos }, (err) => {
          this._pendingPublishes.delete(fail);
          if (qos === 1) {
            w.inflight--;
            // The next one waiting goes now that the server has room (on this connection only).
            if (this._window === w) while (w.queue.length && w.inflight < w.limit) w.queue.shift()();
          }
          if (err) fail(new ChatError("network", err.message));
          else ok();
        });
      };
      if (qos === 1 && (w.inflight >= w.limit || w.queue.length)) w.queue.push(write);
      else write();
    });
  }

  // ---- incoming --------------------------------------------------------------------------

  _onMessage(topic, payload) {
    let body;
    try {
      body = JSON.parse(decoder.decode(payload));
    } catch {
      return;
    }
    if (!body || typeof body !== "object") return;
    const base = `user/${this.user}/`;
    if (topic.startsWith(base)) {
      switch (topic.slice(base.length)) {
        case "inbox":
          return this._onInbox(body);
        case "ack":
          return this._onAck(body);
        case "rpc":
          return this._onReply(body);
        case "receipt":
          return this._events.emit("receipt", body);
        case "typing":
          return this._events.emit("typing", body);
      }
    } else if (topic.startsWith("presence/")) {
      this._events.emit("presence", body);
    }
  }

  /** Remembers an id as shown; false when it was already. */
  _markSeen(id) {
    if (this._seen.has(id)) return false;
    this._seen.add(id);
    if (this._seen.size > MAX_SEEN) this._seen.delete(this._seen.values().next().value);
    return true;
  }

  /** The key of a message's chat in `_newest`: the group, or the other user of a 1:1 chat. */
  _chatKey(m) {
    if (typeof m.group === "string") return `g:${m.group}`;
    const other = m.from === this.user ? m.to : m.from;
    return typeof other === "string" ? `u:${other}` : null;
  }

  /** Remembers `id` as the newest of its chat when it is (ids sort in time order as strings). */
  _noteNewest(key, id) {
    if (!key || typeof id !== "string") return;
    const had = this._newest.get(key);
    if (!had || id > had) this._newest.set(key, id);
  }

  /** `resync`: it came from the re-sync's history pages, not from the live inbox. */
  _onInbox(m, resync = false) {
    if (typeof m.id !== "string") return;
    this._noteNewest(this._chatKey(m), m.id);
    if (!this._markSeen(m.id)) return;
    this._events.emit("message", m, { resync });
    if (m.type === "event") this._events.emit("groupEvent", m);
  }

  _onAck(body) {
    if (Array.isArray(body.receipt)) return this._onReceiptRefusal(body);
    if (typeof body.cid !== "string") return;
    const s = this._sends.get(body.cid);
    if (!s) return; // another device's send, or one already settled
    if (body.error) {
      const err = fromWire(body.error);
      if (RETRYABLE.has(err.code) && !this._closed) {
        // Nothing was stored: the same cid is sent again after a pause.
        s.sentGen = 0;
        clearTimeout(s.retryTimer);
        s.retryTimer = setTimeout(() => {
          s.retryTimer = null;
          this._publishSend(s);
          // A send token comes back every 1/rate s: rate_limited retries soon; a failing disk
          // (unavailable) is given longer.
        }, err.code === "rate_limited" ? backoffDelay(s.tries++, 200, 2000) : backoffDelay(s.tries++, 500, 5000));
        return;
      }
      this._settleSend(s);
      if (s.waiters.length) for (const w of s.waiters) w.reject(err);
      else this._events.emit("sendFailed", { entry: s.entry, error: err });
      return;
    }
    const ack = { cid: body.cid, id: body.id, ts: body.ts, status: body.status || "sent" };
    if (typeof ack.id === "string") {
      this._markSeen(ack.id);
      this._noteNewest(s.entry.group ? `g:${s.entry.group}` : s.entry.to ? `u:${s.entry.to}` : null, ack.id);
    }
    this._settleSend(s);
    if (s.waiters.length) for (const w of s.waiters) w.resolve(ack);
    else this._events.emit("ack", ack);
  }

  _settleSend(s) {
    clearTimeout(s.retryTimer);
    this._sends.delete(s.entry.cid);
    this._outbox.delete(s.entry.cid).catch((e) => console.warn("chatd sdk: outbox delete failed:", e));
  }

  _onReply(body) {
    const call = typeof body.rid === "string" ? this._rpcs.get(body.rid) : null;
    if (!call) return; // another device's request, or one given up on
    this._rpcs.delete(body.rid);
    if (body.ok) return this._finishCall(call, null, body.result ?? {});
    const err = fromWire(body.error);
    if (RETRYABLE.has(err.code) && call.tries < RPC_RETRIES && !this._closed) {
      call.retryTimer = setTimeout(() => {
        call.retryTimer = null;
        call.sentGen = 0;
        this._publishRpc(call);
      }, backoffDelay(call.tries++, 200, 3000));
      return;
    }
    this._finishCall(call, err);
  }

  // ---- sending ---------------------------------------------------------------------------

  /** Queues in the outbox, publishes when online, resolves with the server's ack. */
  async send(m) {
    if (this._closed) throw new ChatError("closed", "the client was closed");
    const entry = { ...pick(m || {}, MESSAGE_FIELDS), type: m?.type || "text", queued: Date.now() };
    if (!entry.cid) entry.cid = newCid(this.deviceId);
    let s = this._sends.get(entry.cid);
    const fresh = !s;
    if (fresh) {
      // Not published before it is on disk: a reload in between must find it in the outbox.
      s = { entry, waiters: [], sentGen: 0, retryTimer: null, tries: 0, stored: false };
      this._sends.set(entry.cid, s);
    }
    const p = new Promise((resolve, reject) => s.waiters.push({ resolve, reject }));
    // Settled maybe while the outbox write below is still under way; the caller gets it anyway.
    p.catch(() => {});
    if (fresh) {
      try {
        await this._outbox.put(entry);
      } catch (e) {
        // Better sent without a copy on disk than not at all.
        console.warn("chatd sdk: the outbox could not store a send:", e);
      }
      s.stored = true;
      if (this._sends.get(entry.cid) === s) this._publishSend(s);
    }
    return p;
  }

  _publishSend(s) {
    if (this._state !== "online" || s.retryTimer || s.stored === false || s.sentGen === this._gen) return;
    s.sentGen = this._gen;
    this._publish(`chat/${this.user}/send`, pick(s.entry, MESSAGE_FIELDS), 1).catch(() => {
      // The connection went: the entry is published again on the next one.
    });
  }

  /** Messages not yet acknowledged. */
  async pending() {
    return [...this._sends.values()].map((s) => ({ ...s.entry })).sort((a, b) => a.queued - b.queued);
  }

  // ---- requests --------------------------------------------------------------------------

  /** Any request: resolves with `result`, rejects with ChatError. */
  rpc(op, args = {}) {
    if (this._closed) return Promise.reject(new ChatError("closed", "the client was closed"));
    return new Promise((resolve, reject) => {
      const call = { op, args, resolve, reject, tries: 0, rid: null, sentGen: 0, retryTimer: null };
      call.timer = setTimeout(
        () => this._finishCall(call, new ChatError("timeout", `no reply to ${op} within ${this._opts.rpcTimeoutMs} ms`)),
        this._opts.rpcTimeoutMs,
      );
      this._calls.add(call);
      this._publishRpc(call);
    });
  }

  _publishRpc(call) {
    if (this._state !== "online" || call.retryTimer || call.sentGen === this._gen) return;
    call.rid = `r.${randomId(12)}`;
    const { rid: _r, op: _o, ...args } = call.args || {};
    const body = { rid: call.rid, op: call.op, ...args };
    const size = encoder.encode(JSON.stringify(body)).length;
    if (size > MAX_REQUEST_BYTES) {
      // The server would answer without our rid (it does not read the request): say it here.
      return this._finishCall(call, new ChatError("too_large", `a ${call.op} request of ${size} bytes is over the server's ${MAX_REQUEST_BYTES}`));
    }
    call.sentGen = this._gen;
    call.written = false;
    this._rpcs.set(call.rid, call);
    this._publish(`chat/${this.user}/rpc`, body, 1, () => (call.written = true)).catch(() => {});
  }

  _finishCall(call, err, result) {
    if (!this._calls.delete(call)) return;
    clearTimeout(call.timer);
    clearTimeout(call.retryTimer);
    if (call.rid) this._rpcs.delete(call.rid);
    if (err) call.reject(err);
    else call.resolve(result);
  }

  history(q) {
    return this.rpc("history", pick(q || {}, ["with", "group", "before", "after", "limit"]));
  }

  conversations(q) {
    return this.rpc("conversations", pick(q || {}, ["limit", "before"]));
  }

  /** The chat on screen: its newest history is fetched after every reconnect. */
  openChat(chat) {
    this._openChat = chat ? pick(chat, ["with", "group"]) : null;
  }

  /** After every (re)connect: the conversation list, then the open chat's newest messages, so
   * that whatever happened while offline shows even if its queue delivery is still to come. */
  async _resync(gen) {
    try {
      const r = await this.conversations();
      if (gen !== this._gen) return;
      this._events.emit("conversations", r.conversations);
    } catch {
      // Offline again or refused: the next connect tries again.
    }
    const chat = this._openChat;
    if (!chat || gen !== this._gen) return;
    // From the newest message this client had before the connection, forward page by page:
    // what another device of this user took off the queue, or sent itself, arrived meanwhile.
    const key = chat.group ? `g:${chat.group}` : `u:${chat.with}`;
    let after = this._resyncFrom.get(key);
    try {
      if (!after) {
        // Nothing known of this chat: its newest page.
        const h = await this.history(chat);
        if (gen !== this._gen) return;
        for (const m of h.messages) this._onInbox(m, true);
        return;
      }
      for (let page = 0; page < RESYNC_PAGES; page++) {
        const h = await this.history({ ...chat, after, limit: RESYNC_PAGE });
        if (gen !== this._gen) return;
        for (const m of h.messages) this._onInbox(m, true);
        const last = h.messages[h.messages.length - 1];
        if (!h.more || !last) return;
        after = last.id;
      }
    } catch {
      // As above.
    }
  }

  // ---- receipts and typing ---------------------------------------------------------------

  markDelivered(ids) {
    return this._queueReceipts("delivered", ids);
  }

  markRead(ids) {
    return this._queueReceipts("read", ids);
  }

  _queueReceipts(status, ids) {
    if (this._closed) return Promise.reject(new ChatError("closed", "the client was closed"));
    const r = this._receipts;
    for (const id of ids || []) {
      if (status === "read") {
        r.read.add(id);
        r.delivered.delete(id);
      } else if (!r.read.has(id)) {
        r.delivered.add(id);
      }
    }
    const p = new Promise((resolve, reject) => r.waiters.push({ resolve, reject }));
    if (!r.timer) {
      r.timer = setTimeout(() => {
        r.timer = null;
        this._flushReceipts();
      }, this._opts.receiptDelayMs);
    }
    return p;
  }

  _flushReceipts() {
    const r = this._receipts;
    if (this._state !== "online" || r.timer) return;
    if (!r.delivered.size && !r.read.size) {
      for (const w of r.waiters.splice(0)) w.resolve();
      return;
    }
    const batches = [
      ...chunks([...r.delivered], RECEIPT_BATCH).map((ids) => ({ ids, status: "delivered" })),
      ...chunks([...r.read], RECEIPT_BATCH).map((ids) => ({ ids, status: "read" })),
    ];
    const waiters = r.waiters.splice(0);
    r.delivered.clear();
    r.read.clear();
    Promise.all(
      batches.map((b) => {
        for (const id of b.ids) this._noteReceipt(id, b.status);
        return this._publish(`chat/${this.user}/receipt`, b, 1);
      }),
    ).then(
      () => waiters.forEach((w) => w.resolve()),
      () => {
        // The connection went: everything goes again on the next one (repeats change nothing).
        for (const b of batches) for (const id of b.ids) this._requeueReceipt(id, b.status);
        r.waiters.push(...waiters);
      },
    );
  }

  _noteReceipt(id, status) {
    this._receiptStatus.set(id, status);
    if (this._receiptStatus.size > 2000) this._receiptStatus.delete(this._receiptStatus.keys().next().value);
  }

  _requeueReceipt(id, status) {
    const r = this._receipts;
    if (status === "read") {
      r.read.add(id);
      r.delivered.delete(id);
    } else if (!r.read.has(id)) r.delivered.add(id);
  }

  _onReceiptRefusal(body) {
    const err = fromWire(body.error);
    if (!RETRYABLE.has(err.code) || this._closed) return; // refused for good: nothing to redo
    for (const id of body.receipt) {
      const status = this._receiptStatus.get(id);
      if (status) this._requeueReceipt(id, status);
    }
    const r = this._receipts;
    if (!r.timer) {
      r.timer = setTimeout(() => {
        r.timer = null;
        this._flushReceipts();
      }, backoffDelay(1, 250, 5000));
    }
  }

  /** QoS 0 typing indicator (dropped while offline). */
  typing(to) {
    if (this._state !== "online" || !this._mq) return;
    this._mq.publish(`chat/${this.user}/typing`, JSON.stringify(pick(to || {}, ["to", "group"])), { qos: 0 });
  }

  // ---- presence --------------------------------------------------------------------------

  async _watch(users) {
    const fresh = users.filter((u) => !this._watches.has(u));
    for (const u of fresh) this._watches.add(u);
    if (this._state !== "online" || !this._mq || !fresh.length) return;
    const mq = this._mq;
    for (const batch of chunks(fresh.map((u) => `presence/${u}`), SUBSCRIBE_BATCH)) {
      let grants;
      try {
        grants = await mq.subscribeAsync(batch, { qos: 1 });
      } catch {
        return; // the connection went: the next one subscribes every watch
      }
      const bad = grants.filter((g) => g.qos >= 0x80);
      if (bad.length) {
        for (const g of bad) this._watches.delete(g.topic.slice("presence/".length));
        throw new ChatError(bad[0].qos === 0x97 ? "too_large" : "bad_request", `cannot watch ${bad.map((g) => g.topic).join(", ")}`);
      }
    }
  }

  async _unwatch(users) {
    const gone = users.filter((u) => this._watches.delete(u));
    if (this._state !== "online" || !this._mq || !gone.length) return;
    const mq = this._mq;
    for (const batch of chunks(gone.map((u) => `presence/${u}`), SUBSCRIBE_BATCH)) {
      // A lost connection drops its subscriptions anyway, and the next one leaves these out.
      await mq.unsubscribeAsync(batch).catch(() => {});
    }
  }

  // ---- media -----------------------------------------------------------------------------

  async _upload(blob, meta = {}) {
    const bytes = new Uint8Array(await blob.arrayBuffer());
    const sha256 = await sha256Hex(bytes);
    const mime = (meta.mime || blob.type || "application/octet-stream").split(";")[0].trim().toLowerCase();
    const args = { mime, size: bytes.length, sha256, ...pick(meta, ["name", "width", "height", "duration", "preview"]) };
    const r = await this.rpc("media.upload", args);
    if (!r.exists) {
      let res;
      try {
        res = await fetch(r.upload_url, { method: "PUT", body: bytes });
      } catch (e) {
        throw new ChatError("network", `media upload failed: ${e.message}`);
      }
      if (!res.ok) {
        const why = await res.text().catch(() => "");
        const code = { 403: "forbidden", 404: "not_found", 413: "too_large", 422: "bad_request" }[res.status] || "network";
        throw new ChatError(code, `media upload: HTTP ${res.status} ${why}`.trim());
      }
    }
    return { media: r.media, exists: !!r.exists };
  }
}
