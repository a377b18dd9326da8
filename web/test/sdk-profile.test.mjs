// Profiles, user look-up and media metadata. Each test skips, saying so, only when the chatd under
// test answers that the op or field is unknown (a binary older than these ops).
import { test } from "node:test";
import assert from "node:assert/strict";
import { waitFor, unique } from "./harness.mjs";
import { ChatError } from "../sdk/index.js";
import { chatdPerFile, newUser } from "./sdk-helpers.mjs";

let chatd;
const T = { timeout: 60000 };
const on = chatdPerFile((c) => (chatd = c));

/** Runs `step`; when the server does not know the op or field yet, skips the test and says so. */
async function unlessUnknown(t, what, step) {
  try {
    return { value: await step() };
  } catch (e) {
    if (e instanceof ChatError && e.code === "bad_request" && /unknown (op|field)/.test(e.message)) {
      t.skip(`this chatd does not serve ${what} yet (${e.message})`);
      return null;
    }
    throw e;
  }
}

test("profile.set / profile.get: a name and an avatar, and clearing them", T, async (t) => {
  const a = await newUser(chatd, "pf");
  const b = await newUser(chatd, "pf");
  const ca = await on(a);
  const cb = await on(b);
  if (!(await unlessUnknown(t, "profile.set", () => ca.profile.set({ name: "Alice Example" })))) return;
  const avatar = await ca.media.upload(new Blob([`avatar ${unique("x")}`], { type: "image/png" }));
  await ca.profile.set({ avatar: avatar.media });
  const [own] = await ca.profile.get([a.user]);
  assert.deepEqual(own, { user: a.user, name: "Alice Example", avatar: avatar.media });
  // Others see a profile once they share a conversation; before, it reads as unset.
  const [hidden] = await cb.profile.get([a.user]);
  assert.deepEqual(hidden, { user: a.user, name: null, avatar: null });
  await cb.send({ to: a.user, text: "hello" });
  const [p] = await cb.profile.get([a.user]);
  assert.deepEqual(p, { user: a.user, name: "Alice Example", avatar: avatar.media });
  const d = await cb.media.download(p.avatar);
  assert.equal((await fetch(d.url)).status, 200);
  const [none] = await ca.profile.get([b.user]);
  assert.deepEqual(none, { user: b.user, name: null, avatar: null });
  await assert.rejects(ca.profile.set({ name: "   " }), (e) => e instanceof ChatError && e.code === "bad_request");
  await ca.profile.set({ name: null, avatar: null });
  const [cleared] = await cb.profile.get([a.user]);
  assert.deepEqual(cleared, { user: a.user, name: null, avatar: null });
});

test("users.find: an exact id is found, anything else is not_found", T, async (t) => {
  const a = await newUser(chatd, "uf");
  const b = await newUser(chatd, "uf");
  const ca = await on(a);
  const found = await unlessUnknown(t, "user.find", () => ca.users.find(b.user));
  if (!found) return;
  assert.deepEqual(found.value, { user: b.user });
  await assert.rejects(ca.users.find(unique("nobody")), (e) => e instanceof ChatError && e.code === "not_found");
  await assert.rejects(ca.users.find(b.user.slice(0, -1)), (e) => e.code === "not_found");
});

test("media metadata: name, width, height, duration and preview travel with the media id", T, async (t) => {
  const a = await newUser(chatd, "mm");
  const b = await newUser(chatd, "mm");
  const ca = await on(a);
  const cb = await on(b);
  const preview = "data:image/png;base64,iVBORw0KGgo=";
  const blob = new Blob([`photo ${unique("p")}`], { type: "image/png" });
  const up = await unlessUnknown(t, "media metadata", () => ca.media.upload(blob, { name: "beach.png", width: 640, height: 480, preview }));
  if (!up) return;
  const sent = await ca.send({ to: b.user, type: "image", media: up.value.media });
  await waitFor(() => cb.log.message.some((m) => m.id === sent.id));
  const d = await cb.media.download(up.value.media);
  assert.equal(d.name, "beach.png");
  assert.equal(d.width, 640);
  assert.equal(d.height, 480);
  assert.equal(d.preview, preview);
  assert.equal(d.duration, undefined);
  // A voice note: a duration, and no fields that were not given.
  const voice = await ca.media.upload(new Blob([`voice ${unique("v")}`], { type: "audio/ogg" }), { duration: 4200 });
  const s2 = await ca.send({ to: b.user, type: "audio", media: voice.media });
  await waitFor(() => cb.log.message.some((m) => m.id === s2.id));
  const d2 = await cb.media.download(voice.media);
  assert.equal(d2.duration, 4200);
  assert.equal(d2.mime, "audio/ogg");
  assert.equal(d2.name ?? undefined, undefined);
});
