// Random identifiers: device ids, client message ids (cid) and request ids (rid).

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** `n` random characters of [a-z0-9], from the platform's CSPRNG. */
export function randomId(n = 12) {
  const bytes = new Uint8Array(n);
  globalThis.crypto.getRandomValues(bytes);
  let s = "";
  for (const b of bytes) s += ALPHABET[b % ALPHABET.length];
  return s;
}

/** A cid unique per sender: the device, the time and randomness (never reused by a reload). */
export function newCid(deviceId) {
  return `${deviceId}.${Date.now().toString(36)}.${randomId(8)}`;
}
