// Where unacknowledged sends wait: in IndexedDB (kept across reloads) or in memory.
// An entry is written before its message is published and removed when the server's ack (or
// refusal) arrives, so a reload or a reconnect resends it with the same cid, and the server,
// which de-duplicates by cid, stores it once.

const DB_NAME = "chatd-outbox";
const STORE = "entries";

/** An outbox in memory (lost on reload; for tests and node scripts). */
export function memoryOutbox() {
  const entries = new Map();
  return {
    async put(entry) {
      entries.set(entry.cid, { ...entry });
    },
    async delete(cid) {
      entries.delete(cid);
    },
    async list() {
      return [...entries.values()].map((e) => ({ ...e })).sort(byQueued);
    },
  };
}

function byQueued(a, b) {
  return a.queued - b.queued || (a.cid < b.cid ? -1 : a.cid > b.cid ? 1 : 0);
}

function request(req) {
  return new Promise((ok, fail) => {
    req.onsuccess = () => ok(req.result);
    req.onerror = () => fail(req.error);
  });
}

/** The IndexedDB outbox of `user` on `deviceId` (browser, or node with fake-indexeddb). */
export function indexedDbOutbox(user, deviceId, idb = globalThis.indexedDB) {
  if (!idb) throw new Error("indexedDbOutbox: no IndexedDB here (pass one, e.g. fake-indexeddb)");
  const owner = `${user}:${deviceId}`;
  let db = null;
  const open = () => {
    if (!db) {
      db = new Promise((ok, fail) => {
        const req = idb.open(DB_NAME, 1);
        req.onupgradeneeded = () => {
          const store = req.result.createObjectStore(STORE, { keyPath: "key" });
          store.createIndex("owner", "owner");
        };
        req.onsuccess = () => ok(req.result);
        req.onerror = () => fail(req.error);
        req.onblocked = () => fail(new Error("IndexedDB open blocked"));
      });
      // A failed open is tried again on the next call rather than cached.
      db.catch(() => (db = null));
    }
    return db;
  };
  const tx = async (mode, fn) => {
    const d = await open();
    const t = d.transaction(STORE, mode);
    const result = fn(t.objectStore(STORE));
    await new Promise((ok, fail) => {
      t.oncomplete = ok;
      t.onerror = () => fail(t.error);
      t.onabort = () => fail(t.error || new Error("IndexedDB transaction aborted"));
    });
    return result;
  };
  return {
    async put(entry) {
      await tx("readwrite", (s) => s.put({ key: `${owner}/${entry.cid}`, owner, entry: { ...entry } }));
    },
    async delete(cid) {
      await tx("readwrite", (s) => s.delete(`${owner}/${cid}`));
    },
    async list() {
      const d = await open();
      const rows = await request(d.transaction(STORE, "readonly").objectStore(STORE).index("owner").getAll(owner));
      return rows.map((r) => r.entry).sort(byQueued);
    },
  };
}
