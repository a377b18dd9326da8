//! Topic authorization: which filters a user may subscribe to and which topics it may publish.

use crate::ids::validate_user_id;

/// Longest topic name or filter MQTT can carry, in bytes.
const MAX_TOPIC_LEN: usize = 65_535;

/// The verdict on a SUBSCRIBE filter, telling the broker which path serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeRule {
    /// A filter under `user/{me}/`, served by the session hub.
    Own,
    /// `presence/{user}` for the named user, served by the router.
    Presence(String),
    /// Refused; the text is a short reason for logs.
    Denied(&'static str),
}

/// The client-to-server topics a user may publish on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatTopic {
    /// `chat/{me}/send`: send a message.
    Send,
    /// `chat/{me}/receipt`: delivered/read receipts.
    Receipt,
    /// `chat/{me}/rpc`: requests.
    Rpc,
    /// `chat/{me}/typing`: typing indicator.
    Typing,
}

/// True for a well-formed MQTT topic filter (`#` last and alone, `+` alone in its level).
fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// True for a well-formed MQTT topic name (no wildcards, no NUL, not empty).
fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC_LEN && !topic.contains(['\0', '+', '#'])
}

/// The part of `topic` after `{root}/{me}/`, if it starts that way.
fn below<'a>(topic: &'a str, root: &str, me: &str) -> Option<&'a str> {
    topic
        .strip_prefix(root)?
        .strip_prefix('/')?
        .strip_prefix(me)?
        .strip_prefix('/')
}

/// Decides whether `me` may subscribe to `filter`, and how it is served.
pub fn can_subscribe(me: &str, filter: &str) -> SubscribeRule {
    if validate_user_id(me).is_err() {
        return SubscribeRule::Denied("invalid user id");
    }
    if !is_valid_filter(filter) {
        return SubscribeRule::Denied("not a valid topic filter");
    }
    let mut levels = filter.split('/');
    match levels.next() {
        Some("user") => match below(filter, "user", me) {
            Some(rest) if !rest.is_empty() => SubscribeRule::Own,
            Some(_) => SubscribeRule::Denied("subscribe to user/{me}/# or a topic below it"),
            None => match levels.next() {
                Some(u) if u == me => {
                    SubscribeRule::Denied("subscribe to user/{me}/# or a topic below it")
                }
                Some("+") | Some("#") => {
                    SubscribeRule::Denied("wildcards are not allowed in place of the user")
                }
                _ => SubscribeRule::Denied("only your own user topics are allowed"),
            },
        },
        Some("presence") => match (levels.next(), levels.next()) {
            (Some(user), None) if validate_user_id(user).is_ok() => {
                SubscribeRule::Presence(user.to_string())
            }
            _ => SubscribeRule::Denied("presence needs exactly one named user, no wildcards"),
        },
        _ => SubscribeRule::Denied("topic not allowed"),
    }
}

/// Returns which chat topic `topic` is, if `me` may publish on it.
pub fn can_publish(me: &str, topic: &str) -> Option<ChatTopic> {
    validate_user_id(me).ok()?;
    match below(topic, "chat", me)? {
        "send" => Some(ChatTopic::Send),
        "receipt" => Some(ChatTopic::Receipt),
        "rpc" => Some(ChatTopic::Rpc),
        "typing" => Some(ChatTopic::Typing),
        _ => None,
    }
}

/// True when a CONNECT will on `topic` is acceptable: a `chat/{me}/…` topic, no wildcards.
pub fn will_allowed(me: &str, topic: &str) -> bool {
    validate_user_id(me).is_ok()
        && is_valid_topic_name(topic)
        && below(topic, "chat", me).is_some_and(|rest| !rest.is_empty())
}

/// Standard MQTT matching of a topic name against a filter (`+`, `#`, `$` topics excluded from leading wildcards).
pub fn topic_matches(topic: &str, filter: &str) -> bool {
    if !is_valid_topic_name(topic) || !is_valid_filter(filter) {
        return false;
    }
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if f == "+" || f == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscribeRule::{Denied, Own, Presence};

    fn denied(me: &str, filter: &str) -> bool {
        matches!(can_subscribe(me, filter), Denied(_))
    }

    #[test]
    fn own_filters_allowed() {
        for f in [
            "user/alice/#",
            "user/alice/+",
            "user/alice/inbox",
            "user/alice/ack",
            "user/alice/receipt",
            "user/alice/rpc",
            "user/alice/typing",
            "user/alice/inbox/#",
            "user/alice/+/x",
            "user/alice/+/+",
            "user/alice/anything/deeper",
        ] {
            assert_eq!(can_subscribe("alice", f), Own, "{f}");
        }
    }

    #[test]
    fn bare_user_topic_denied() {
        assert!(denied("alice", "user/alice"));
        assert!(denied("alice", "user/alice/"));
    }

    #[test]
    fn presence_allowed_for_named_user() {
        assert_eq!(
            can_subscribe("alice", "presence/bob"),
            Presence("bob".into())
        );
        assert_eq!(
            can_subscribe("alice", "presence/alice"),
            Presence("alice".into())
        );
        assert_eq!(
            can_subscribe("alice", "presence/b.o_b-1"),
            Presence("b.o_b-1".into())
        );
    }

    #[test]
    fn attacker_filters_denied() {
        for f in [
            "#",
            "+",
            "+/+/#",
            "+/+/+",
            "user/+/inbox",
            "user/+/#",
            "user/bob/#",
            "user/bob/inbox",
            "user/alicex/#",
            "user/alic/#",
            "user/Alice/#",
            "user/#",
            "user/+",
            "user",
            "$SYS/#",
            "$SYS/broker/clients",
            "presence/+",
            "presence/#",
            "presence",
            "presence/",
            "presence/bob/x",
            "presence/bob/#",
            "presence/b ob",
            "chat/alice/send",
            "chat/alice/#",
            "chat/#",
            "+/alice/inbox",
            "#/alice",
            "",
            "user/alice/in#",
            "user/alice/#/x",
            "user/alice/a+",
            "user/alice/\0",
            "user/alice\0/inbox",
            "/user/alice/#",
            "USER/alice/#",
            "q/alice/1",
        ] {
            assert!(denied("alice", f), "{f:?} must be denied");
        }
    }

    #[test]
    fn bogus_me_denied() {
        for me in ["", "+", "#", "a/b", "bob/#"] {
            assert!(denied(me, "user/+/inbox"), "{me}");
            assert!(denied(me, &format!("user/{me}/#")), "{me}");
            assert_eq!(can_publish(me, &format!("chat/{me}/send")), None);
            assert!(!will_allowed(me, &format!("chat/{me}/x")));
        }
    }

    #[test]
    fn denial_reasons_are_short_and_specific() {
        assert_eq!(
            can_subscribe("alice", "user/+/inbox"),
            Denied("wildcards are not allowed in place of the user")
        );
        assert_eq!(
            can_subscribe("alice", "user/bob/#"),
            Denied("only your own user topics are allowed")
        );
        assert_eq!(
            can_subscribe("alice", "a/#/b"),
            Denied("not a valid topic filter")
        );
    }

    #[test]
    fn publish_allowed() {
        assert_eq!(
            can_publish("alice", "chat/alice/send"),
            Some(ChatTopic::Send)
        );
        assert_eq!(
            can_publish("alice", "chat/alice/receipt"),
            Some(ChatTopic::Receipt)
        );
        assert_eq!(can_publish("alice", "chat/alice/rpc"), Some(ChatTopic::Rpc));
        assert_eq!(
            can_publish("alice", "chat/alice/typing"),
            Some(ChatTopic::Typing)
        );
    }

    #[test]
    fn publish_denied() {
        for t in [
            "chat/bob/send",
            "chat/+/send",
            "chat/#",
            "chat/alice/#",
            "chat/alice/+",
            "chat/alice/other",
            "chat/alice/send/x",
            "chat/alice/send/",
            "chat/alice/",
            "chat/alice",
            "chat/alicex/send",
            "chat/alic/send",
            "chat//send",
            "/chat/alice/send",
            "Chat/alice/send",
            "chat/alice/Send",
            "user/alice/inbox",
            "user/bob/inbox",
            "presence/alice",
            "$SYS/x",
            "",
            "chat/alice/send\0",
        ] {
            assert_eq!(can_publish("alice", t), None, "{t:?}");
        }
    }

    #[test]
    fn will_topics() {
        for t in [
            "chat/alice/send",
            "chat/alice/typing",
            "chat/alice/gone",
            "chat/alice/a/b/c",
        ] {
            assert!(will_allowed("alice", t), "{t}");
        }
        for t in [
            "chat/alice",
            "chat/alice/",
            "chat/alice/#",
            "chat/alice/+",
            "chat/alice/a/+",
            "chat/bob/send",
            "chat/+/send",
            "presence/alice",
            "user/alice/inbox",
            "user/bob/inbox",
            "",
            "chat/alice/x\0",
            "chat/alicex/send",
        ] {
            assert!(!will_allowed("alice", t), "{t:?}");
        }
    }

    #[test]
    fn matching_basics() {
        assert!(topic_matches("user/alice/inbox", "user/alice/inbox"));
        assert!(topic_matches("user/alice/inbox", "user/alice/#"));
        assert!(topic_matches("user/alice/inbox", "user/alice/+"));
        assert!(topic_matches("user/alice/inbox", "user/+/inbox"));
        assert!(topic_matches("user/alice/inbox", "#"));
        assert!(topic_matches("user/alice/inbox", "+/+/+"));
        assert!(topic_matches("a/b/c/d", "a/#"));
        assert!(topic_matches("a/b/c/d", "a/+/c/#"));
        assert!(!topic_matches("user/alice/inbox", "user/alice/ack"));
        assert!(!topic_matches("user/alice/inbox", "user/bob/#"));
        assert!(!topic_matches("user/alice/inbox/x", "user/alice/+"));
        assert!(!topic_matches("user/alice", "user/alice/+"));
        assert!(!topic_matches("user/alice/inbox", "user/alice"));
        assert!(!topic_matches("user/alice/inbox", "user/alice/inbox/+"));
    }

    #[test]
    fn matching_edge_cases() {
        // `#` also matches the parent level.
        assert!(topic_matches("user/alice", "user/alice/#"));
        // `+` matches an empty level.
        assert!(topic_matches("/a", "+/a"));
        assert!(topic_matches("a//b", "a/+/b"));
        assert!(topic_matches("a/", "a/+"));
        // `$` topics are not matched by a leading wildcard.
        assert!(!topic_matches("$SYS/x", "#"));
        assert!(!topic_matches("$SYS/x", "+/x"));
        assert!(topic_matches("$SYS/x", "$SYS/#"));
        // Invalid input never matches.
        assert!(!topic_matches("a/+", "a/+"));
        assert!(!topic_matches("a/#", "#"));
        assert!(!topic_matches("", "#"));
        assert!(!topic_matches("a/b", ""));
        assert!(!topic_matches("a/b", "a/#/b"));
        assert!(!topic_matches("a/b", "a/b+"));
        assert!(!topic_matches("a/b\0", "#"));
    }

    #[test]
    fn filter_validity() {
        for ok in ["#", "+", "a/+/b", "a/#", "/", "a//b", "+/+/#"] {
            assert!(is_valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "#/a", "a/#/b", "a+/b", "a/b+", "a\0", "##", "++"] {
            assert!(!is_valid_filter(bad), "{bad:?}");
        }
        assert!(!is_valid_filter(&"a".repeat(MAX_TOPIC_LEN + 1)));
    }
}
