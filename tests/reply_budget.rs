//! `history` and `group.info` replies stay within the reply budget (half of
//! `limits.max_packet_size`), as `conversations` pages do (issue 12 item 7 follow-up): a page
//! stops early with `more: true`, a message too big on its own comes `trimmed` (name lists
//! emptied, counts kept), and `group.info` cuts its member list with `more`/`next`, read on
//! with `after`.

use crate::support;

use std::time::Instant;

use serde_json::{json, Value};
use support::*;

const SECRET: &str = "reply-budget-test-secret-0123456789";

/// A packet limit of 8 KiB: replies must stay within 4 KiB.
const MAX_PACKET: usize = 8192;
const BUDGET: usize = MAX_PACKET / 2;

/// Group members besides the creator: with 60-character ids, one message that all of them
/// read names ~3.8 KB in its receipts (too big alone), and the member list is ~3.4 KB.
const MEMBERS: usize = 30;

fn jwt(sub: &str) -> String {
    hs256_jwt(SECRET, sub)
}

/// A user logged in by token and subscribed to its own topics.
async fn user(s: &Server, id: &str) -> Client {
    let c = connect(s.mqtt, id, id, &jwt(id)).await;
    c.subscribe(&format!("user/{id}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    c
}

/// A request and its reply's size in bytes as written on the wire.
async fn rpc_sized(c: &mut Client, me: &str, mut req: Value) -> (usize, Value) {
    let rid = unique("r");
    req["rid"] = json!(rid);
    c.publish_json(&format!("chat/{me}/rpc"), &req).await;
    loop {
        let p = c.next_publish(&format!("user/{me}/rpc")).await;
        let v: Value = serde_json::from_slice(&p.payload).expect("reply is JSON");
        if v["rid"] == json!(rid) {
            assert_eq!(v["ok"], true, "{req} -> {v}");
            assert!(
                p.payload.len() <= BUDGET,
                "{req}: reply of {} bytes passes the budget of {BUDGET}",
                p.payload.len()
            );
            return (p.payload.len(), v["result"].clone());
        }
    }
}

/// Waits until group message `id` counts `read` readers.
async fn wait_read(c: &mut Client, me: &str, group: &str, id: &str, read: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let info = c
            .rpc(
                me,
                json!({"op": "group.info", "group": group, "message": id, "rid": unique("r")}),
            )
            .await;
        if info["result"]["receipts"]["read"].as_u64() == Some(read) {
            return;
        }
        assert!(Instant::now() < deadline, "receipts of {id}: {info}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What [`big_group`] built.
struct BigGroup {
    server: Server,
    alice: Client,
    group: String,
    /// The members besides alice.
    ids: Vec<String>,
    /// alice's 7 messages, oldest first.
    sent: Vec<String>,
}

/// A server with 8 KiB packets and a group of alice and [`MEMBERS`] others, where alice sent 7
/// messages: the first read by every member, the others by four.
async fn big_group() -> BigGroup {
    let s = Server::start_with(&format!(
        "[auth]\njwt_hs256_secret = \"{SECRET}\"\n\
         [limits]\nmax_packet_size = {MAX_PACKET}\nmax_text_bytes = 2000\n"
    ));
    let ids: Vec<String> = (0..MEMBERS)
        .map(|i| format!("member{i:02}{}", "_".repeat(52)))
        .collect();
    let mut members = Vec::new();
    for id in &ids {
        members.push(user(&s, id).await);
    }
    let mut alice = user(&s, "alice").await;
    let (_, created) = rpc_sized(
        &mut alice,
        "alice",
        json!({"op": "group.create", "name": "big", "members": ids}),
    )
    .await;
    let group = created["group"].as_str().expect("group id").to_string();
    // Message 0 is read by everyone (its receipts alone pass the budget); messages 1-6 by
    // four members each (several fit in a page).
    let mut sent = Vec::new();
    for n in 0..7 {
        let ack = alice
            .send_json(
                "alice",
                &json!({"cid": unique("c"), "group": group, "type": "text",
                        "text": format!("message {n}")}),
            )
            .await;
        assert_eq!(ack["status"], "sent", "{ack}");
        sent.push(ack["id"].as_str().expect("id").to_string());
    }
    for (i, (id, member)) in ids.iter().zip(&members).enumerate() {
        let mut read = vec![sent[0].clone()];
        if i < 4 {
            read.extend(sent[1..].iter().cloned());
        }
        member
            .publish_json(
                &format!("chat/{id}/receipt"),
                &json!({"ids": read, "status": "read"}),
            )
            .await;
    }
    wait_read(&mut alice, "alice", &group, &sent[0], MEMBERS as u64).await;
    for id in &sent[1..] {
        wait_read(&mut alice, "alice", &group, id, 4).await;
    }
    BigGroup {
        server: s,
        alice,
        group,
        ids,
        sent,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_stop_at_the_reply_budget() {
    let BigGroup {
        server: _server,
        mut alice,
        group,
        sent,
        ..
    } = big_group().await;

    // Backwards from the newest, page by page.
    let mut pages = 0;
    let mut seen: Vec<Value> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut req = json!({"op": "history", "group": group, "limit": 100});
        if let Some(b) = &before {
            req["before"] = json!(b);
        }
        let (_, page) = rpc_sized(&mut alice, "alice", req).await;
        pages += 1;
        let messages = page["messages"].as_array().expect("messages").clone();
        assert!(!messages.is_empty(), "empty page: {page}");
        before = messages[0]["id"].as_str().map(str::to_string);
        let mut older = messages;
        older.extend(seen);
        seen = older;
        if page["more"] != true {
            break;
        }
        assert!(pages < 20, "paging does not end");
    }
    assert!(pages >= 3, "{pages} pages: the budget did not cut");
    let got: Vec<&str> = seen
        .iter()
        .filter(|m| m["type"] == "text")
        .map(|m| m["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(got, sent, "every message once, in order");
    let first = &seen[seen.len() - 7];
    assert_eq!(first["trimmed"], true, "{first}");
    assert_eq!(first["text"], "message 0", "the text fits: {first}");
    assert_eq!(first["receipts"]["read"], MEMBERS, "{first}");
    assert_eq!(first["receipts"]["delivered"], MEMBERS, "{first}");
    assert_eq!(first["receipts"]["read_by"], json!([]), "{first}");
    assert_eq!(first["status"], "read", "{first}");
    for m in &seen[seen.len() - 6..] {
        assert!(m.get("trimmed").is_none(), "{m}");
        assert_eq!(m["receipts"]["read_by"].as_array().map(Vec::len), Some(4));
    }

    // Forwards with `after`, from the group's first event.
    let mut after = seen[0]["id"].as_str().expect("id").to_string();
    let mut forward = Vec::new();
    loop {
        let (_, page) = rpc_sized(
            &mut alice,
            "alice",
            json!({"op": "history", "group": group, "limit": 100, "after": after}),
        )
        .await;
        let messages = page["messages"].as_array().expect("messages");
        assert!(!messages.is_empty(), "empty page: {page}");
        for m in messages {
            forward.push(m["id"].as_str().expect("id").to_string());
        }
        after = forward.last().cloned().expect("an id");
        if page["more"] != true {
            break;
        }
        assert!(forward.len() < 50, "paging does not end");
    }
    assert_eq!(forward, sent, "forward paging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_info_pages_its_members_within_the_reply_budget() {
    let BigGroup {
        server: _server,
        mut alice,
        group,
        ids,
        sent,
    } = big_group().await;

    // group.info: the member list (31 entries of ~110 bytes) is cut and read on with `after`.
    let mut listed: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut with_message = true;
    loop {
        let mut req = json!({"op": "group.info", "group": group});
        if with_message {
            // The receipts' names go first when the reply is too big; counts stay.
            req["message"] = json!(sent[0]);
        }
        if let Some(a) = &after {
            req["after"] = json!(a);
        }
        let (_, info) = rpc_sized(&mut alice, "alice", req).await;
        if with_message {
            assert_eq!(info["trimmed"], true, "{info}");
            assert_eq!(info["receipts"]["read"], MEMBERS, "{info}");
            assert_eq!(info["receipts"]["read_by"], json!([]), "{info}");
            with_message = false;
        }
        for m in info["members"].as_array().expect("members") {
            listed.push(m["user"].as_str().expect("user").to_string());
        }
        if info["more"] != true {
            assert!(info.get("next").is_none(), "{info}");
            break;
        }
        assert_eq!(info["next"].as_str(), listed.last().map(String::as_str));
        after = listed.last().cloned();
        assert!(listed.len() < 100, "paging does not end");
    }
    let mut expected = ids.clone();
    expected.push("alice".to_string());
    expected.sort();
    assert_eq!(listed, expected, "every member once, in id order");
    let r = alice
        .rpc(
            "alice",
            json!({"op": "group.info", "group": group, "after": "not an id", "rid": unique("r")}),
        )
        .await;
    assert_eq!(r["error"]["code"], "bad_request", "{r}");
}
