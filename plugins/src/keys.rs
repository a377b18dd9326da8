//! The data layout: every key the plugins write, built in one place so the prefixes in
//! `docs/architecture.md` ("Data layout") have a single source of truth.
//!
//! User ids never contain `/` or `:`, so `{prefix}/{user}/` ranges never overlap between users.

/// `u/{user}`: an account record.
pub fn account(user: &str) -> Vec<u8> {
    format!("u/{user}").into_bytes()
}

/// The prefix under which all account records live.
pub const ACCOUNTS_PREFIX: &str = "u/";

/// `m/{id}`: a message as delivered.
pub fn message(id: &str) -> Vec<u8> {
    format!("m/{id}").into_bytes()
}

/// The prefix under which all messages live (ids sort in acceptance order).
pub const MESSAGES_PREFIX: &str = "m/";

/// `h/{conversation}/`: the history index of one conversation; entries are `…/{id}`.
pub fn history_prefix(conversation: &str) -> String {
    format!("h/{conversation}/")
}

/// `q/{user}/`: the undelivered queue of one user; entries are `…/{id}`.
pub fn queue_prefix(user: &str) -> String {
    format!("q/{user}/")
}

/// `s/{id}/{user}`: the receipt status of message `id` for recipient `user`
/// (`{"status":"delivered"|"read","ts":ms}`); absent means `sent`.
pub fn status(id: &str, user: &str) -> Vec<u8> {
    format!("s/{id}/{user}").into_bytes()
}

/// `n/{id}`: a group message or event not yet queued for all its recipients (who they are,
/// how many are done); see `messaging/fanout.rs`.
pub fn fanout(id: &str) -> Vec<u8> {
    format!("n/{id}").into_bytes()
}

/// The prefix under which pending fan-outs live (in acceptance order).
pub const FANOUT_PREFIX: &str = "n/";

/// `x/last_id`: the highest id (message id or receipt queue id) the committer has written.
/// Receipt queue ids live only in `q/…`, so at start-up this key, not just the newest
/// `m/{id}`, tells where ids continue and where the committed watermark starts.
pub const LAST_ID: &[u8] = b"x/last_id";

/// `k/{user}/{cid}`: the first ack given for a client's message id, for retries.
pub fn cid(user: &str, cid: &str) -> Vec<u8> {
    format!("k/{user}/{cid}").into_bytes()
}

/// `v/{user}/{conversation}`: one user's summary of one conversation.
pub fn summary(user: &str, conversation: &str) -> Vec<u8> {
    format!("v/{user}/{conversation}").into_bytes()
}

/// `v/{user}/`: all conversation summaries of one user.
pub fn summary_prefix(user: &str) -> String {
    format!("v/{user}/")
}

/// The conversation key of a 1:1 chat, the same from both sides: `d:{a}:{b}` with `a < b`.
pub fn direct_conversation(a: &str, b: &str) -> String {
    if a <= b {
        format!("d:{a}:{b}")
    } else {
        format!("d:{b}:{a}")
    }
}

/// `g/{group}`: a group's record (name, creation, closed).
pub fn group(group: &str) -> Vec<u8> {
    format!("g/{group}").into_bytes()
}

/// `r/{group}/{user}`: one user's membership of one group (role and membership windows),
/// kept after the user leaves so history and receipts know what they may see.
pub fn member(group: &str, user: &str) -> Vec<u8> {
    format!("r/{group}/{user}").into_bytes()
}

/// `r/{group}/`: all membership records of one group.
pub fn member_prefix(group: &str) -> String {
    format!("r/{group}/")
}

/// The conversation key of a group: `g:{group}` (history index, summaries, push jobs).
pub fn group_conversation(group: &str) -> String {
    format!("g:{group}")
}

/// `a/{media}/{user}`: `user` may download `media` (written by the committer for the sender and
/// every recipient of a message that references it, group members included, at send time).
pub fn media_access(media: &str, user: &str) -> Vec<u8> {
    format!("a/{media}/{user}").into_bytes()
}

/// `j/{user}/{conversation}/{id}`: a push job, written by the committer in the same batch as
/// message `id` when `user` had no device connected; the push bridge collapses the jobs of one
/// user and conversation into one notification and deletes exactly the jobs it handled. The
/// value is the message's queue id when it differs from `id` (a group message, queued under
/// a slice's id), else empty.
pub fn push_job(user: &str, conversation: &str, id: &str) -> Vec<u8> {
    format!("j/{user}/{conversation}/{id}").into_bytes()
}

/// The prefix under which all push jobs live.
pub const PUSH_JOBS_PREFIX: &str = "j/";

/// `t/{user}/{token}`: a push token of `user` (`{"platform","device","ts"}`), written and
/// removed by the push bridge; a user's tokens are one prefix scan.
pub fn push_token(user: &str, token: &str) -> Vec<u8> {
    format!("t/{user}/{token}").into_bytes()
}

/// `t/{user}/`: all push tokens of one user; entries are `…/{token}`.
pub fn push_tokens_prefix(user: &str) -> String {
    format!("t/{user}/")
}

/// `o/{token}`: the user a push token belongs to, so that a token registered again by another
/// user moves to that user (one owner per token).
pub fn push_token_owner(token: &str) -> Vec<u8> {
    format!("o/{token}").into_bytes()
}

/// `f/{media}`: the metadata record of one media id (hash, size, MIME type, uploader, created,
/// verification state); the bytes live in the media back end, never in the store.
pub fn media_record(media: &str) -> Vec<u8> {
    format!("f/{media}").into_bytes()
}

/// `c/{sha256}`: the verified content with this SHA-256 (lowercase hex): its size, MIME type and
/// when it was verified. Present only once the bytes are stored and checked, so its presence is
/// what makes a later `media.upload` of the same content answer `exists: true`.
pub fn media_content(sha256: &str) -> Vec<u8> {
    format!("c/{sha256}").into_bytes()
}

/// `c/{sha256}/`: the per-uploader entries of one content; entries are `…/{user}`.
pub fn media_owners_prefix(sha256: &str) -> String {
    format!("c/{sha256}/")
}

/// `c/{sha256}/{user}`: the media id `user` got for this content, so asking again for the same
/// content gives the same id (and a fresh upload URL while it is still pending).
pub fn media_owner(sha256: &str, user: &str) -> Vec<u8> {
    format!("c/{sha256}/{user}").into_bytes()
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
