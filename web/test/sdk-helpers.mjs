// Shared helpers of the SDK tests: a connected client that records its events.
import { connect, memoryOutbox } from "../sdk/index.js";
import { before, after } from "node:test";
import { Chatd, unique } from "./harness.mjs";

export const FAST = { reconnect: { minMs: 100, maxMs: 1000 }, rpcTimeoutMs: 10000, receiptDelayMs: 30 };

/** Connects `u` ({user, password}) and records every event in `c.log[event]`. */
export async function online(chatd, u, opts = {}) {
  const c = await connect({
    url: chatd.wsUrl,
    user: u.user,
    password: u.password,
    deviceId: opts.deviceId || unique("d"),
    outbox: opts.outbox || memoryOutbox(),
    ...FAST,
    ...opts,
  });
  record(c);
  return c;
}

/** Attaches recorders of every event to `c`: `c.log.message`, `c.log.state`, … */
export function record(c) {
  c.log = {};
  for (const e of ["message", "groupEvent", "ack", "sendFailed", "receipt", "typing", "presence", "conversations", "state"]) {
    c.log[e] = [];
    c.on(e, (x, detail) => {
      c.log[e].push(x);
      if (detail && e === "state") c.log.detail = detail; // message has its {resync} too
    });
  }
  return c;
}

/** A fresh user on `chatd`. */
export function newUser(chatd, prefix = "u") {
  return chatd.addUser(unique(prefix));
}

/** One chatd for the tests of a file: started (with `extraToml`) before them and handed to `set`,
 * closed after them with every client the returned `on(u, opts)` connected. */
export function chatdPerFile(set, extraToml = "") {
  const clients = [];
  let chatd;
  before(async () => {
    chatd = await Chatd.start(extraToml);
    set(chatd);
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await chatd?.close();
  });
  return async function on(u, opts) {
    const c = await online(chatd, u, opts);
    clients.push(c);
    return c;
  };
}
