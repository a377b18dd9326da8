//! What one notification says, independent of the service that carries it: who wrote, in which
//! conversation, how many messages are unread there (and the newest message's id, so the app
//! can fetch it), and — only when previews are configured — the newest message's type and the
//! start of its text. Built from the stored message and the recipient's conversation summary,
//! read through the [`PushJobs`] port.

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::push::PushJobs;

/// Longest preview, in characters; longer texts are cut and end with `…`.
pub const PREVIEW_CHARS: usize = 120;

/// One notification for one user and conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The recipient.
    pub user: String,
    /// `d:{a}:{b}` or `g:{group}`.
    pub conversation: String,
    /// The newest message's sender, when the message could be read.
    pub from: Option<String>,
    /// The group of a group conversation.
    pub group: Option<String>,
    /// The newest message's id (lets the app fetch exactly what is new).
    pub message_id: String,
    /// The newest message's type (`text`, `image`, …): only with previews, since it says
    /// something about the content.
    pub kind: Option<String>,
    /// Unread messages in the conversation (at least the number of messages collapsed here).
    pub unread: u64,
    /// The start of the newest text; `None` unless previews are on.
    pub preview: Option<String>,
    /// Same for every notification of this conversation, so a newer one replaces an older one
    /// on the device (APNs `apns-collapse-id`, FCM `collapse_key`); at most 64 bytes.
    pub collapse_id: String,
}

impl Notification {
    /// Builds the notification for jobs `ids` (oldest first, at least one) of `user` in
    /// `conversation`.
    pub fn load(
        store: &dyn PushJobs,
        user: &str,
        conversation: &str,
        ids: &[String],
        previews: bool,
    ) -> Result<Notification, RecordError> {
        let newest = ids.last().cloned().unwrap_or_default();
        let message = store.notice(&newest)?;
        let unread = store.unread(user, conversation)?.max(ids.len() as u64);
        let group = message
            .group
            .or_else(|| conversation.strip_prefix("g:").map(str::to_string));
        Ok(Notification {
            user: user.to_string(),
            conversation: conversation.to_string(),
            from: message.from,
            group,
            message_id: newest,
            kind: if previews { message.kind } else { None },
            unread,
            preview: if previews {
                message.text.map(|t| preview(&t))
            } else {
                None
            },
            collapse_id: collapse_id(conversation),
        })
    }

    /// A short title: the sender, or the group (with the sender) for group messages.
    pub fn title(&self) -> String {
        match (&self.group, &self.from) {
            (Some(group), Some(from)) => format!("{from} in {group}"),
            (Some(group), None) => group.clone(),
            (None, Some(from)) => from.clone(),
            (None, None) => "New message".to_string(),
        }
    }

    /// The body: the preview when there is one, else how many messages are unread.
    pub fn body(&self) -> String {
        match &self.preview {
            Some(p) => p.clone(),
            None if self.unread == 1 => "1 new message".to_string(),
            None => format!("{} new messages", self.unread),
        }
    }
}

/// A stable, content-free id for a conversation: `c-` and 16 hex digits of its FNV-1a hash
/// (18 bytes, well under APNs' 64), the same on every node and across restarts.
pub fn collapse_id(conversation: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in conversation.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("c-{hash:016x}")
}

/// Cuts `text` to [`PREVIEW_CHARS`] characters (on a character boundary), marking the cut.
pub fn preview(text: &str) -> String {
    let mut chars = text.char_indices();
    match chars.nth(PREVIEW_CHARS) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_embedded::keys;
    use chatd_embedded::push::EmbeddedPush;
    use chatd_kv::{KvStore, Op};
    use std::sync::Arc;

    #[test]
    fn collapse_ids_are_short_and_stable() {
        let a = collapse_id("d:alice:bob");
        assert_eq!(a, collapse_id("d:alice:bob"));
        assert_ne!(a, collapse_id("d:alice:carol"));
        assert_eq!(a, "c-ea6c2538abf96134", "the value docs/protocol.md shows");
        assert_eq!(a.len(), 18);
        assert!(collapse_id(&"x".repeat(500)).len() <= 64);
    }

    #[test]
    fn previews_are_cut_on_characters() {
        assert_eq!(preview("hi"), "hi");
        let long = "é".repeat(PREVIEW_CHARS + 5);
        let p = preview(&long);
        assert_eq!(p.chars().count(), PREVIEW_CHARS + 1);
        assert!(p.ends_with('…'));
    }

    #[test]
    fn load_reads_message_and_summary_and_hides_text() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn KvStore> = chatd_kv::open(&chatd_kv::EngineConfig::new(
            chatd_kv::Engine::default(),
            dir.path().join("s"),
        ))
        .unwrap();
        let jobs = EmbeddedPush::new(store.clone());
        let id = "1732790000123-00001-00000";
        store
            .apply(vec![
                Op::Put(
                    keys::message(id),
                    br#"{"id":"x","from":"alice","to":"bob","type":"text","text":"secret","ts":1}"#
                        .to_vec(),
                ),
                Op::Put(
                    keys::summary("bob", "d:alice:bob"),
                    br#"{"peer":"alice","last_id":"x","unread":4}"#.to_vec(),
                ),
            ])
            .unwrap();
        let ids = vec![id.to_string()];
        let n = Notification::load(&jobs, "bob", "d:alice:bob", &ids, false).unwrap();
        assert_eq!(n.from.as_deref(), Some("alice"));
        assert_eq!(n.unread, 4);
        assert_eq!(n.preview, None);
        assert_eq!(n.kind, None);
        assert_eq!(n.body(), "4 new messages");
        assert_eq!(n.title(), "alice");
        let n = Notification::load(&jobs, "bob", "d:alice:bob", &ids, true).unwrap();
        assert_eq!(n.preview.as_deref(), Some("secret"));
        assert_eq!(n.kind.as_deref(), Some("text"));
        // Missing records still give a notification, counting the jobs.
        let ids = vec!["a".to_string(), "b".to_string()];
        let n = Notification::load(&jobs, "bob", "g:g1", &ids, true).unwrap();
        assert_eq!(
            (n.unread, n.group.as_deref(), n.from),
            (2, Some("g1"), None)
        );
    }
}
