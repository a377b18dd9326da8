// A chat's messages in order, and the tick status of the messages I sent. Pure helpers the
// store uses; they keep no state of their own.

const RANK = { failed: -1, pending: 0, sent: 1, delivered: 2, read: 3 };

/** The further of two statuses (`sent` < `delivered` < `read`). */
export function furthest(a, b) {
  return (RANK[b] ?? 0) > (RANK[a] ?? 0) ? b : a;
}

/** A new, empty chat: messages sorted by id (server ids sort by time; pending ones last). */
export function emptyChat(key) {
  return { key, messages: [], byId: new Map(), more: true, loaded: false, loading: false };
}

/** Inserts `m` in id order, or merges it into the copy already there; true when new. */
export function upsert(chat, m) {
  const old = chat.byId.get(m.id);
  if (old) {
    Object.assign(old, m, { status: furthest(old.status, m.status) });
    return false;
  }
  chat.byId.set(m.id, m);
  const list = chat.messages;
  let i = list.length;
  while (i > 0 && list[i - 1].id > m.id) i--;
  list.splice(i, 0, m);
  return true;
}

/** Removes the message `id` from the chat. */
export function remove(chat, id) {
  const m = chat.byId.get(id);
  if (!m) return;
  chat.byId.delete(id);
  chat.messages.splice(chat.messages.indexOf(m), 1);
}

/** The oldest message the server knows (pending ones have no server id yet). */
export function oldestServerId(chat) {
  const m = chat.messages.find((x) => !x.pending);
  return m?.id;
}

/** The id a pending message has until it is acknowledged: after every server id ('~' sorts
 * after digits), in the order it was queued. */
export function pendingId(queued, cid) {
  return `~${String(queued).padStart(15, "0")}-${cid}`;
}

/** Receipts of a group message as sets, from a history entry's `receipts` (or none). */
export function groupReceipts(r, members) {
  return {
    members: r?.members ?? members ?? 0,
    delivered: new Set(r?.delivered_by || []),
    read: new Set(r?.read_by || []),
    deliveredCount: r?.delivered ?? 0,
    readCount: r?.read ?? 0,
  };
}

/** Adds one member's receipt to a group message and gives its status: read once every other
 * member read it, delivered once every other member has it. */
export function applyGroupReceipt(m, by, status) {
  const r = m.receipts;
  r.delivered.add(by);
  if (status === "read") r.read.add(by);
  const delivered = Math.max(r.delivered.size, r.deliveredCount);
  const read = Math.max(r.read.size, r.readCount);
  let next = "sent";
  if (r.members > 0 && read >= r.members) next = "read";
  else if (r.members > 0 && delivered >= r.members) next = "delivered";
  m.status = furthest(m.status, next);
}
