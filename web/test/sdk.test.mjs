// The SDK against a real chatd: login, connect, send/receive with acks, de-duplication, receipts,
// typing, presence, history, conversations, typed errors, takeover.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Chatd, waitFor, unique } from "./harness.mjs";
import { login, connect, ChatError, memoryOutbox } from "../sdk/index.js";
import { online, newUser, FAST } from "./sdk-helpers.mjs";

let chatd;
const clients = [];
async function on(u, opts) {
  const c = await online(chatd, u, opts);
  clients.push(c);
  return c;
}

before(async () => {
  chatd = await Chatd.start();
});
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await chatd?.close();
});

test("login: a token for the right password, not_authorized for a wrong one", async () => {
  const a = await newUser(chatd, "login");
  const t = await login(chatd.httpUrl, a.user, a.password);
  assert.equal(typeof t.token, "string");
  assert.ok(t.expires > Date.now());
  await assert.rejects(login(chatd.httpUrl, a.user, "wrong-password-1"), (e) => e instanceof ChatError && e.code === "not_authorized");
  // The token is the MQTT password.
  const c = await on({ user: a.user, password: t.token });
  assert.equal(c.state, "online");
});

test("connect: a refused login rejects with not_authorized", async () => {
  const a = await newUser(chatd, "refused");
  await assert.rejects(
    connect({ url: chatd.wsUrl, user: a.user, password: "not-the-password", deviceId: "x1", outbox: memoryOutbox(), ...FAST }),
    (e) => e instanceof ChatError && e.code === "not_authorized",
  );
});

test("send and receive both ways, with acks", async () => {
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

test("a message delivered twice is emitted once", async () => {
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
  await waitFor(() => cb.log.state.filter((s) => s === "online").length >= 1 && cb.state === "online" && cb.log.conversations.length >= 1);
  await waitFor(() => cb.log.conversations.length >= 1);
  assert.equal(cb.log.message.filter((x) => x.id === ack.id).length, 1);
  assert.equal(cb.log.message.filter((x) => x.id === second.id).length, 1);
});
