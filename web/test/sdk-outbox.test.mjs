// The SDK across server restarts and reloads: the outbox resends with the same cid (delivered
// exactly once), requests and receipts made while offline complete after the reconnect, and the
// re-sync after a reconnect closes a gap the queue cannot fill.
import { test } from "node:test";
import assert from "node:assert/strict";
import { IDBFactory } from "fake-indexeddb";
import mqtt from "mqtt";
import { waitFor, unique } from "./harness.mjs";
import { indexedDbOutbox } from "../sdk/index.js";
import { chatdPerFile, online, newUser } from "./sdk-helpers.mjs";

let chatd;
/** No test may hang the suite: each gets a generous limit. */
const T = { timeout: 60000 };
const on = chatdPerFile((c) => (chatd = c));

/** How many messages of the a–b conversation carry `text` (the server's truth). */
async function copies(reader, other, text) {
  const h = await reader.history({ with: other, limit: 100 });
  return h.messages.filter((m) => m.text === text).length;
}

async function stopped() {
  await chatd.stop();
}

test("a send made while the server is stopped is delivered exactly once after the restart", T, async () => {
  const a = await newUser(chatd, "ob");
  const b = await newUser(chatd, "ob");
  const idb = new IDBFactory();
  const device = unique("d");
  const ca = await on(a, { deviceId: device, outbox: indexedDbOutbox(a.user, device, idb) });
  const cb = await on(b);
  await stopped();
  await waitFor(() => ca.state === "offline" || ca.state === "connecting", { what: "offline" });
  const text = unique("while-down-");
  const sent = ca.send({ to: b.user, text });
  await waitFor(async () => (await ca.pending()).length === 1);
  const stored = await indexedDbOutbox(a.user, device, idb).list();
  assert.deepEqual(stored.map((e) => e.text), [text]);
  // A request made while offline waits for the connection too.
  const hist = ca.history({ with: b.user });
  await chatd.spawn();
  const ack = await sent;
  assert.equal(ack.cid, stored[0].cid);
  assert.ok(Array.isArray((await hist).messages));
  await waitFor(() => cb.log.message.some((m) => m.id === ack.id), { what: "delivery after restart" });
  assert.deepEqual(await indexedDbOutbox(a.user, device, idb).list(), []);
  assert.equal(await copies(cb, a.user, text), 1);
  assert.equal(ca.log.ack.length, 0, "an ack with a waiting promise is not also an event");
});

test("sends in flight when the server is killed are each stored once after the restart", T, async () => {
  const a = await newUser(chatd, "kl");
  const b = await newUser(chatd, "kl");
  const ca = await on(a);
  const texts = Array.from({ length: 20 }, (_, i) => unique(`k${i}-`));
  let acked = 0;
  const acks = Promise.all(texts.map((text) => ca.send({ to: b.user, text }).then((x) => (acked++, x))));
  // Killed once the first acks are back: others are stored and not acked yet, or not read.
  // (Which ones varies from run to run; the previous-page test below makes the stored-but-not-
  // acked case deterministic.)
  await waitFor(() => acked > 0, { everyMs: 1 });
  await chatd.stop({ kill: true });
  console.log("acked before the kill:", acked);
  await chatd.spawn();
  const got = await acks;
  assert.equal(new Set(got.map((x) => x.id)).size, 20);
  const h = await ca.history({ with: b.user, limit: 100 });
  for (const text of texts) assert.equal(h.messages.filter((m) => m.text === text).length, 1, text);
});

test("a previous page's outbox entry is resent by the next page with its cid, delivered once", T, async () => {
  const a = await newUser(chatd, "pp");
  const b = await newUser(chatd, "pp");
  const idb = new IDBFactory();
  const device = unique("d");
  const cb = await on(b);
  // Page 1 sends one message normally, then another while the server is down, and goes away.
  const page1 = await online(chatd, a, { deviceId: device, outbox: indexedDbOutbox(a.user, device, idb) });
  const first = await page1.send({ to: b.user, text: "acked on page 1" });
  await stopped();
  await waitFor(() => page1.state !== "online");
  const text = unique("unsent-");
  const lost = page1.send({ to: b.user, text }).catch((e) => e);
  await waitFor(async () => (await page1.pending()).length === 1);
  await page1.close();
  assert.equal((await lost).code, "closed");
  // As if page 1 had published `first` and been reloaded before its ack was handled.
  const box = indexedDbOutbox(a.user, device, idb);
  await box.put({ cid: first.cid, to: b.user, type: "text", text: "acked on page 1", queued: 1 });
  assert.equal((await box.list()).length, 2);
  await chatd.spawn();
  // Page 2: the same device id and IndexedDB, a fresh outbox object.
  const page2 = await on(a, { deviceId: device, outbox: indexedDbOutbox(a.user, device, idb) });
  await waitFor(() => page2.log.ack.length === 2, { what: "acks of page 1's entries" });
  const again = page2.log.ack.find((x) => x.cid === first.cid);
  assert.equal(again.id, first.id, "the server answers a repeated cid with its first ack");
  const resent = page2.log.ack.find((x) => x.cid !== first.cid);
  await waitFor(() => cb.log.message.some((m) => m.id === resent.id));
  assert.deepEqual(await box.list(), []);
  assert.equal(await copies(cb, a.user, "acked on page 1"), 1);
  assert.equal(await copies(cb, a.user, text), 1);
});

test("receipts marked while offline reach the sender after the reconnect", T, async () => {
  const a = await newUser(chatd, "or");
  const b = await newUser(chatd, "or");
  const ca = await on(a);
  const cb = await on(b);
  const ack = await ca.send({ to: b.user, text: "read me later" });
  await waitFor(() => cb.log.message.some((m) => m.id === ack.id));
  await stopped();
  await waitFor(() => cb.state !== "online");
  const marked = cb.markRead([ack.id]);
  await chatd.spawn();
  await marked;
  await waitFor(() => ca.log.receipt.some((r) => r.id === ack.id && r.status === "read"), { what: "read receipt" });
});

test("after a reconnect the open chat's newest history fills a gap the queue cannot", T, async () => {
  const a = await newUser(chatd, "gap");
  const b = await newUser(chatd, "gap");
  const ca = await on(a);
  // A slow reconnect, so that the gap is made while this client is away.
  const cb = await on(b, { reconnect: { minMs: 1600, maxMs: 1600 } });
  cb.openChat({ with: a.user });
  // Another device of b takes inbox delivery at QoS 0: what is written to it leaves the queue.
  const other = await mqtt.connectAsync(chatd.wsUrl, {
    protocolVersion: 5,
    clientId: `${b.user}:${unique("raw")}`,
    username: b.user,
    password: b.password,
    reconnectPeriod: 0,
    timerVariant: "native",
  });
  const seen = [];
  other.on("message", (_t, p) => seen.push(JSON.parse(p.toString())));
  await other.subscribeAsync(`user/${b.user}/inbox`, { qos: 0 });
  try {
    cb._mq.stream.destroy();
    await waitFor(() => cb.state === "offline");
    const ack = await ca.send({ to: b.user, text: "sent during the gap" });
    await waitFor(() => seen.some((m) => m.id === ack.id), { what: "the other device's copy" });
    assert.equal(cb.state, "offline", "still away when the message was taken from the queue");
    await waitFor(() => cb.log.message.some((m) => m.id === ack.id), { what: "the re-sync's copy" });
  } finally {
    await other.endAsync();
  }
});
