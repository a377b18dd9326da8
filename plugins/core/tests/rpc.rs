//! `Chat::rpc`: history windows, conversations and request errors.

mod common;

use common::Env;
use serde_json::{json, Value};

fn ids(reply: &Value) -> Vec<String> {
    reply["result"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages: {reply}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn more(reply: &Value) -> bool {
    reply["result"]["more"]
        .as_bool()
        .unwrap_or_else(|| panic!("no more: {reply}"))
}

/// Ten messages alternating between alice and bob, plus noise in other conversations.
async fn conversation() -> (Env, Vec<String>) {
    let env = Env::new(&["alice", "bob", "carol"]);
    let mut ids = Vec::new();
    for i in 0..10 {
        let (from, to) = if i % 2 == 0 {
            ("alice", "bob")
        } else {
            ("bob", "alice")
        };
        ids.push(env.text(from, to, &format!("c{i}"), &format!("m{i}")).await);
        env.text("carol", "alice", &format!("n{i}"), "noise").await;
    }
    (env, ids)
}

#[tokio::test]
async fn history_windows() {
    let (env, all) = conversation().await;
    let h = |args: Value| {
        let mut req = json!({"rid": "r-1", "op": "history", "with": "bob"});
        if let (Some(req), Some(args)) = (req.as_object_mut(), args.as_object()) {
            req.extend(args.clone());
        }
        env.rpc("alice", req)
    };

    // Newest page by default, oldest first in the page.
    let r = h(json!({})).await;
    assert_eq!(r["rid"], "r-1");
    assert_eq!(r["ok"], true);
    assert_eq!(ids(&r), all);
    assert!(!more(&r));
    let first = &r["result"]["messages"][0];
    assert_eq!(first["status"], "sent");
    assert_eq!(first["from"], "alice");
    assert_eq!(first["to"], "bob");
    assert_eq!(first["text"], "m0");
    assert_eq!(first["type"], "text");

    let r = h(json!({"limit": 3})).await;
    assert_eq!(ids(&r), all[7..]);
    assert!(more(&r));

    // Paging backwards with `before`.
    let r = h(json!({"limit": 3, "before": all[7]})).await;
    assert_eq!(ids(&r), all[4..7]);
    assert!(more(&r));
    let r = h(json!({"limit": 4, "before": all[4]})).await;
    assert_eq!(ids(&r), all[..4]);
    assert!(!more(&r));
    let r = h(json!({"before": all[0]})).await;
    assert!(ids(&r).is_empty());
    assert!(!more(&r));

    // Paging forwards with `after`.
    let r = h(json!({"limit": 3, "after": all[1]})).await;
    assert_eq!(ids(&r), all[2..5]);
    assert!(more(&r));
    let r = h(json!({"limit": 5, "after": all[4]})).await;
    assert_eq!(ids(&r), all[5..]);
    assert!(!more(&r));

    // Both: inside the open interval, oldest first.
    let r = h(json!({"limit": 2, "after": all[2], "before": all[7]})).await;
    assert_eq!(ids(&r), all[3..5]);
    assert!(more(&r));
    let r = h(json!({"after": all[2], "before": all[7]})).await;
    assert_eq!(ids(&r), all[3..7]);
    assert!(!more(&r));

    // The same conversation from the other side.
    let r = env
        .rpc(
            "bob",
            json!({"rid": "x", "op": "history", "with": "alice", "limit": 100}),
        )
        .await;
    assert_eq!(ids(&r), all);

    // Nobody else's pair: carol asking about bob sees only carol:bob, which is empty.
    let r = env
        .rpc("carol", json!({"rid": "x", "op": "history", "with": "bob"}))
        .await;
    assert!(ids(&r).is_empty());
    let r = env
        .rpc(
            "carol",
            json!({"rid": "x", "op": "history", "with": "alice", "limit": 1}),
        )
        .await;
    assert_eq!(r["result"]["messages"][0]["text"], "noise");
    assert!(more(&r));
}

#[tokio::test]
async fn history_refusals() {
    let (env, all) = conversation().await;
    let cases = [
        (
            json!({"rid":"r","op":"history"}),
            "`with` (a user) or `group` is required",
        ),
        (json!({"rid":"r","op":"history","with":"b/ob"}), "`with`"),
        (
            json!({"rid":"r","op":"history","group":"g1","with":"bob"}),
            "not both",
        ),
        (
            json!({"rid":"r","op":"history","group":"g/1"}),
            "not a group id",
        ),
        (
            json!({"rid":"r","op":"history","with":"bob","limit":0}),
            "`limit`",
        ),
        (
            json!({"rid":"r","op":"history","with":"bob","limit":101}),
            "`limit`",
        ),
        (
            json!({"rid":"r","op":"history","with":"bob","limit":-1}),
            "`limit`",
        ),
        (
            json!({"rid":"r","op":"history","with":"bob","limit":2.5}),
            "`limit`",
        ),
        (
            json!({"rid":"r","op":"history","with":"bob","limit":"5"}),
            "`limit`",
        ),
        (
            json!({"rid":"r","op":"history","with":"bob","before":"x"}),
            "`before`",
        ),
        (
            json!({"rid":"r","op":"history","with":"bob","after":7}),
            "`after`",
        ),
        (
            json!({"rid":"r","op":"history","with":"bob","peek":true}),
            "unknown field `peek`",
        ),
    ];
    for (req, needle) in cases {
        let r = env.rpc("alice", req.clone()).await;
        assert_eq!(r["rid"], "r", "{req}: {r}");
        assert_eq!(r["ok"], false, "{req}: {r}");
        assert_eq!(r["error"]["code"], "bad_request", "{req}: {r}");
        let message = r["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{req}: {r}");
    }
    let r = env
        .rpc(
            "alice",
            json!({"rid":"r","op":"history","with":"bob","limit":100,"after":all[0]}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
}

#[tokio::test]
async fn conversations_with_unread() {
    let env = Env::new(&["alice", "bob", "carol", "dave"]);
    env.text("bob", "alice", "b1", "hi alice").await;
    env.text("bob", "alice", "b2", "are you there").await;
    env.text("carol", "alice", "c1", "hello").await;
    let last = env.text("alice", "dave", "a1", "hey dave").await;

    let r = env
        .rpc("alice", json!({"rid":"r-2","op":"conversations"}))
        .await;
    assert_eq!(r["rid"], "r-2");
    assert_eq!(r["ok"], true);
    let list = r["result"]["conversations"]
        .as_array()
        .expect("list")
        .clone();
    let summary: Vec<(String, u64)> = list
        .iter()
        .map(|c| {
            (
                c["with"].as_str().unwrap_or_default().to_string(),
                c["unread"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("dave".into(), 0), ("carol".into(), 1), ("bob".into(), 2)]
    );
    assert_eq!(list[0]["last"]["id"], last);
    assert_eq!(list[0]["last"]["text"], "hey dave");
    assert_eq!(list[2]["last"]["text"], "are you there");

    let r = env
        .rpc("bob", json!({"rid":"r","op":"conversations"}))
        .await;
    let list = r["result"]["conversations"]
        .as_array()
        .expect("list")
        .clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["with"], "alice");
    assert_eq!(list[0]["unread"], 0);

    let r = env
        .rpc("nobody", json!({"rid":"r","op":"conversations"}))
        .await;
    assert_eq!(r["result"]["conversations"], json!([]));
    let r = env
        .rpc("alice", json!({"rid":"r","op":"conversations","limit":2}))
        .await;
    assert_eq!(
        r["result"]["conversations"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(r["result"]["more"], true);
    let r = env
        .rpc("alice", json!({"rid":"r","op":"conversations","after":"x"}))
        .await;
    assert_eq!(r["error"]["message"], "unknown field `after`");
}

#[tokio::test]
async fn request_refusals() {
    let env = Env::new(&["alice"]);
    let raw =
        |payload: &'static [u8]| async { common::parse(&env.chat.rpc("alice", payload).await) };
    for (payload, needle) in [
        (&b""[..], "empty"),
        (b"\xff", "UTF-8"),
        (b"{", "JSON"),
        (b"[]", "object"),
        (br#"{"op":"history","with":"bob"}"#, "`rid` is required"),
        (
            br#"{"rid":5,"op":"conversations"}"#,
            "`rid` must be a string",
        ),
    ] {
        let r = raw(payload).await;
        assert!(r.get("rid").is_none(), "{r}");
        assert_eq!(r["ok"], false);
        assert_eq!(r["error"]["code"], "bad_request");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(needle),
            "{r}"
        );
    }
    let long = "r".repeat(129);
    let r = env
        .rpc("alice", json!({"rid": long, "op":"conversations"}))
        .await;
    assert!(r.get("rid").is_none(), "{r}");

    for (req, message) in [
        (json!({"rid":"r"}), "`op` is required".to_string()),
        (
            json!({"rid":"r","op":"dance"}),
            "unknown op `dance`".to_string(),
        ),
        (
            json!({"rid":"r","op":7}),
            "`op` must be a string, not a number".to_string(),
        ),
        (
            json!({"rid":"r","op":"group.create","name":"x","members":"bob"}),
            "`members` must be an array of user ids, not a string".to_string(),
        ),
        (
            json!({"rid":"r","op":"presence.get","users":["bob"]}),
            "`presence.get` is not available: that service is not configured on this server"
                .to_string(),
        ),
        (
            json!({"rid":"r","op":"media.upload"}),
            "`media.upload` is not available: that service is not configured on this server"
                .to_string(),
        ),
        (
            json!({"rid":"r","op":"push.register"}),
            "`push.register` is not available: that service is not configured on this server"
                .to_string(),
        ),
    ] {
        let r = env.rpc("alice", req.clone()).await;
        assert_eq!(
            r,
            json!({"rid":"r","ok":false,"error":{"code":"bad_request","message":message}}),
            "{req}"
        );
    }
    let big = format!(
        r#"{{"rid":"r","op":"conversations","x":"{}"}}"#,
        "a".repeat(30_000)
    );
    let r = common::parse(&env.chat.rpc("alice", big.as_bytes()).await);
    assert_eq!(r["error"]["code"], "too_large");
}
