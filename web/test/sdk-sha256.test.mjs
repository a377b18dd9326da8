// The SDK's own SHA-256 (for pages without Web Crypto, i.e. plain HTTP off localhost) against
// node's, on lengths around the padding's edges and on a few megabytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { sha256Js, sha256Hex } from "../sdk/sha256.js";

const hex = (b) => Buffer.from(b).toString("hex");

test("sha256Js equals node's SHA-256 around every padding edge", () => {
  for (const n of [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000]) {
    const data = new Uint8Array(randomBytes(n));
    assert.equal(hex(sha256Js(data)), createHash("sha256").update(data).digest("hex"), `length ${n}`);
  }
  assert.equal(hex(sha256Js(new TextEncoder().encode("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
});

test("sha256Js equals node's on a 3 MB upload and on a subarray view", () => {
  const big = new Uint8Array(randomBytes(3 * 1024 * 1024 + 17));
  assert.equal(hex(sha256Js(big)), createHash("sha256").update(big).digest("hex"));
  const view = big.subarray(5, 5 + 70001);
  assert.equal(hex(sha256Js(view)), createHash("sha256").update(view).digest("hex"));
});

test("sha256Hex hashes the same without Web Crypto as with it", async () => {
  const data = new Uint8Array(randomBytes(4097));
  const withSubtle = await sha256Hex(data);
  const saved = Object.getOwnPropertyDescriptor(globalThis, "crypto");
  Object.defineProperty(globalThis, "crypto", { value: { getRandomValues: (a) => a }, configurable: true });
  try {
    assert.equal(await sha256Hex(data), withSubtle);
  } finally {
    Object.defineProperty(globalThis, "crypto", saved);
  }
  assert.equal(withSubtle, createHash("sha256").update(data).digest("hex"));
});
