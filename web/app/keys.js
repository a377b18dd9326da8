// Conversation keys: one string per chat, `u:{user}` for 1:1 and `g:{group}` for groups.

/** The key of a chat given as `{with}` or `{group}`. */
export function chatKey(c) {
  return c.group ? `g:${c.group}` : `u:${c.with}`;
}

/** `{with}` or `{group}` for a key, as the SDK takes it. */
export function chatOf(key) {
  return key.startsWith("g:") ? { group: key.slice(2) } : { with: key.slice(2) };
}

/** The chat a message belongs to, seen by `me`. */
export function messageKey(m, me) {
  if (m.group) return `g:${m.group}`;
  return `u:${m.from === me ? m.to : m.from}`;
}
