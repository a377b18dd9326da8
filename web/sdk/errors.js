// Typed errors: every failure the SDK reports carries the protocol's code (or one of the SDK's own).

/** An error with the protocol's code (`bad_request`, `forbidden`, …) or the SDK's own. */
export class ChatError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "ChatError";
    this.code = code;
  }
}

/** Codes after which the same request may succeed later: the server asks to retry. */
export const RETRYABLE = new Set(["unavailable", "rate_limited"]);

/** The ChatError of a protocol `{code, message}` object (or a fallback when it is malformed). */
export function fromWire(error) {
  const code = error && typeof error.code === "string" ? error.code : "internal";
  const message = error && typeof error.message === "string" ? error.message : code;
  return new ChatError(code, message);
}
