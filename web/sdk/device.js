// A device id per browser tab. The MQTT client id is `{user}:{device}`, and a second connection
// with the same client id takes the first one's session over, so two live tabs must never share a
// device id — yet a reloaded tab should keep its id (its outbox is keyed by it), and a new tab
// should reuse the id of a closed one (its unsent messages are then resent, and the user does not
// collect a new device, with its kept session and push token, per tab ever opened).
//
// A tab holds its id with a Web Lock for as long as it lives. A duplicated tab copies
// sessionStorage, finds the id's lock taken, and picks another.
import { randomId } from "./ids.js";

const SESSION_KEY = "chatd.device";
const KNOWN_KEY = "chatd.devices";
const MAX_KNOWN = 16;
const LOCK_PREFIX = "chatd-device-";

/** Takes the Web Lock of `id` if no other tab holds it; holds it until the tab goes away. */
function tryHold(locks, id) {
  return new Promise((ok, fail) => {
    locks
      .request(LOCK_PREFIX + id, { ifAvailable: true }, (lock) => {
        ok(!!lock);
        // Returning a promise that never settles keeps the lock for the page's lifetime.
        return lock ? new Promise(() => {}) : undefined;
      })
      .catch(fail);
  });
}

function readKnown(storage) {
  try {
    const v = JSON.parse(storage?.getItem(KNOWN_KEY) || "[]");
    return Array.isArray(v) ? v.filter((x) => typeof x === "string" && /^[A-Za-z0-9_.-]{1,64}$/.test(x)) : [];
  } catch {
    return [];
  }
}

/** A device id for this tab: kept in sessionStorage, never one another live tab holds.
 * `env` replaces the browser's `sessionStorage`, `localStorage` and `navigator.locks` (tests). */
export async function tabDeviceId(env = {}) {
  const g = globalThis;
  const session = "sessionStorage" in env ? env.sessionStorage : safe(() => g.sessionStorage);
  const local = "localStorage" in env ? env.localStorage : safe(() => g.localStorage);
  const locks = "locks" in env ? env.locks : g.navigator?.locks;
  if (!session) return `d${randomId(11)}`;
  // This page holds its id's lock already: asking again must not find it "taken" by itself.
  if (!held.has(session)) held.set(session, pick(session, local, locks));
  return held.get(session);
}

/** The ids this page holds, by its sessionStorage (one per page; tests simulate several). */
const held = new WeakMap();

async function pick(session, local, locks) {
  const mine = session.getItem(SESSION_KEY);
  if (!locks) {
    // No Web Locks: the best left is sessionStorage (a duplicated tab is not told apart).
    if (mine) return mine;
    const id = `d${randomId(11)}`;
    session.setItem(SESSION_KEY, id);
    return id;
  }
  const known = readKnown(local);
  const candidates = [...(mine ? [mine] : []), ...known.filter((k) => k !== mine)];
  let id = null;
  for (const c of candidates) {
    if (await tryHold(locks, c)) {
      id = c;
      break;
    }
  }
  if (!id) {
    do id = `d${randomId(11)}`;
    while (!(await tryHold(locks, id)));
  }
  session.setItem(SESSION_KEY, id);
  if (local) {
    const next = [id, ...known.filter((k) => k !== id)].slice(0, MAX_KNOWN);
    try {
      local.setItem(KNOWN_KEY, JSON.stringify(next));
    } catch {
      // Storage full or denied: the id still works, it is just not reused later.
    }
  }
  return id;
}

function safe(f) {
  try {
    return f();
  } catch {
    return undefined;
  }
}
