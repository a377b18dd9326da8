// The SDK in Chromium, on a page served by chatd under its Content-Security-Policy: MQTT over
// WebSocket with the native keep-alive timer, sending and receiving, the IndexedDB outbox, and
// tab device ids — a duplicated tab (sessionStorage copied) gets its own, a reload keeps its.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { Chatd, waitFor, launchChromium } from "./harness.mjs";
import { online, newUser } from "./sdk-helpers.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const T = { timeout: 60000 };
let chatd, site, browser;
const clients = [];

before(async () => {
  if (!existsSync(CHROMIUM)) return;
  // The page: the SDK bundled for the browser, exposed on window for the test to drive.
  site = mkdtempSync(join(tmpdir(), "chatd-sdk-page-"));
  await esbuild.build({
    stdin: { contents: `import * as sdk from "./sdk/index.js"; window.sdk = sdk;`, resolveDir: join(here, "..") },
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2020",
    define: { "process.env.NODE_ENV": '"production"', global: "globalThis" },
    outfile: join(site, "sdk.js"),
    logLevel: "warning",
  });
  writeFileSync(join(site, "index.html"), `<!doctype html><meta charset="utf-8"><title>sdk</title><link rel="icon" href="data:,"><script type="module" src="/sdk.js"></script>`);
  chatd = await Chatd.start(`[web]\ndir = ${JSON.stringify(site)}\n`);
  browser = await launchChromium();
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await browser?.close();
  await chatd?.close();
  if (site) rmSync(site, { recursive: true, force: true });
});

/** A page of the site whose CSP violations and errors are collected in `page.problems`. */
async function open(context) {
  const page = await context.newPage();
  watch(page);
  await page.goto(chatd.httpUrl + "/");
  await page.waitForFunction(() => window.sdk);
  return page;
}

function watch(page) {
  page.problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") page.problems.push(m.text());
  });
  page.on("pageerror", (e) => page.problems.push(String(e)));
}

test("in Chromium under chatd's CSP: login, connect, send and receive, IndexedDB outbox", T, async (t) => {
  if (!browser) return t.skip(`no Chromium at ${CHROMIUM}`);
  const a = await newUser(chatd, "br");
  const b = await newUser(chatd, "br");
  const cb = await online(chatd, b);
  clients.push(cb);
  const context = await browser.newContext();
  const page = await open(context);
  const csp = (await page.request.get(chatd.httpUrl + "/")).headers()["content-security-policy"];
  assert.match(csp, /script-src 'self'/);
  const sent = await page.evaluate(
    async ({ a, b, http, ws }) => {
      const { token } = await window.sdk.login(http, a.user, a.password);
      const c = await window.sdk.connect({ url: ws, user: a.user, password: token });
      window.client = c;
      window.got = [];
      c.on("message", (m) => window.got.push(m));
      const ack = await c.send({ to: b, text: "from the browser" });
      return { ack, device: c.deviceId, pending: (await c.pending()).length };
    },
    { a, b: b.user, http: chatd.httpUrl, ws: chatd.wsUrl },
  );
  assert.equal(sent.pending, 0);
  await waitFor(() => cb.log.message.some((m) => m.id === sent.ack.id && m.text === "from the browser"));
  const back = await cb.send({ to: a.user, text: "to the browser" });
  await waitFor(() => page.evaluate((id) => window.got.some((m) => m.id === id), back.id), { what: "the page's message" });
  // The default outbox is IndexedDB: an entry left by this page is sent by the reloaded one
  // (same tab, same device id), answered as an `ack` event.
  const cid = await page.evaluate(async (b) => {
    const c = window.client;
    await c.close();
    const cid = `page-${Date.now()}`;
    await window.sdk.indexedDbOutbox(c.user, c.deviceId).put({ cid, to: b, type: "text", text: "left in the outbox", queued: Date.now() });
    return cid;
  }, b.user);
  await page.reload();
  await page.waitForFunction(() => window.sdk);
  const after = await page.evaluate(
    async ({ a, ws }) => {
      const c = await window.sdk.connect({ url: ws, user: a.user, password: a.password });
      const ack = await new Promise((r) => c.on("ack", r));
      const left = await window.sdk.indexedDbOutbox(c.user, c.deviceId).list();
      await c.close();
      return { ack, left: left.length, device: c.deviceId };
    },
    { a, ws: chatd.wsUrl },
  );
  assert.equal(after.device, sent.device);
  assert.equal(after.ack.cid, cid);
  assert.equal(after.left, 0);
  await waitFor(() => cb.log.message.some((m) => m.id === after.ack.id && m.text === "left in the outbox"));
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("in Chromium: a duplicated tab gets its own device id, a reload keeps its own", T, async (t) => {
  if (!browser) return t.skip(`no Chromium at ${CHROMIUM}`);
  const context = await browser.newContext();
  const page = await open(context);
  const id1 = await page.evaluate(() => window.sdk.tabDeviceId());
  // window.open copies the opener's sessionStorage, as duplicating a tab does.
  const [dup] = await Promise.all([context.waitForEvent("page"), page.evaluate(() => window.open(location.href))]);
  watch(dup);
  await dup.waitForFunction(() => window.sdk);
  assert.equal(await dup.evaluate(() => sessionStorage.getItem("chatd.device")), id1, "the copy starts with the same id");
  const id2 = await dup.evaluate(() => window.sdk.tabDeviceId());
  assert.notEqual(id2, id1);
  assert.equal(await dup.evaluate(() => sessionStorage.getItem("chatd.device")), id2);
  await page.reload();
  await page.waitForFunction(() => window.sdk);
  assert.equal(await page.evaluate(() => window.sdk.tabDeviceId()), id1);
  // Two tabs, two sessions: connecting both leaves both online.
  const a = await newUser(chatd, "tab");
  const states = await Promise.all(
    [page, dup].map((p) =>
      p.evaluate(
        async ({ a, ws }) => {
          const c = await window.sdk.connect({ url: ws, user: a.user, password: a.password });
          window.client = c;
          return c.deviceId;
        },
        { a, ws: chatd.wsUrl },
      ),
    ),
  );
  assert.deepEqual(states, [id1, id2]);
  await new Promise((r) => setTimeout(r, 500));
  for (const p of [page, dup]) assert.equal(await p.evaluate(() => window.client.state), "online");
  assert.deepEqual([...page.problems, ...dup.problems], []);
  await context.close();
});
