// Errors as the user reads them.

/** A message to show for an error: the SDK's codes in words, else the server's message. */
export function describe(e) {
  const words = {
    not_authorized: "Wrong user or password.",
    network: "Cannot reach the server.",
    timeout: "The server did not answer in time.",
    closed: "Disconnected.",
  };
  return words[e?.code] || e?.message || String(e);
}
