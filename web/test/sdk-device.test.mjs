// Device ids per tab: a reload keeps its id, a duplicated tab (which copies sessionStorage) gets
// another, a new tab reuses the id of a closed one; two clients never share one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { tabDeviceId } from "../sdk/index.js";

/** sessionStorage / localStorage in memory. */
class MemoryStorage {
  constructor(from) {
    this.m = new Map(from ? from.m : []);
  }
  getItem(k) {
    return this.m.has(k) ? this.m.get(k) : null;
  }
  setItem(k, v) {
    this.m.set(k, String(v));
  }
}

/** Web Locks as the browser gives them: one holder per name, across tabs; a tab's locks go
 * when the tab is closed or reloaded. */
class Browser {
  constructor() {
    this.held = new Map(); // lock name → tab
    this.localStorage = new MemoryStorage();
  }
  tab(session = new MemoryStorage()) {
    const browser = this;
    const tab = {
      sessionStorage: session,
      localStorage: this.localStorage,
      locks: {
        async request(name, opts, cb) {
          assert.equal(opts.ifAvailable, true);
          if (browser.held.has(name)) return cb(null);
          browser.held.set(name, tab);
          cb({ name });
        },
      },
      close() {
        for (const [name, t] of browser.held) if (t === tab) browser.held.delete(name);
      },
    };
    return tab;
  }
}

test("a duplicated tab gets another device id; a reload keeps its own; a new tab reuses a closed one's", async () => {
  const browser = new Browser();
  const tab1 = browser.tab();
  const id1 = await tabDeviceId(tab1);
  assert.match(id1, /^[A-Za-z0-9_.-]{1,64}$/);
  assert.equal(await tabDeviceId(tab1), id1, "asking again in the same page: the same id");
  // Duplicating the tab copies its sessionStorage, id included.
  const tab2 = browser.tab(new MemoryStorage(tab1.sessionStorage));
  const id2 = await tabDeviceId(tab2);
  assert.notEqual(id2, id1);
  // Reloading tab 1: its page (and lock) goes, its sessionStorage stays.
  tab1.close();
  const reloaded = browser.tab(new MemoryStorage(tab1.sessionStorage));
  assert.equal(await tabDeviceId(reloaded), id1);
  // A new tab while both are open: a third id. Once tab 2 is closed, the next new tab takes id 2.
  const tab3 = browser.tab();
  const id3 = await tabDeviceId(tab3);
  assert.ok(id3 !== id1 && id3 !== id2);
  tab2.close();
  assert.equal(await tabDeviceId(browser.tab()), id2);
});

test("without sessionStorage (node) every call gives a new id", async () => {
  const a = await tabDeviceId({ sessionStorage: null });
  const b = await tabDeviceId({ sessionStorage: null });
  assert.notEqual(a, b);
  assert.match(a, /^[A-Za-z0-9_.-]{1,64}$/);
});
