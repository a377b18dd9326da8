// The SDK under load and after gaps, against a real chatd: many publishes at once stay within the
// server's Receive Maximum (no DISCONNECT 0x93, no reconnect), and the re-sync after a reconnect
// pages the open chat forward from the newest message this client had, marking what it finds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { waitFor } from "./harness.mjs";
import { chatdPerFile, newUser } from "./sdk-helpers.mjs";

let chatd;
const T = { timeout: 120000 };
// The rate limits are not what these tests are about: lifted so that every publish is stored
// or answered the first time.
const on = chatdPerFile((c) => (chatd = c), "[limits]\nsends_per_sec = 100000\nsends_burst = 100000\nrequests_per_sec = 100000\nrequests_burst = 100000\ngroups_created_per_hour = 100000\n");

test("500 sends at once: all stored, the connection stays (Receive Maximum kept)", T, async () => {
  const a = await newUser(chatd, "flood");
  const b = await newUser(chatd, "floodto");
  const c = await on(a);
  const acks = await Promise.all(Array.from({ length: 500 }, (_, i) => c.send({ to: b.user, text: `m${i}` })));
  assert.equal(new Set(acks.map((k) => k.id)).size, 500);
  assert.deepEqual(c.log.state, ["online"], "no reconnect");
  assert.equal(c.state, "online");
  assert.deepEqual(await c.pending(), []);
});

test("300 requests at once: all answered, the connection stays", T, async () => {
  const a = await newUser(chatd, "rpcflood");
  const c = await on(a);
  // group.create is not repeatable: a lost connection would fail the calls in flight.
  const groups = await Promise.all(Array.from({ length: 300 }, (_, i) => (i % 2 ? c.groups.create(`g${i}`, []) : c.conversations())));
  assert.equal(groups.length, 300);
  assert.equal(new Set(groups.filter((g) => typeof g === "string")).size, 150);
  assert.deepEqual(c.log.state, ["online"], "no reconnect");
  assert.equal(c.state, "online");
});

/** Cuts `c`'s connection and keeps it from reconnecting until the returned function is called. */
async function cutOff(c) {
  const open = c._open;
  let blocked = false;
  c._open = () => (blocked = true);
  c._mq.stream.destroy();
  await waitFor(() => blocked, { what: "the reconnect attempt" });
  return () => {
    delete c._open;
    open.call(c);
  };
}

test("re-sync after a reconnect: every message another device took meanwhile, marked resync", T, async () => {
  const a = await newUser(chatd, "resync");
  const b = await newUser(chatd, "resyncfrom");
  const web = await on(a, { deviceId: "web" });
  const phone = await on(a, { deviceId: "phone" });
  const bob = await on(b);
  web.openChat({ with: b.user });
  const infos = [];
  web.on("message", (m, info) => infos.push({ m, info }));

  await bob.send({ to: a.user, text: "before" });
  await waitFor(() => web.log.message.length === 1 && phone.log.message.length === 1, { what: "the first message on both" });
  assert.deepEqual(infos[0].info, { resync: false });

  const reconnect = await cutOff(web);
  for (let i = 0; i < 120; i++) await bob.send({ to: a.user, text: `offline ${i}` });
  await waitFor(() => phone.log.message.length === 121, { what: "phone's 120" });
  // Its PUBACKs take everything off the queue before the DISCONNECT of close().
  await phone.close();
  // And one alice sent from another device: 1:1 sends are not copied to her other devices.
  const other = await on(a, { deviceId: "laptop" });
  const own = await other.send({ to: b.user, text: "from the laptop" });

  reconnect();
  await waitFor(() => web.log.message.length === 122, { what: "the 121 missed messages on web", ms: 60000 });
  const missed = infos.slice(1);
  assert.deepEqual(
    missed.map(({ m }) => m.text),
    [...Array.from({ length: 120 }, (_, i) => `offline ${i}`), "from the laptop"],
  );
  assert.equal(missed[120].m.id, own.id);
  for (const { info } of missed) assert.deepEqual(info, { resync: true });

  await bob.send({ to: a.user, text: "live" });
  await waitFor(() => web.log.message.length === 123, { what: "the live message" });
  assert.equal(infos[122].m.text, "live");
  assert.deepEqual(infos[122].info, { resync: false });
  // Nothing came twice.
  assert.equal(new Set(web.log.message.map((m) => m.id)).size, 123);
});

test("re-sync of a chat the client had nothing of: its newest page", T, async () => {
  const a = await newUser(chatd, "fresh");
  const b = await newUser(chatd, "freshfrom");
  const web = await on(a, { deviceId: "web" });
  const phone = await on(a, { deviceId: "phone" });
  const bob = await on(b);
  web.openChat({ with: b.user });
  const reconnect = await cutOff(web);
  for (let i = 0; i < 60; i++) await bob.send({ to: a.user, text: `x${i}` });
  await waitFor(() => phone.log.message.length === 60, { what: "phone's 60" });
  await phone.close();
  const infos = [];
  web.on("message", (m, info) => infos.push({ m, info }));
  reconnect();
  await waitFor(() => infos.length === 50, { what: "the newest 50 on web" });
  assert.deepEqual(
    infos.map(({ m }) => m.text),
    Array.from({ length: 50 }, (_, i) => `x${i + 10}`),
  );
  assert.ok(infos.every(({ info }) => info.resync === true));
});

test("requests still waiting for room when the connection goes are sent on the next one", T, async () => {
  const a = await newUser(chatd, "rpccut");
  const c = await on(a);
  // Not repeatable: one written to the lost connection fails; one that never left must not.
  const calls = Array.from({ length: 300 }, (_, i) => c.groups.create(`cut${i}`, []));
  c._mq.stream.destroy();
  const results = await Promise.allSettled(calls);
  const failed = results.filter((r) => r.status === "rejected");
  for (const r of failed) assert.equal(r.reason.code, "network");
  // At most a Receive Maximum (64) of them were on the wire.
  assert.ok(failed.length <= 64, `${failed.length} failed`);
  assert.ok(results.length - failed.length >= 236);
  assert.equal(c.state, "online");
});
