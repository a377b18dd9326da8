// chatd JavaScript SDK: chat over MQTT 5 on WebSocket (MQTT.js), for browsers and node.
// The wire protocol is docs/protocol.md; every field name here is the protocol's own.

/** An error with the protocol's code: `bad_request`, `forbidden`, `not_found`, `too_large`,
 * `rate_limited`, `unavailable`, `internal`, or the SDK's own `not_authorized` (login refused),
 * `taken_over` (another connection took this device's session), `closed` (the client was
 * closed), `timeout` (no reply in time), `network` (HTTP failed, or the connection was lost
 * before the reply to a request that is not safe to repeat). `unavailable` and `rate_limited`
 * replies are retried a few times with backoff (sends: until acknowledged) before they surface. */
export class ChatError extends Error {
  code: string;
  constructor(code: string, message: string);
}

/** A login token: the MQTT password for `user` until `expires` (Unix ms). */
export interface Token {
  token: string;
  expires: number;
}

/** `POST {httpBase}/auth/token`; rejects with `not_authorized` on bad credentials. */
export function login(httpBase: string, user: string, password: string): Promise<Token>;

/** Where the outbox keeps messages not yet acknowledged. */
export interface OutboxStore {
  put(entry: OutboxEntry): Promise<void>;
  delete(cid: string): Promise<void>;
  list(): Promise<OutboxEntry[]>;
}
/** The IndexedDB outbox of `user` on `deviceId` (browser, or node with fake-indexeddb). */
export function indexedDbOutbox(user: string, deviceId: string, indexedDB?: IDBFactory): OutboxStore;
/** An outbox in memory (lost on reload; for tests and node scripts). */
export function memoryOutbox(): OutboxStore;

/** A device id for this browser tab: kept in sessionStorage, and replaced when another tab
 * holds it (a duplicated tab copies sessionStorage), so two tabs never share a session. A tab
 * holds its id with a Web Lock; a new tab reuses the id of a closed one (remembered in
 * localStorage), so its unsent outbox entries are resent. Without sessionStorage (node): a new
 * random id per call. `env` replaces the browser's objects (tests). */
export function tabDeviceId(env?: {
  sessionStorage?: Pick<Storage, "getItem" | "setItem"> | null;
  localStorage?: Pick<Storage, "getItem" | "setItem"> | null;
  locks?: Pick<LockManager, "request"> | null;
}): Promise<string>;

export interface ConnectOptions {
  /** `ws://host:8080/mqtt` (or `wss://`). */
  url: string;
  user: string;
  /** The MQTT password: a login token (see `login`) or the account's password. */
  password: string;
  /** 1–64 of `A-Z a-z 0-9 _ . -`; default: `tabDeviceId()` in a browser, random in node. */
  deviceId?: string;
  /** Default: `indexedDbOutbox(user, deviceId)` where IndexedDB exists, else memory. */
  outbox?: OutboxStore;
  /** Reconnect backoff: first delay and cap in ms (defaults 500 and 15000), with jitter. */
  reconnect?: { minMs?: number; maxMs?: number };
  /** How long an RPC waits for its reply (default 15000 ms). */
  rpcTimeoutMs?: number;
  /** Batching delay of markDelivered / markRead (default 50 ms). */
  receiptDelayMs?: number;
  /** Aborting it before `connect` resolves closes the client and rejects with `closed`. */
  signal?: AbortSignal;
}

export type State =
  | "connecting" // first connect or reconnect under way
  | "online" // connected and subscribed to user/{me}/#
  | "offline" // lost; reconnecting after a backoff
  | "refused" // the login was refused: stopped (needs a new token)
  | "taken_over" // another connection with this client id: stopped
  | "closed"; // close() was called

export type MessageType = "text" | "image" | "video" | "audio" | "file" | "event";

/** A message as delivered on user/{me}/inbox or listed by history. */
export interface Message {
  id: string;
  from: string;
  to?: string;
  group?: string;
  type: MessageType;
  text?: string;
  media?: string;
  reply_to?: string;
  ts: number;
  /** history only: the recipient's status, and in groups per-member receipts. */
  status?: "sent" | "delivered" | "read";
  receipts?: unknown;
  /** group events */
  event?: string;
  by?: string;
  users?: string[];
  [k: string]: unknown;
}

/** What `send` takes; `cid` is generated when absent. */
export interface Outgoing {
  to?: string;
  group?: string;
  type?: MessageType; // default "text"
  text?: string;
  media?: string;
  reply_to?: string;
  cid?: string;
}

/** A message in the outbox: stored before it is published, removed when acknowledged. */
export interface OutboxEntry extends Outgoing {
  cid: string;
  /** When it was first queued (ms). */
  queued: number;
}

/** The server's ack of a send. */
export interface Ack {
  cid: string;
  id: string;
  ts: number;
  status: "sent";
}

export interface Receipt {
  id: string;
  by: string;
  status: "delivered" | "read";
  ts: number;
}

export interface Presence {
  user: string;
  status: "online" | "offline";
  last_seen: number;
}

export interface Typing {
  from: string;
  group?: string;
}

export interface Conversation {
  with?: string;
  group?: string;
  name?: string;
  last?: Message;
  unread: number;
}

export interface MediaInfo {
  media: string;
  url: string;
  expires: number;
  mime: string;
  size: number;
  sha256: string;
  name?: string;
  width?: number;
  height?: number;
  duration?: number; // ms
  preview?: string; // a data: URL of a small image
}

/** What the uploader may tell about the content (stored with the media id). */
export interface MediaMeta {
  name?: string;
  width?: number;
  height?: number;
  duration?: number;
  preview?: string;
  /** default: the blob's type, else application/octet-stream */
  mime?: string;
}

export interface Profile {
  user: string;
  name: string | null;
  avatar: string | null; // a media id
}

export interface Events {
  /** Every inbox item (chat messages and group events), once per id. `info.resync` is true
   * for a message found by the re-sync of the open chat after a reconnect (history, not the
   * live inbox: count it unread or notify as the app sees fit), false for a live one. */
  message: (m: Message, info: { resync: boolean }) => void;
  /** Group events (also emitted as `message`). */
  groupEvent: (m: Message) => void;
  /** Acks of sends no `send()` promise waits for: entries of a previous page (reload) resent
   * from the outbox. Every ack reaches the app once: as a promise or as this event. */
  ack: (a: Ack) => void;
  /** Refusals (not `unavailable`/`rate_limited`, which are retried) of such sends: the entry
   * has left the outbox. */
  sendFailed: (f: { entry: OutboxEntry; error: ChatError }) => void;
  receipt: (r: Receipt) => void;
  typing: (t: Typing) => void;
  presence: (p: Presence) => void;
  /** The conversation list fetched after each (re)connect. */
  conversations: (c: Conversation[]) => void;
  state: (s: State, detail?: ChatError) => void;
}

/** A connected (or reconnecting) client. */
export interface ChatClient {
  readonly user: string;
  readonly deviceId: string;
  readonly state: State;
  /** Subscribes a handler; returns the function that removes it. */
  on<E extends keyof Events>(event: E, handler: Events[E]): () => void;
  off<E extends keyof Events>(event: E, handler: Events[E]): void;

  /** Queues in the outbox, publishes when online, resolves with the server's ack; the same
   * `cid` is resent after a reconnect or reload until acknowledged. Rejects (ChatError) on an
   * error ack, and the entry leaves the outbox. */
  send(m: Outgoing): Promise<Ack>;
  /** Messages not yet acknowledged. */
  pending(): Promise<OutboxEntry[]>;
  /** Receipts, batched over `receiptDelayMs`. */
  markDelivered(ids: string[]): Promise<void>;
  markRead(ids: string[]): Promise<void>;
  /** QoS 0 typing indicator. */
  typing(to: { to?: string; group?: string }): void;

  history(q: { with?: string; group?: string; before?: string; after?: string; limit?: number }): Promise<{ messages: Message[]; more: boolean }>;
  conversations(q?: { limit?: number; before?: string }): Promise<{ conversations: Conversation[]; more: boolean; next?: string }>;
  /** The chat on screen: after every reconnect its newest history is fetched and new
   * messages are emitted, so a gap never stays. `null`: none. */
  openChat(chat: { with?: string; group?: string } | null): void;

  presence: {
    get(users: string[]): Promise<Presence[]>;
    /** Subscribes presence/{user} (kept across reconnects); updates come as `presence`. */
    watch(users: string[]): Promise<void>;
    unwatch(users: string[]): Promise<void>;
  };
  groups: {
    create(name: string, members: string[]): Promise<string>;
    add(group: string, users: string[]): Promise<void>;
    remove(group: string, users: string[]): Promise<void>;
    promote(group: string, users: string[]): Promise<void>;
    demote(group: string, users: string[]): Promise<void>;
    leave(group: string): Promise<void>;
    rename(group: string, name: string): Promise<void>;
    info(group: string, opts?: { message?: string; after?: string }): Promise<{ group: string; name: string; creator: string; created: number; members: { user: string; role: "admin" | "member"; since: number }[]; more?: boolean; next?: string }>;
  };
  media: {
    /** SHA-256 of the blob, `media.upload`, HTTP PUT unless it exists; the media id. */
    upload(blob: Blob, meta?: MediaMeta): Promise<{ media: string; exists: boolean }>;
    /** `media.download`: a URL to GET and what the uploader told. */
    download(media: string): Promise<MediaInfo>;
  };
  profile: {
    set(p: { name?: string | null; avatar?: string | null }): Promise<void>;
    get(users: string[]): Promise<Profile[]>;
  };
  users: {
    /** Exact id only; rejects `not_found`. */
    find(user: string): Promise<{ user: string }>;
  };
  push: {
    register(platform: "fcm" | "apns", token: string): Promise<void>;
    unregister(token: string): Promise<void>;
  };
  /** Any request: resolves with `result`, rejects with ChatError. */
  rpc(op: string, args?: Record<string, unknown>): Promise<any>;
  /** Disconnects for good (state `closed`); pending sends stay in the outbox. */
  close(): Promise<void>;
}

/** Connects and resolves once online (CONNACK and SUBACK of user/{me}/#); rejects with
 * `not_authorized` when the login is refused (`rate_limited` after too many failed logins from
 * this address). Network failures are retried with the backoff until the server answers.
 * Reconnects on its own afterwards. Events emitted before the promise resolves are held and
 * replayed once the current task is over, so handlers attached right after `await` see them. */
export function connect(opts: ConnectOptions): Promise<ChatClient>;
