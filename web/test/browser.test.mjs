// The web client in a real browser (Debian's Chromium, driven by playwright-core) against a real
// chatd: two or three users in separate browser contexts, each a tab of its own.
//
// WEB_DIR_FROM_DISK=1 serves web/dist from disk (`[web] dir`) instead of the bundle built into
// the chatd binary, for a binary built before the latest bundle (or set it to another folder).
// SCREENSHOTS=1 saves the main screens into docs/screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { deflateSync } from "node:zlib";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Chatd, waitFor, unique, launchChromium } from "./harness.mjs";
import { connect, memoryOutbox } from "../sdk/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const SHOTS = resolve(here, "../../docs/screenshots");
const WAIT = 20000;

let srv;
let browser;

before(async () => {
  const fromDisk = process.env.WEB_DIR_FROM_DISK;
  const dir = fromDisk === "1" ? resolve(here, "../dist") : fromDisk && resolve(fromDisk);
  const web = dir ? `[web]\ndir = ${JSON.stringify(dir)}\n` : "";
  srv = await Chatd.start(web);
  browser = await launchChromium([
    // A microphone that plays a tone, allowed without asking: voice notes can be recorded.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
  ]);
});

after(async () => {
  await browser?.close();
  await srv?.close();
});

/** A new user in a browser context of its own, logged in through the login screen. */
async function loggedIn(prefix, { viewport = { width: 1100, height: 760 }, shot } = {}) {
  const { user, password } = await srv.addUser(unique(prefix));
  // Screenshots read better with names than with the tests' unique ids.
  const name = process.env.SCREENSHOTS ? prefix[0].toUpperCase() + prefix.slice(1) : null;
  if (name) {
    const c = await connect({ url: srv.wsUrl, user, password, outbox: memoryOutbox() });
    await c.profile.set({ name });
    await c.close();
  }
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e));
  // The page runs under chatd's CSP: anything it blocks is a defect of the client.
  page.on("console", (m) => /Content.Security.Policy/i.test(m.text()) && page.errors.push(m.text()));
  await page.goto(`${srv.httpUrl}/`);
  await page.getByTestId("login-user").fill(user);
  await page.getByTestId("login-password").fill(password);
  if (shot) await screenshot(page, shot);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("app").waitFor({ timeout: WAIT });
  page.user = user;
  page.password = password;
  page.name = name || user;
  return page;
}

async function screenshot(page, name) {
  if (!process.env.SCREENSHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}/${name}.png` });
}

/** Starts a chat with `other` from `page`'s new-chat dialog. */
async function startChat(page, other) {
  await page.getByTestId("new-chat-button").click();
  await page.getByTestId("new-chat-user").fill(other);
  await page.getByTestId("new-chat-submit").click();
  await page.locator(`[data-testid=chat-view][data-chat="u:${other}"]`).waitFor({ timeout: WAIT });
}

async function sendText(page, text) {
  await page.getByTestId("composer-input").fill(text);
  await page.getByTestId("composer-send").click();
}

/** The message bubbles with exactly `text` in `page`'s open chat. */
function bubbles(page, text) {
  return page
    .getByTestId("messages")
    .getByTestId("message")
    .filter({ has: page.getByTestId("message-text").getByText(text, { exact: true }) });
}

async function waitStatus(page, text, status) {
  await waitFor(async () => (await bubbles(page, text).getAttribute("data-status", { timeout: 1000 })) === status, {
    ms: WAIT,
    what: `"${text}" to be ${status} for ${page.user}`,
  });
}

function conversation(page, key) {
  return page.locator(`[data-testid=conversation][data-chat="${key}"]`);
}

async function openConversation(page, key) {
  await conversation(page, key).click({ timeout: WAIT });
  await page.locator(`[data-testid=chat-view][data-chat="${key}"]`).waitFor({ timeout: WAIT });
}

async function chatStatus(page, wanted, what) {
  await waitFor(async () => wanted.test(await page.getByTestId("chat-status").innerText({ timeout: 1000 })), {
    ms: WAIT,
    what,
  });
}

/** The CRC-32 of PNG chunks (zlib.crc32 is not in every Node.js the tests run on). */
function crc32(bytes) {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** A `width`×`height` RGB PNG of a colour gradient (a real picture for the browser to decode). */
function testPng(width, height) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      rows.set([(x * 255) / width, 120, (y * 255) / height], row + 1 + x * 3);
    }
  }
  const signature = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([signature, chunk("IHDR", header), chunk("IDAT", deflateSync(rows)), chunk("IEND", Buffer.alloc(0))]);
}

function noPageErrors(...pages) {
  for (const p of pages) assert.deepEqual(p.errors.map(String), [], `page errors for ${p.user}`);
}

test("a message each way: unread counts, ticks turning to read, typing, presence and last seen, a background notification", async () => {
  const alice = await loggedIn("alice", { shot: "login" });
  const bob = await loggedIn("bob");

  // A chat starts from an exact user id; an unknown one is refused.
  await alice.getByTestId("new-chat-button").click();
  await alice.getByTestId("new-chat-user").fill(`${bob.user}x`);
  await alice.getByTestId("new-chat-submit").click();
  await alice.getByTestId("new-chat-error").getByText(`No user “${bob.user}x”.`).waitFor({ timeout: WAIT });
  await alice.getByTestId("dialog-close").click();
  await startChat(alice, bob.user);
  await chatStatus(alice, /^online$/, "alice to see bob online");
  await sendText(alice, "hello bob");
  await waitFor(async () => ["sent", "delivered"].includes(await bubbles(alice, "hello bob").getAttribute("data-status")), {
    ms: WAIT,
    what: "alice's message acknowledged",
  });

  // Bob's list: the conversation with its unread count, last message and time.
  const fromAlice = conversation(bob, `u:${alice.user}`);
  await fromAlice.getByTestId("conversation-unread").getByText("1", { exact: true }).waitFor({ timeout: WAIT });
  assert.equal(await fromAlice.getByTestId("conversation-last").innerText(), "hello bob");
  assert.match(await fromAlice.getByTestId("conversation-time").innerText(), /^\d\d:\d\d$/);
  await waitStatus(alice, "hello bob", "delivered");
  await screenshot(bob, "conversation-list");

  await openConversation(bob, `u:${alice.user}`);
  await bubbles(bob, "hello bob").waitFor({ timeout: WAIT });
  await waitStatus(alice, "hello bob", "read");
  assert.equal(await fromAlice.getByTestId("conversation-unread").count(), 0, "read: no unread count");

  // Typing shows in alice's header while bob types.
  await bob.getByTestId("composer-input").pressSequentially("a rep", { delay: 20 });
  await chatStatus(alice, /typing/, "alice to see bob typing");
  await bob.getByTestId("composer-input").fill("hi alice");
  await bob.getByTestId("composer-send").click();
  await bubbles(alice, "hi alice").waitFor({ timeout: WAIT });
  await waitStatus(bob, "hi alice", "read");
  await chatStatus(alice, /^online$/, "typing to end with bob's message");

  // In the background bob gets a notification and the unread count in the tab's title.
  await bob.evaluate(() => {
    window.notes = [];
    window.Notification = class {
      static permission = "granted";
      constructor(title, opts) {
        window.notes.push({ title, body: opts.body });
      }
    };
    Object.defineProperty(document, "visibilityState", { value: "hidden", configurable: true });
    document.dispatchEvent(new Event("visibilitychange"));
  });
  await sendText(alice, "are you there?");
  await waitFor(() => bob.evaluate(() => window.notes.length === 1), { ms: WAIT, what: "bob's notification" });
  assert.deepEqual(await bob.evaluate(() => window.notes), [{ title: alice.name, body: "are you there?" }]);
  await waitFor(async () => (await bob.title()) === "(1) chatd", { ms: WAIT, what: "the unread count in the title" });
  assert.equal(await bubbles(alice, "are you there?").getAttribute("data-status") !== "read", true, "not read while hidden");
  await bob.evaluate(() => {
    delete document.visibilityState;
    document.dispatchEvent(new Event("visibilitychange"));
  });
  await waitStatus(alice, "are you there?", "read");
  await waitFor(async () => (await bob.title()) === "chatd", { ms: WAIT, what: "the title without unread" });

  // Bob goes away: alice sees when he was last seen.
  noPageErrors(alice, bob);
  await bob.context().close();
  await chatStatus(alice, /^last seen \d\d:\d\d$/, "alice to see bob's last seen");
});

test("media: an image with its size and preview, a voice note, a video, a file; and the phone-sized view", async () => {
  const alice = await loggedIn("alice");
  const bob = await loggedIn("bob");
  await startChat(alice, bob.user);
  await sendText(alice, "a picture follows");
  await alice.getByTestId("attach-input").setInputFiles({
    name: "sunset.png",
    mimeType: "image/png",
    buffer: testPng(320, 200),
  });
  const mine = alice.getByTestId("message").filter({ has: alice.getByTestId("message-image") });
  await mine.waitFor({ timeout: WAIT });

  await openConversation(bob, `u:${alice.user}`);
  const preview = bob.getByTestId("message-preview");
  await preview.waitFor({ timeout: WAIT });
  const src = await preview.getAttribute("src");
  assert.match(src, /^data:image\/jpeg;base64,/, "a JPEG preview made by the sender");
  assert.ok(src.length <= 12_000, `a small preview: ${src.length} characters`);
  const image = bob.getByTestId("message-image");
  await waitFor(() => image.evaluate((img) => img.complete && img.naturalWidth), { ms: WAIT, what: "the picture loaded" });
  assert.equal(await image.evaluate((img) => [img.naturalWidth, img.naturalHeight].join("x")), "320x200");
  assert.equal(await bob.getByTestId("message-image").count(), 1);
  await waitFor(async () => (await mine.getAttribute("data-status")) === "read", { ms: WAIT, what: "the image read" });
  await screenshot(alice, "chat");

  // A voice note recorded from the (fake) microphone, and a file with its name and size.
  await alice.getByTestId("record-voice").click();
  await alice.getByTestId("recording").getByText(/Recording 0:0[1-9]/).waitFor({ timeout: WAIT });
  await alice.getByTestId("recording-send").click();
  const audio = bob.getByTestId("message-audio");
  await audio.waitFor({ timeout: WAIT });
  await waitFor(() => audio.evaluate((a) => a.readyState >= 1 && a.duration > 0), { ms: WAIT, what: "the voice note playable" });
  // A video (recorded from a canvas in alice's page: a real WebM to play).
  const video = await alice.evaluate(async () => {
    const canvas = Object.assign(document.createElement("canvas"), { width: 160, height: 120 });
    const ctx = canvas.getContext("2d");
    const rec = new MediaRecorder(canvas.captureStream(10), { mimeType: "video/webm" });
    const chunks = [];
    rec.ondataavailable = (e) => chunks.push(e.data);
    let frame = 0;
    const paint = setInterval(() => {
      ctx.fillStyle = `hsl(${(frame += 30)}, 80%, 50%)`;
      ctx.fillRect(0, 0, 160, 120);
    }, 50);
    const stopped = new Promise((ok) => (rec.onstop = ok));
    rec.start();
    await new Promise((ok) => setTimeout(ok, 600)); // the length of the clip
    rec.stop();
    await stopped;
    clearInterval(paint);
    const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  });
  await alice.getByTestId("attach-input").setInputFiles({
    name: "clip.webm",
    mimeType: "video/webm",
    buffer: Buffer.from(video, "base64"),
  });
  const player = bob.getByTestId("message-video");
  await player.waitFor({ timeout: WAIT });
  await waitFor(() => player.evaluate((v) => v.readyState >= 1 && v.videoWidth === 160), { ms: WAIT, what: "the video playable" });
  assert.match(await player.getAttribute("style"), /aspect-ratio: 160 \/ 120/, "its size came with it");

  await alice.getByTestId("attach-input").setInputFiles({
    name: "notes.txt",
    mimeType: "text/plain",
    buffer: Buffer.alloc(1536, "x"),
  });
  const file = bob.getByTestId("message-file");
  await file.waitFor({ timeout: WAIT });
  // The name shows once media.download has answered ("File" until then).
  await file.locator(".file-name").getByText("notes.txt", { exact: true }).waitFor({ timeout: WAIT });
  assert.equal(await file.locator(".file-size").innerText(), "1.5 KB");

  // Phone-sized: the list, then the chat alone with a way back.
  const phone = await browser.newContext({ viewport: { width: 390, height: 780 }, deviceScaleFactor: 2 });
  const page = await phone.newPage();
  await page.goto(`${srv.httpUrl}/`);
  await page.getByTestId("login-user").fill(bob.user);
  await page.getByTestId("login-password").fill(bob.password);
  await page.getByTestId("login-submit").click();
  await conversation(page, `u:${alice.user}`).waitFor({ timeout: WAIT });
  await openConversation(page, `u:${alice.user}`);
  assert.equal(await conversation(page, `u:${alice.user}`).isVisible(), false, "the list is hidden behind the chat");
  await page.getByTestId("message-image").waitFor({ timeout: WAIT });
  await screenshot(page, "phone");
  await page.getByTestId("chat-back").click();
  await conversation(page, `u:${alice.user}`).waitFor({ state: "visible", timeout: WAIT });
  noPageErrors(alice, bob);
});

test("profiles: the name and picture set on the profile screen show on the other side", async () => {
  const alice = await loggedIn("alice");
  const bob = await loggedIn("bob");
  await bob.getByTestId("profile-button").click();
  await bob.getByTestId("profile-name").fill("Bob Builder");
  await bob.getByTestId("profile-save").click();
  await bob.getByTestId("profile-status").getByText("Saved.").waitFor({ timeout: WAIT });
  await bob.getByTestId("dialog-close").click();

  // Alice sees bob's name once they share a conversation: after her first message.
  await startChat(alice, bob.user);
  await sendText(alice, "hello from alice");
  await alice.getByTestId("chat-title").getByText("Bob Builder").waitFor({ timeout: WAIT });
  await conversation(bob, `u:${alice.user}`).waitFor({ timeout: WAIT });

  await alice.getByTestId("profile-button").click();
  await alice.getByTestId("profile-name").fill("Alice Liddell");
  await alice.getByTestId("profile-avatar").setInputFiles({ name: "me.png", mimeType: "image/png", buffer: testPng(64, 64) });
  await alice.getByTestId("profile-save").click();
  await alice.getByTestId("profile-status").getByText("Saved.").waitFor({ timeout: WAIT });
  await alice.getByTestId("dialog-close").click();
  await alice.getByTestId("me").getByText("Alice Liddell").waitFor({ timeout: WAIT });

  // Profiles are not pushed: bob's client asks again when he opens the chat.
  await openConversation(bob, `u:${alice.user}`);
  await bob.getByTestId("chat-title").getByText("Alice Liddell").waitFor({ timeout: WAIT });
  await conversation(bob, `u:${alice.user}`).getByTestId("conversation-name").getByText("Alice Liddell").waitFor();
  const picture = bob.locator("[data-testid=chat-view] header [data-testid=avatar] img");
  await waitFor(() => picture.evaluate((img) => img.complete && img.naturalWidth === 64), { ms: WAIT, what: "alice's picture" });
  noPageErrors(alice, bob);
});

test("a group of three: created, read when all read, an admin made, a member removed who then gets nothing, renamed, left", async () => {
  const alice = await loggedIn("alice");
  const bob = await loggedIn("bob");
  const carol = await loggedIn("carol");

  await alice.getByTestId("new-group-button").click();
  await alice.getByTestId("new-group-name").fill("Weekend trip");
  await alice.getByTestId("new-group-members").fill(`${bob.user}, ${carol.user}`);
  await alice.getByTestId("new-group-submit").click();
  const view = alice.locator("[data-testid=chat-view][data-chat^='g:']");
  await view.waitFor({ timeout: WAIT });
  const key = await view.getAttribute("data-chat");
  await chatStatus(alice, /^3 members$/, "the member count");

  await sendText(alice, "hi both");
  for (const p of [bob, carol]) {
    await conversation(p, key).getByTestId("conversation-name").getByText("Weekend trip").waitFor({ timeout: WAIT });
    await conversation(p, key).getByTestId("conversation-unread").waitFor({ timeout: WAIT });
  }
  await openConversation(bob, key);
  await bubbles(bob, "hi both").waitFor({ timeout: WAIT });
  // Bob's read reaches alice; it is still only delivered: read needs every member.
  await waitFor(async () => (await bubbles(alice, "hi both").getAttribute("data-read")) === "1", {
    ms: WAIT,
    what: "bob's read receipt",
  });
  assert.equal(await bubbles(alice, "hi both").getAttribute("data-status"), "delivered");
  await openConversation(carol, key);
  await waitStatus(alice, "hi both", "read");

  // The member list with roles; alice removes carol.
  await alice.getByTestId("group-info-button").click();
  const members = alice.getByTestId("group-members");
  await members.locator(`[data-user="${alice.user}"][data-role=admin]`).waitFor({ timeout: WAIT });
  await members.locator(`[data-user="${bob.user}"][data-role=member]`).waitFor();
  await members.locator(`[data-user="${bob.user}"]`).getByTestId("member-promote").click();
  await members.locator(`[data-user="${bob.user}"][data-role=admin]`).waitFor({ timeout: WAIT });
  await screenshot(alice, "group");
  await members.locator(`[data-user="${carol.user}"]`).getByTestId("member-remove").click();
  await members.locator(`[data-user="${carol.user}"]`).waitFor({ state: "detached", timeout: WAIT });

  await carol.getByTestId("group-left-notice").waitFor({ timeout: WAIT });
  await bob.getByTestId("group-event").filter({ hasText: "removed" }).waitFor({ timeout: WAIT });
  await bob.getByTestId("group-info-button").click();
  await waitFor(async () => (await bob.getByTestId("member").count()) === 2, { ms: WAIT, what: "bob's list of two" });

  await sendText(alice, "just us now");
  await bubbles(bob, "just us now").waitFor({ timeout: WAIT });
  await waitStatus(alice, "just us now", "read");
  assert.equal(await bubbles(carol, "just us now").count(), 0, "carol was removed before it");
  await carol.reload();
  await openConversation(carol, key);
  await bubbles(carol, "hi both").waitFor({ timeout: WAIT });
  assert.equal(await bubbles(carol, "just us now").count(), 0, "not in carol's history either");

  // Renamed by an admin; then bob leaves.
  await alice.getByTestId("group-rename").click();
  await alice.getByTestId("group-rename-input").fill("Long weekend");
  await alice.getByTestId("group-rename-submit").click();
  await conversation(bob, key).getByTestId("conversation-name").getByText("Long weekend").waitFor({ timeout: WAIT });
  await bob.getByTestId("chat-title").getByText("Long weekend").waitFor({ timeout: WAIT });
  await bob.getByTestId("group-leave").click();
  await bob.getByTestId("group-left-notice").waitFor({ timeout: WAIT });
  await waitFor(async () => (await alice.getByTestId("member").count()) === 1, { ms: WAIT, what: "alice alone" });
  await alice.getByTestId("group-event").filter({ hasText: "left" }).waitFor({ timeout: WAIT });
  noPageErrors(alice, bob, carol);
});

test("history pages in as the chat scrolls up, and the unread count goes with reading", async () => {
  const alice = await loggedIn("alice");
  const { user: bob, password } = await srv.addUser(unique("bob"));
  const client = await connect({ url: srv.wsUrl, user: bob, password, outbox: memoryOutbox() });
  for (let i = 1; i <= 45; i++) await client.send({ to: alice.user, text: `old ${i}` });
  await client.close();

  const key = `u:${bob}`;
  await conversation(alice, key).getByTestId("conversation-unread").getByText("45", { exact: true }).waitFor({ timeout: WAIT });
  // After a reload (the login kept) the page knows only what history tells.
  await alice.reload();
  await conversation(alice, key).getByTestId("conversation-unread").getByText("45", { exact: true }).waitFor({ timeout: WAIT });
  await openConversation(alice, key);
  await bubbles(alice, "old 45").waitFor({ timeout: WAIT });
  const firstPage = await alice.getByTestId("message").count();
  assert.ok(firstPage < 45, `one page first, not all: ${firstPage}`);
  assert.equal(await bubbles(alice, "old 1").count(), 0);
  assert.equal(await conversation(alice, key).getByTestId("conversation-unread").count(), 0);

  await alice.getByTestId("messages").evaluate((el) => (el.scrollTop = 0));
  await bubbles(alice, "old 1").waitFor({ timeout: WAIT });
  await alice.getByTestId("history-start").waitFor({ timeout: WAIT });
  assert.equal(await alice.getByTestId("message").count(), 45);
  const texts = await alice.getByTestId("message-text").allInnerTexts();
  assert.deepEqual(texts, Array.from({ length: 45 }, (_, i) => `old ${i + 1}`), "in order, each once");
  noPageErrors(alice);
});

test("the server restarts mid-conversation: the message typed meanwhile arrives exactly once", async () => {
  const alice = await loggedIn("alice");
  const bob = await loggedIn("bob");
  await startChat(alice, bob.user);
  await sendText(alice, "before the restart");
  await openConversation(bob, `u:${alice.user}`);
  await waitStatus(alice, "before the restart", "read");

  await srv.stop();
  await alice.getByTestId("connection-state").waitFor({ timeout: WAIT });
  await sendText(alice, "typed while it was down");
  assert.equal(await bubbles(alice, "typed while it was down").getAttribute("data-status"), "pending");
  await srv.spawn();

  await bubbles(bob, "typed while it was down").waitFor({ timeout: 60000 });
  await waitStatus(alice, "typed while it was down", "read");
  await alice.getByTestId("connection-state").waitFor({ state: "detached", timeout: WAIT });
  await sendText(bob, "got it");
  await bubbles(alice, "got it").waitFor({ timeout: WAIT });
  for (const p of [alice, bob]) {
    assert.equal(await bubbles(p, "typed while it was down").count(), 1, `once for ${p.user}`);
  }
  // And once in the history a reload reads.
  await bob.reload();
  await openConversation(bob, `u:${alice.user}`);
  await bubbles(bob, "got it").waitFor({ timeout: WAIT });
  assert.equal(await bubbles(bob, "typed while it was down").count(), 1, "once in the history");
  noPageErrors(alice);
});

test("a message alice sent from her phone shows in the chat her page had loaded already", async () => {
  const alice = await loggedIn("alice");
  const { user: bob } = await srv.addUser(unique("bob"));
  const { user: carol } = await srv.addUser(unique("carol"));
  await startChat(alice, bob);
  await sendText(alice, "from the web");
  await waitStatus(alice, "from the web", "sent");
  // Another chat on screen: the one with bob stays loaded, as it was.
  await startChat(alice, carol);

  // Alice's phone (a second device) sends to bob: her page never gets it through its inbox.
  const phone = await connect({
    url: srv.wsUrl, user: alice.user, password: alice.password, deviceId: "phone", outbox: memoryOutbox(),
  });
  await phone.send({ to: bob, text: "from my phone" });
  await phone.close();
  // The page learns of it from the conversation list read after it reconnects.
  await srv.restart();
  await alice.getByTestId("connection-state").waitFor({ state: "detached", timeout: 60000 });
  const withBob = conversation(alice, `u:${bob}`);
  await waitFor(async () => {
    const t = await withBob.getByTestId("conversation-last").innerText();
    return /^\W*from my phone$/.test(t); // after the ticks of a message of hers
  }, {
    ms: WAIT,
    what: "the phone's message last in alice's list",
  });
  await openConversation(alice, `u:${bob}`);
  await bubbles(alice, "from my phone").waitFor({ timeout: WAIT });
  assert.equal(await bubbles(alice, "from the web").count(), 1, "the page's own message once");
  noPageErrors(alice);
});

test("a chat started with New chat sorts at the top of the list", async () => {
  const alice = await loggedIn("alice");
  const { user: bob, password } = await srv.addUser(unique("bob"));
  const { user: carol } = await srv.addUser(unique("carol"));
  const client = await connect({ url: srv.wsUrl, user: bob, password, outbox: memoryOutbox() });
  await client.send({ to: alice.user, text: "hello alice" });
  await client.close();
  await conversation(alice, `u:${bob}`).waitFor({ timeout: WAIT });

  await startChat(alice, carol);
  const keys = await alice.getByTestId("conversation").evaluateAll((els) => els.map((e) => e.dataset.chat));
  assert.deepEqual(keys, [`u:${carol}`, `u:${bob}`], "the new chat first");
  noPageErrors(alice);
});

test("a saved login about to expire is not resumed: the login screen asks again", async () => {
  const alice = await loggedIn("alice");
  await alice.evaluate(() => {
    const s = JSON.parse(localStorage.getItem("chatd.session"));
    localStorage.setItem("chatd.session", JSON.stringify({ ...s, expires: Date.now() + 5 * 60_000 }));
  });
  await alice.reload();
  await alice.getByText("Your session expired; please log in again.").waitFor({ timeout: WAIT });
  assert.equal(await alice.getByTestId("app").count(), 0, "not logged in");
  assert.equal(await alice.evaluate(() => localStorage.getItem("chatd.session")), null, "the token forgotten");
  noPageErrors(alice);
});
