// The SDK against a real chatd: login, connect, send/receive with acks, de-duplication, receipts,
// typing, presence, history, conversations, typed errors, takeover.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Chatd, waitFor, unique, freePort } from "./harness.mjs";
import { login, connect, ChatError, memoryOutbox } from "../sdk/index.js";
import { online, newUser, FAST } from "./sdk-helpers.mjs";

let chatd, keyDir;
/** No test may hang the suite: each gets a generous limit. */
const T = { timeout: 60000 };
const clients = [];
async function on(u, opts) {
  const c = await online(chatd, u, opts);
  clients.push(c);
  return c;
}

before(async () => {
  // Push through FCM, with a service account of a throw-away key and an endpoint nobody
  // listens on: registering needs no call to FCM. APNs stays unconfigured.
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  keyDir = mkdtempSync(join(tmpdir(), "chatd-sdk-fcm-"));
  const account = join(keyDir, "service-account.json");
  writeFileSync(
    account,
    JSON.stringify({
      type: "service_account",
      project_id: "sdk-tests",
      private_key_id: "k1",
      private_key: privateKey.export({ type: "pkcs8", format: "pem" }),
      client_email: "tests@sdk-tests.iam.gserviceaccount.com",
      token_uri: "http://127.0.0.1:9/token",
    }),
  );
  chatd = await Chatd.start(`[push]\n[push.fcm]\nservice_account = ${JSON.stringify(account)}\nendpoint = "http://127.0.0.1:9"\n`);
});
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await chatd?.close();
  if (keyDir) rmSync(keyDir, { recursive: true, force: true });
});

test("login: a token for the right password, not_authorized for a wrong one", T, async () => {
  const a = await newUser(chatd, "login");
  const t = await login(chatd.httpUrl, a.user, a.password);
  assert.equal(typeof t.token, "string");
  assert.ok(t.expires > Date.now());
  await assert.rejects(login(chatd.httpUrl, a.user, "wrong-password-1"), (e) => e instanceof ChatError && e.code === "not_authorized");
  // The token is the MQTT password.
  const c = await on({ user: a.user, password: t.token });
  assert.equal(c.state, "online");
});

test("connect: a refused login rejects with not_authorized", T, async () => {
  const a = await newUser(chatd, "refused");
  await assert.rejects(
    connect({ url: chatd.wsUrl, user: a.user, password: "not-the-password", deviceId: "x1", outbox: memoryOutbox(), ...FAST }),
    (e) => e instanceof ChatError && e.code === "not_authorized",
  );
});

test("connect: aborting its signal (or closing) while nothing answers ends it with closed", T, async () => {
  const port = await freePort(); // nobody listens there: connect keeps retrying
  const url = `ws://127.0.0.1:${port}/mqtt`;
  const ac = new AbortController();
  const pending = connect({ url, user: "nobody", password: "pw", deviceId: "a1", outbox: memoryOutbox(), signal: ac.signal, ...FAST });
  setTimeout(() => ac.abort(), 300);
  await assert.rejects(pending, (e) => e instanceof ChatError && e.code === "closed");
  const already = new AbortController();
  already.abort();
  await assert.rejects(
    connect({ url, user: "nobody", password: "pw", deviceId: "a2", outbox: memoryOutbox(), signal: already.signal, ...FAST }),
    (e) => e instanceof ChatError && e.code === "closed",
  );
});

test("send and receive both ways, with acks", T, async () => {
  const a = await newUser(chatd, "a");
  const b = await newUser(chatd, "b");
  const ca = await on(a);
  const cb = await on(b);
  const ack = await ca.send({ to: b.user, text: "hello bob" });
  assert.equal(ack.status, "sent");
  assert.match(ack.id, /^\d{13}-\d{5}-\d{5}$/);
  assert.ok(ack.cid.length > 0);
  const m = await waitFor(() => cb.log.message.find((x) => x.id === ack.id), { what: "bob's message" });
  assert.equal(m.from, a.user);
  assert.equal(m.text, "hello bob");
  assert.equal(m.type, "text");
  const back = await cb.send({ to: a.user, text: "hi alice", reply_to: ack.id });
  const r = await waitFor(() => ca.log.message.find((x) => x.id === back.id), { what: "alice's message" });
  assert.equal(r.reply_to, ack.id);
  assert.deepEqual(await ca.pending(), []);
});

test("a message delivered twice is emitted once", T, async () => {
  const a = await newUser(chatd, "dup");
  const b = await newUser(chatd, "dup");
  const ca = await on(a);
  const cb = await on(b);
  const ack = await ca.send({ to: b.user, text: "once" });
  await waitFor(() => cb.log.message.some((x) => x.id === ack.id));
  // The same message comes again: history of the open chat after a reconnect re-emits only new ids.
  cb.openChat({ with: a.user });
  cb._onMessage(`user/${b.user}/inbox`, new TextEncoder().encode(JSON.stringify(cb.log.message[0])));
  const second = await ca.send({ to: b.user, text: "twice" });
  await waitFor(() => cb.log.message.some((x) => x.id === second.id));
  cb._mq.stream.destroy(); // drop the connection: the SDK reconnects and re-syncs
  await waitFor(() => cb.log.state.filter((s) => s === "online").length >= 2 && cb.log.conversations.length >= 2, { what: "reconnect and re-sync" });
  assert.equal(cb.log.message.filter((x) => x.id === ack.id).length, 1);
  assert.equal(cb.log.message.filter((x) => x.id === second.id).length, 1);
});

test("receipts: markDelivered/markRead are batched and reach the sender", T, async () => {
  const a = await newUser(chatd, "rc");
  const b = await newUser(chatd, "rc");
  const ca = await on(a);
  const cb = await on(b);
  const acks = [];
  for (let i = 0; i < 4; i++) acks.push(await ca.send({ to: b.user, text: `m${i}` }));
  const ids = acks.map((x) => x.id);
  await waitFor(() => ids.every((id) => cb.log.message.some((m) => m.id === id)));
  const published = [];
  const orig = cb._publish.bind(cb);
  cb._publish = (topic, obj, qos) => {
    if (topic.endsWith("/receipt")) published.push(obj);
    return orig(topic, obj, qos);
  };
  // Four calls within the batching delay: one publish per status; read wins over delivered.
  await Promise.all([cb.markDelivered([ids[0], ids[1]]), cb.markDelivered([ids[2]]), cb.markRead([ids[1]]), cb.markRead([ids[3]])]);
  assert.deepEqual(
    published.map((p) => [p.status, [...p.ids].sort()]),
    [
      ["delivered", [ids[0], ids[2]].sort()],
      ["read", [ids[1], ids[3]].sort()],
    ],
  );
  const want = { [ids[0]]: "delivered", [ids[1]]: "read", [ids[2]]: "delivered", [ids[3]]: "read" };
  await waitFor(() => Object.entries(want).every(([id, st]) => ca.log.receipt.some((r) => r.id === id && r.status === st && r.by === b.user)), {
    what: "receipts at the sender",
  });
  const h = await ca.history({ with: b.user });
  assert.deepEqual(
    h.messages.map((m) => m.status),
    ids.map((id) => want[id]),
  );
});

test("typing reaches the other side", T, async () => {
  const a = await newUser(chatd, "ty");
  const b = await newUser(chatd, "ty");
  const ca = await on(a);
  const cb = await on(b);
  ca.typing({ to: b.user });
  await waitFor(() => cb.log.typing.some((t) => t.from === a.user), { what: "typing" });
  assert.equal(cb.log.typing[0].group, undefined);
});

test("presence: watch shows online, then offline with last_seen; get; unwatch", T, async () => {
  const a = await newUser(chatd, "pr");
  const b = await newUser(chatd, "pr");
  const ca = await on(a);
  await ca.presence.watch([b.user]);
  const first = await waitFor(() => ca.log.presence.find((p) => p.user === b.user));
  assert.equal(first.status, "offline");
  assert.equal(first.last_seen, null);
  const cb = await online(chatd, b);
  await waitFor(() => ca.log.presence.some((p) => p.user === b.user && p.status === "online"), { what: "online" });
  const [got] = await ca.presence.get([b.user]);
  assert.equal(got.status, "online");
  const before = Date.now();
  await cb.close();
  const off = await waitFor(() => ca.log.presence.find((p) => p.user === b.user && p.status === "offline" && p.last_seen !== null), { what: "offline" });
  assert.ok(off.last_seen >= before - 5000 && off.last_seen <= Date.now() + 1000, `last_seen ${off.last_seen}`);
  // Watches survive a reconnect: the current state comes again.
  const n = ca.log.presence.length;
  ca._mq.stream.destroy();
  await waitFor(() => ca.log.presence.length > n && ca.state === "online", { what: "presence after reconnect" });
  await ca.presence.unwatch([b.user]);
  const m = ca.log.presence.length;
  const cb2 = await online(chatd, b);
  await cb2.close();
  const [later] = await ca.presence.get([b.user]);
  assert.equal(later.status, "offline");
  assert.equal(ca.log.presence.length, m, "no presence after unwatch");
});

test("history pages back with before, and forward with after", T, async () => {
  const a = await newUser(chatd, "hi");
  const b = await newUser(chatd, "hi");
  const ca = await on(a);
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push((await ca.send({ to: b.user, text: `h${i}` })).id);
  const p1 = await ca.history({ with: b.user, limit: 2 });
  assert.deepEqual(p1.messages.map((m) => m.id), ids.slice(3));
  assert.equal(p1.more, true);
  const p2 = await ca.history({ with: b.user, limit: 2, before: p1.messages[0].id });
  assert.deepEqual(p2.messages.map((m) => m.id), ids.slice(1, 3));
  const p3 = await ca.history({ with: b.user, limit: 2, before: p2.messages[0].id });
  assert.deepEqual(p3.messages.map((m) => m.id), ids.slice(0, 1));
  assert.equal(p3.more, false);
  const fwd = await ca.history({ with: b.user, after: ids[2] });
  assert.deepEqual(fwd.messages.map((m) => m.text), ["h3", "h4"]);
});

test("conversations with unread counts, emitted after connect, and cleared by markRead", T, async () => {
  const a = await newUser(chatd, "cv");
  const b = await newUser(chatd, "cv");
  const c = await newUser(chatd, "cv");
  const ca = await on(a);
  const cc = await on(c);
  await ca.send({ to: b.user, text: "one" });
  const last = await ca.send({ to: b.user, text: "two" });
  await cc.send({ to: b.user, text: "from c" });
  const cb = await on(b);
  // The list fetched after connect comes as an event.
  await waitFor(() => cb.log.conversations.length >= 1);
  const listed = cb.log.conversations[0];
  assert.deepEqual(listed.map((x) => [x.with, x.unread]), [
    [c.user, 1],
    [a.user, 2],
  ]);
  const r = await cb.conversations({ limit: 1 });
  assert.equal(r.conversations.length, 1);
  assert.equal(r.more, true);
  const r2 = await cb.conversations({ limit: 1, before: r.next });
  assert.equal(r2.conversations[0].with, a.user);
  assert.equal(r2.conversations[0].last.id, last.id);
  // In a 1:1 chat each message is read on its own: reading the newest leaves the older unread.
  await cb.markRead([last.id]);
  await waitFor(async () => (await cb.conversations()).conversations.find((x) => x.with === a.user).unread === 1, { what: "unread 1" });
  const h = await cb.history({ with: a.user });
  await cb.markRead(h.messages.map((m) => m.id));
  await waitFor(async () => (await cb.conversations()).conversations.find((x) => x.with === a.user).unread === 0, { what: "unread 0" });
});

test("groups: create, add, promote, rename, info, remove, leave, with group events and messages", T, async () => {
  const [a, b, c] = await Promise.all([newUser(chatd, "ga"), newUser(chatd, "gb"), newUser(chatd, "gc")]);
  const [ca, cb, cc] = [await on(a), await on(b), await on(c)];
  const g = await ca.groups.create("team", [b.user]);
  assert.match(g, /^g_/);
  const created = await waitFor(() => cb.log.groupEvent.find((e) => e.group === g && e.event === "member_added"));
  assert.equal(created.name, "team");
  assert.ok(cb.log.message.some((m) => m.id === created.id), "group events are messages too");
  await ca.groups.add(g, [c.user]);
  await waitFor(() => cc.log.groupEvent.some((e) => e.group === g && e.event === "member_added" && e.users.includes(c.user)));
  await ca.groups.promote(g, [b.user]);
  await waitFor(() => cb.log.groupEvent.some((e) => e.event === "promoted" && e.users.includes(b.user)));
  await cb.groups.rename(g, "team 2");
  await waitFor(() => ca.log.groupEvent.some((e) => e.event === "renamed" && e.name === "team 2" && e.by === b.user));
  const sent = await ca.send({ group: g, text: "hello team" });
  const got = await waitFor(() => cc.log.message.find((m) => m.id === sent.id));
  assert.equal(got.group, g);
  const info = await ca.groups.info(g);
  assert.equal(info.name, "team 2");
  assert.equal(info.creator, a.user);
  assert.deepEqual(
    info.members.map((m) => [m.user, m.role]).sort(),
    [
      [a.user, "admin"],
      [b.user, "admin"],
      [c.user, "member"],
    ].sort(),
  );
  await ca.groups.demote(g, [b.user]);
  await ca.groups.remove(g, [c.user]);
  await waitFor(() => cc.log.groupEvent.some((e) => e.event === "member_removed" && e.users.includes(c.user)));
  await cb.groups.leave(g);
  await waitFor(() => ca.log.groupEvent.some((e) => e.event === "member_left" && e.by === b.user));
  await assert.rejects(cc.send({ group: g, text: "not a member" }), (e) => e.code === "forbidden");
  const after = await ca.groups.info(g);
  assert.deepEqual(after.members.map((m) => m.user), [a.user]);
});

test("media: upload (the same blob twice exists), send, download URL fetchable", T, async () => {
  const a = await newUser(chatd, "md");
  const b = await newUser(chatd, "md");
  const ca = await on(a);
  const cb = await on(b);
  const bytes = new TextEncoder().encode(`picture ${unique("p")}`);
  const blob = new Blob([bytes], { type: "image/png" });
  const up = await ca.media.upload(blob);
  assert.match(up.media, /^m_/);
  assert.equal(up.exists, false);
  const again = await ca.media.upload(blob);
  assert.deepEqual(again, { media: up.media, exists: true });
  const sent = await ca.send({ to: b.user, type: "image", media: up.media, text: "look" });
  const m = await waitFor(() => cb.log.message.find((x) => x.id === sent.id));
  assert.equal(m.media, up.media);
  const d = await cb.media.download(m.media);
  assert.equal(d.mime, "image/png");
  assert.equal(d.size, bytes.length);
  const r = await fetch(d.url);
  assert.equal(r.status, 200);
  assert.deepEqual(new Uint8Array(await r.arrayBuffer()), bytes);
  // Someone else's media: forbidden, like an unknown id.
  const stranger = await on(await newUser(chatd, "md"));
  await assert.rejects(stranger.media.download(up.media), (e) => e instanceof ChatError && e.code === "forbidden");
});

test("push: register, the same token again, another account's token, unregister; an unconfigured platform", T, async () => {
  const ca = await on(await newUser(chatd, "pu"));
  const cb = await on(await newUser(chatd, "pu"));
  const token = `fcm-token:${unique("t")}`;
  await ca.push.register("fcm", token);
  await ca.push.register("fcm", token); // harmless: a refresh
  await assert.rejects(cb.push.register("fcm", token), (e) => e instanceof ChatError && e.code === "forbidden");
  await ca.push.unregister(token);
  await cb.push.register("fcm", token); // free once its holder let it go
  await assert.rejects(ca.push.register("apns", "abcdef0123"), (e) => e.code === "bad_request" && /not configured/.test(e.message));
  await assert.rejects(ca.push.register("nope", "x"), (e) => e.code === "bad_request");
  await assert.rejects(ca.push.register("fcm", "bad token!"), (e) => e.code === "bad_request");
});

test("typed errors: bad_request, forbidden, not_found, and refused sends leave the outbox", T, async () => {
  const a = await newUser(chatd, "er");
  const ca = await on(a);
  const e1 = await ca.send({ to: unique("nobody"), text: "x" }).catch((e) => e);
  assert.ok(e1 instanceof ChatError);
  assert.equal(e1.code, "not_found");
  const e2 = await ca.send({ to: a.user, type: "image", text: "no media" }).catch((e) => e);
  assert.equal(e2.code, "bad_request");
  assert.deepEqual(await ca.pending(), []);
  await assert.rejects(ca.rpc("history", {}), (e) => e instanceof ChatError && e.code === "bad_request");
  await assert.rejects(ca.rpc("no.such.op"), (e) => e.code === "bad_request");
  // Over the server's request size: too_large at once (the server's reply would carry no rid).
  await assert.rejects(ca.rpc("group.create", { name: "x".repeat(30000), members: [] }), (e) => e.code === "too_large");
  await assert.rejects(ca.groups.info("g_doesnotexist0000"), (e) => e.code === "not_found");
  const other = await newUser(chatd, "er");
  const g = await (await on(other)).groups.create("private", []);
  await assert.rejects(ca.groups.rename(g, "mine"), (e) => e.code === "forbidden");
  await assert.rejects(ca.send({ group: g, text: "hi" }), (e) => e.code === "forbidden");
});

test("sends over the rate limit are retried with the same cid until acknowledged", T, async () => {
  const a = await newUser(chatd, "rl");
  const b = await newUser(chatd, "rl");
  const ca = await on(a);
  const cb = await on(b);
  const refused = [];
  const orig = ca._onAck.bind(ca);
  ca._onAck = (body) => {
    if (body.error) refused.push(body.error.code);
    return orig(body);
  };
  // 70 at once: past the burst (60) the server answers rate_limited; the SDK sends those again.
  const acks = await Promise.all(Array.from({ length: 70 }, (_, i) => ca.send({ to: b.user, text: `r${i}` })));
  assert.ok(refused.includes("rate_limited"), `expected rate_limited refusals, got ${refused}`);
  assert.equal(new Set(acks.map((x) => x.id)).size, 70);
  await waitFor(() => cb.log.message.length >= 70);
  const texts = cb.log.message.map((m) => m.text).sort();
  assert.deepEqual(texts, Array.from({ length: 70 }, (_, i) => `r${i}`).sort());
});

test("takeover: a second client with the same device id stops the first (taken_over)", T, async () => {
  const a = await newUser(chatd, "to");
  const device = unique("dev");
  const c1 = await on(a, { deviceId: device });
  const c2 = await on(a, { deviceId: device });
  await waitFor(() => c1.state === "taken_over", { what: "taken_over" });
  assert.equal(c1.log.detail?.code, "taken_over");
  // The first does not come back (which would take the session back in turn).
  // (its reconnect delay is 100–1000 ms: well past the shortest)
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(c1.state, "taken_over");
  assert.equal(c2.state, "online");
  assert.ok(!c2.log.state.includes("taken_over"));
  await assert.rejects(c1.send({ to: a.user, text: "x" }), (e) => e.code === "closed");
});

test("a login revoked while connected (password changed) stops the client: refused", T, async () => {
  const a = await newUser(chatd, "rv");
  const ca = await on(a);
  const r = await fetch(`${chatd.httpUrl}/admin/users/${a.user}/password`, {
    method: "PUT",
    // the admin token harness.mjs configures
    headers: { authorization: "Bearer web-tests-admin-token-0123456789abcdef", "content-type": "application/json" },
    body: JSON.stringify({ password: "a-brand-new-password-1" }),
  });
  assert.ok(r.ok, `PUT password: ${r.status}`);
  await waitFor(() => ca.state === "refused", { what: "refused" });
  assert.equal(ca.log.detail?.code, "not_authorized");
  assert.ok(!ca.log.state.includes("connecting"), "no reconnect with the old password");
});

test("what arrives during connect() reaches handlers attached right after it resolves", T, async () => {
  const a = await newUser(chatd, "hold");
  const b = await newUser(chatd, "hold");
  const ca = await on(a);
  const queued = [];
  for (let i = 0; i < 3; i++) queued.push((await ca.send({ to: b.user, text: `q${i}` })).id);
  const cb = await connect({ url: chatd.wsUrl, user: b.user, password: b.password, deviceId: unique("d"), outbox: memoryOutbox(), ...FAST });
  clients.push(cb);
  const got = [];
  const states = [];
  cb.on("message", (m) => got.push(m.id));
  cb.on("state", (s) => states.push(s));
  await waitFor(() => got.length >= 3, { what: "queued messages" });
  assert.deepEqual(got, queued);
  assert.deepEqual(states, ["online"]);
});

test("requests over the rate limit are retried with backoff", T, async () => {
  const a = await newUser(chatd, "rr");
  const ca = await on(a);
  const codes = [];
  const orig = ca._onReply.bind(ca);
  ca._onReply = (body) => {
    if (body.error) codes.push(body.error.code);
    return orig(body);
  };
  // The request budget's burst is 200: the rest are refused rate_limited at first.
  const all = await Promise.all(Array.from({ length: 240 }, () => ca.presence.get([a.user])));
  assert.ok(codes.includes("rate_limited"), `expected rate_limited refusals, got ${codes.length}`);
  assert.ok(all.every((r) => r[0].user === a.user && r[0].status === "online"));
});
