// Exponential backoff with jitter, so that many clients cut off by one server restart do not all
// come back in the same instant.

/** The delay before attempt `n` (0-based): between half and all of min·2ⁿ, capped at max. */
export function backoffDelay(n, minMs, maxMs) {
  const full = Math.min(maxMs, minMs * 2 ** Math.min(n, 30));
  return Math.round(full / 2 + Math.random() * (full / 2));
}

/** A promise resolved after `ms`. */
export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
