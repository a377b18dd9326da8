//! The data layout of the embedded store: every key its adapters write, built in one place so
//! the prefixes in `docs/architecture.md` ("Data layout") have a single source of truth. Only
//! this crate knows them; the chat core speaks to the store through its ports.
//!
//! User ids never contain `/` or `:`, so `{prefix}/{user}/` ranges never overlap between users.

pub use chatd_core::records::chat::{direct_conversation, group_conversation};

/// The key made of `parts`, in one allocation of the right size. Why not `format!`: keys are
/// built for every record of every commit, and formatting was ~7 % of the committer's samples at full load.
fn key(parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// `u/{user}`: an account record.
pub fn account(user: &str) -> Vec<u8> {
    key(&["u/", user])
}

/// The prefix under which all account records live.
pub const ACCOUNTS_PREFIX: &str = "u/";

/// `l/{skeleton}`: the user id that holds this look-alike skeleton (see
/// `chatd_auth::skeleton`), so that an id too similar to an existing one is refused at creation.
pub fn skeleton(skeleton: &str) -> Vec<u8> {
    key(&["l/", skeleton])
}

/// `x/skeletons`: present once every account has its `l/` entry (built once, on the first
/// `add` after an upgrade).
pub const SKELETONS_BUILT: &[u8] = b"x/skeletons";

/// `x/purge/{user}`: the account was removed and its data is still being cleaned up (written
/// with the tombstone, deleted when the clean-up is done; a start finishes what a crash left).
pub fn purge_marker(user: &str) -> Vec<u8> {
    key(&["x/purge/", user])
}

/// The prefix under which pending account clean-ups are marked.
pub const PURGE_PREFIX: &str = "x/purge/";

/// `k/{user}/`: all remembered acks of one user's client message ids.
pub fn cid_prefix(user: &str) -> String {
    format!("k/{user}/")
}

/// `j/{user}/`: all push jobs of one user.
pub fn push_jobs_prefix(user: &str) -> String {
    format!("j/{user}/")
}

/// `e/{user}/`: all kept MQTT sessions of one user.
pub fn sessions_prefix(user: &str) -> String {
    format!("e/{user}/")
}

/// `e/{user}/{client_id}`: a kept MQTT session (the client id names its user).
pub fn session(user: &str, client_id: &str) -> Vec<u8> {
    key(&["e/", user, "/", client_id])
}

/// The prefix under which all kept MQTT sessions live.
pub const SESSIONS_PREFIX: &str = "e/";

/// `p/{user}`: when the user was last seen.
pub fn last_seen(user: &str) -> Vec<u8> {
    key(&["p/", user])
}

/// `d/{user}`: the user's profile (display name, avatar), absent while both are unset.
pub fn profile(user: &str) -> Vec<u8> {
    key(&["d/", user])
}

/// The prefix under which all media download rights live (`a/{media}/{user}`).
pub const MEDIA_ACCESS_PREFIX: &str = "a/";

/// `m/{id}`: a message as delivered.
pub fn message(id: &str) -> Vec<u8> {
    key(&["m/", id])
}

/// The prefix under which all messages live (ids sort in acceptance order).
pub const MESSAGES_PREFIX: &str = "m/";

/// `h/{conversation}/`: the history index of one conversation; entries are `…/{id}`.
pub fn history_prefix(conversation: &str) -> String {
    format!("h/{conversation}/")
}

/// `h/{conversation}/{id}`: message `id` in the history index of a conversation (empty for a
/// 1:1 message, the group index `{"f":sender,"n":recipients}` for a group message or event).
pub fn history_entry(conversation: &str, id: &str) -> Vec<u8> {
    key(&["h/", conversation, "/", id])
}

/// `q/{user}/`: the undelivered queue of one user; entries are `…/{id}`.
pub fn queue_prefix(user: &str) -> String {
    format!("q/{user}/")
}

/// `q/{user}/{qid}`: one entry of a user's queue. The value is empty for a 1:1 message (whose
/// id is `qid`), `@{message id}` for a group message or event queued by a fan-out slice, and
/// the receipt event payload itself for a receipt.
pub fn queue_entry(user: &str, qid: &str) -> Vec<u8> {
    key(&["q/", user, "/", qid])
}

/// `s/{id}/{user}`: the receipt status of message `id` for recipient `user`
/// (`{"status":"delivered"|"read","ts":ms}`); absent means `sent`.
pub fn status(id: &str, user: &str) -> Vec<u8> {
    key(&["s/", id, "/", user])
}

/// `s/{id}/`: the receipt statuses of message `id`, one per recipient; entries are `…/{user}`.
pub fn status_prefix(id: &str) -> String {
    format!("s/{id}/")
}

/// `n/{id}`: a group message or event not yet queued for all its recipients (who they are,
/// how many are done); see `messaging/fanout.rs`.
pub fn fanout(id: &str) -> Vec<u8> {
    key(&["n/", id])
}

/// The prefix under which pending fan-outs live (in acceptance order).
pub const FANOUT_PREFIX: &str = "n/";

/// `x/last_id`: the highest id (message id or receipt queue id) the committer has written.
/// Receipt queue ids live only in `q/…`, so at start-up this key, not just the newest
/// `m/{id}`, tells where ids continue and where the committed watermark starts.
pub const LAST_ID: &[u8] = b"x/last_id";

/// `x/held/{n}`: a list of queue entries held in memory rather than written one by one (see
/// `log/held.rs`): each entry's `q/…` key and value, in a binary layout of its own.
pub const HELD_PREFIX: &str = "x/held/";

/// `x/probe`: written (and flushed) by a recovery after a storage failure, to prove that the
/// store takes durable writes again; its value means nothing.
pub const STORAGE_PROBE: &[u8] = b"x/probe";

/// `k/{user}/{cid}`: the first ack given for a client's message id, for retries.
pub fn cid(user: &str, cid: &str) -> Vec<u8> {
    key(&["k/", user, "/", cid])
}

/// `v/{user}/{conversation}`: one user's summary of one conversation.
pub fn summary(user: &str, conversation: &str) -> Vec<u8> {
    key(&["v/", user, "/", conversation])
}

/// `v/{user}/`: all conversation summaries of one user.
pub fn summary_prefix(user: &str) -> String {
    format!("v/{user}/")
}

/// `g/{group}`: a group's record (name, creation, closed).
pub fn group(group: &str) -> Vec<u8> {
    key(&["g/", group])
}

/// `r/{group}/{user}`: one user's membership of one group (role and membership windows),
/// kept after the user leaves so history and receipts know what they may see.
pub fn member(group: &str, user: &str) -> Vec<u8> {
    key(&["r/", group, "/", user])
}

/// `r/{group}/`: all membership records of one group.
pub fn member_prefix(group: &str) -> String {
    format!("r/{group}/")
}

/// `i/{user}/{group}`: present exactly while `user` is a current member of `group` (empty
/// value), so the groups a user belongs to are one prefix scan of that user's keys — counting
/// them for `limits.max_groups_per_user` never scans the groups themselves.
pub fn membership_index(user: &str, group: &str) -> Vec<u8> {
    key(&["i/", user, "/", group])
}

/// `i/{user}/`: the groups `user` currently belongs to; entries are `…/{group}`.
pub fn membership_index_prefix(user: &str) -> String {
    format!("i/{user}/")
}

/// The prefix under which all membership records live (`r/{group}/{user}`).
pub const MEMBERS_PREFIX: &str = "r/";

/// `x/membership_index`: set once the `i/` index holds every current membership (written by
/// the start-up pass that builds it for stores from before the index existed).
pub const MEMBERSHIP_INDEX_BUILT: &[u8] = b"x/membership_index";

/// `a/{media}/{user}`: `user` may download `media` (written by the committer for the sender and
/// every recipient of a message that references it, group members included, at send time).
pub fn media_access(media: &str, user: &str) -> Vec<u8> {
    key(&["a/", media, "/", user])
}

/// `j/{user}/{conversation}/{id}`: a push job, written by the committer in the same batch as
/// message `id` when `user` had no device connected; the push bridge collapses the jobs of one
/// user and conversation into one notification and deletes exactly the jobs it handled. The
/// value is the message's queue id when it differs from `id` (a group message, queued under
/// a slice's id), else empty.
pub fn push_job(user: &str, conversation: &str, id: &str) -> Vec<u8> {
    key(&["j/", user, "/", conversation, "/", id])
}

/// The prefix under which all push jobs live.
pub const PUSH_JOBS_PREFIX: &str = "j/";

/// `t/{user}/{token}`: a push token of `user` (`{"platform","device","ts"}`), written and
/// removed by the push bridge; a user's tokens are one prefix scan.
pub fn push_token(user: &str, token: &str) -> Vec<u8> {
    key(&["t/", user, "/", token])
}

/// `t/{user}/`: all push tokens of one user; entries are `…/{token}`.
pub fn push_tokens_prefix(user: &str) -> String {
    format!("t/{user}/")
}

/// `o/{token}`: the user a push token belongs to, so that a token registered again by another
/// user moves to that user (one owner per token).
pub fn push_token_owner(token: &str) -> Vec<u8> {
    key(&["o/", token])
}

/// `f/{media}`: the metadata record of one media id (hash, size, MIME type, uploader, created,
/// verification state); the bytes live in the media back end, never in the store.
pub fn media_record(media: &str) -> Vec<u8> {
    key(&["f/", media])
}

/// `c/{sha256}`: the verified content with this SHA-256 (lowercase hex): its size, MIME type and
/// when it was verified. Present only once the bytes are stored and checked, so its presence is
/// what makes a later `media.upload` of the same content answer `exists: true`.
pub fn media_content(sha256: &str) -> Vec<u8> {
    key(&["c/", sha256])
}

/// The prefix under which all verified contents (`c/{sha256}`) and their per-uploader entries
/// (`c/{sha256}/{user}`) live.
pub const MEDIA_CONTENT_PREFIX: &str = "c/";

/// `c/{sha256}/`: the per-uploader entries of one content; entries are `…/{user}`.
pub fn media_owners_prefix(sha256: &str) -> String {
    format!("c/{sha256}/")
}

/// `c/{sha256}/{user}`: the media id `user` got for this content, so asking again for the same
/// content gives the same id (and a fresh upload URL while it is still pending).
pub fn media_owner(sha256: &str, user: &str) -> Vec<u8> {
    key(&["c/", sha256, "/", user])
}

/// The first key after every key that starts with `prefix` (which must end in `/`): the
/// exclusive end of a prefix scan.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        // '/' + 1 == '0'; any prefix byte below 0xFF works the same way.
        *last = last.saturating_add(1);
    }
    end
}

/// The first key strictly after `key`: turns an inclusive bound into an exclusive one.
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_is_symmetric() {
        assert_eq!(direct_conversation("bob", "alice"), "d:alice:bob");
        assert_eq!(direct_conversation("alice", "bob"), "d:alice:bob");
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        let end = prefix_end("q/bob/");
        assert_eq!(end, b"q/bob0".to_vec());
        assert!(b"q/bob/".as_slice() < end.as_slice());
        assert!(b"q/bob/\xff\xff".as_slice() < end.as_slice());
        // Another user's queue sorts outside [prefix, end).
        assert!(b"q/bob1/1".as_slice() >= end.as_slice());
        assert!(b"q/bob-1/1".as_slice() < b"q/bob/".as_slice());
    }
}
