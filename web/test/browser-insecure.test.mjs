// The web client on a page that is not a secure context: chatd reached over plain HTTP by a
// name other than localhost (as from another machine on a LAN). Browsers give such a page no
// Web Crypto, so the SDK hashes uploads itself; this checks that a file sent from there arrives
// whole and verified. Chromium resolves the made-up name to 127.0.0.1; chatd's media URLs use
// it too (`media.fs.public_url`), as an operator would configure it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Chatd, waitFor, unique, launchChromium } from "./harness.mjs";
import { connect, memoryOutbox } from "../sdk/index.js";

const HOST = "chat.test";
const WAIT = 20000;

let srv;
let browser;

before(async () => {
  srv = await Chatd.start((c) => `[media.fs]\npublic_url = "http://${HOST}:${c.httpPort}"\n`);
  browser = await launchChromium([`--host-resolver-rules=MAP ${HOST} 127.0.0.1`]);
});

after(async () => {
  await browser?.close();
  await srv?.close();
});

test("a file sent from a plain-HTTP page (no Web Crypto) arrives whole, with its SHA-256 verified", async () => {
  const alice = await srv.addUser(unique("alice"));
  const bob = await srv.addUser(unique("bob"));
  const received = [];
  const b = await connect({ url: srv.wsUrl, user: bob.user, password: bob.password, outbox: memoryOutbox() });
  b.on("message", (m) => received.push(m));

  const page = await (await browser.newContext()).newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`http://${HOST}:${srv.httpPort}/`);
  assert.deepEqual(
    await page.evaluate(() => [window.isSecureContext, typeof globalThis.crypto?.subtle]),
    [false, "undefined"],
    "the page is not a secure context",
  );
  await page.getByTestId("login-user").fill(alice.user);
  await page.getByTestId("login-password").fill(alice.password);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("app").waitFor({ timeout: WAIT });
  await page.getByTestId("new-chat-button").click();
  await page.getByTestId("new-chat-user").fill(bob.user);
  await page.getByTestId("new-chat-submit").click();
  await page.locator(`[data-testid=chat-view][data-chat="u:${bob.user}"]`).waitFor({ timeout: WAIT });

  const bytes = randomBytes(200_000);
  await page.getByTestId("attach-input").setInputFiles({ name: "report.bin", mimeType: "application/octet-stream", buffer: bytes });

  const m = await waitFor(() => received.find((x) => x.type === "file"), { ms: WAIT, what: "bob to get the file" });
  const info = await b.media.download(m.media);
  assert.equal(info.sha256, createHash("sha256").update(bytes).digest("hex"));
  assert.equal(info.name, "report.bin");
  const got = Buffer.from(await (await fetch(info.url.replace(HOST, "127.0.0.1"))).arrayBuffer());
  assert.ok(got.equals(bytes), "the bytes bob downloads are the ones alice sent");
  const mine = page.getByTestId("message").filter({ has: page.getByTestId("message-file") });
  await waitFor(async () => ["sent", "delivered", "read"].includes(await mine.getAttribute("data-status", { timeout: 1000 })), {
    ms: WAIT,
    what: "alice's file acknowledged",
  });
  assert.deepEqual(errors, []);
  await b.close();
});
