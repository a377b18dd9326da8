//! Groups against a small model of the protocol, driven by a seeded random sequence of
//! operations: creations, adds, removals, leaves, promotions, demotions, renames, group sends,
//! receipts and `group.info`, by members, former members, strangers and admins alike, with
//! repeated, unknown and missing users and groups. After every operation the reply (or its
//! refusal code) must be what the model says; every few operations each user's inbox (who
//! received which message and event, in order), receipt events, group history (membership
//! windows, per-member receipts and status), `group.info` and unread counts must match too.
//!
//! The operations are applied one at a time (each waits for its reply), so the server's order
//! is the model's order. CI runs a fixed seed; run by hand with many:
//! `CHATD_MODEL_SEED=7 CHATD_MODEL_OPS=5000 cargo test -p chatd --test e2e group_model:: -- --nocapture`.

use crate::support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Users with accounts.
const USERS: [&str; 6] = ["ann", "ben", "cat", "dan", "eve", "fay"];
/// A well-formed user id without an account.
const GHOST: &str = "ghost";
/// A well-formed group id that never exists.
const NO_GROUP: &str = "g_missing";
/// A well-formed message id that never exists.
const NO_MESSAGE: &str = "0000000000001-00001-00000";
/// `limits.max_group_members` of the server under test.
const LIMIT: usize = 4;
/// Most groups open at once; once groups close (their last member left) new ones are created.
const MAX_OPEN_GROUPS: usize = 6;
/// Most groups created in one run (bounds the cost of a full check).
const MAX_GROUPS: usize = 24;
/// Operations between two full comparisons.
const CHECK_EVERY: usize = 25;
/// Default seed and operation count (CI).
const DEFAULT_SEED: u64 = 13;
const DEFAULT_OPS: usize = 400;

/// splitmix64: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Sent,
    Delivered,
    Read,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Read => "read",
        }
    }
}

/// One entry of a group's history.
enum Entry {
    /// A message: its id, author, normalized form, recipients at send time and their statuses.
    Message {
        id: String,
        from: String,
        shown: String,
        recipients: usize,
        status: BTreeMap<String, Status>,
    },
    /// An event, normalized.
    Event(String),
}

/// One user's membership of one group; windows are positions in the group's history.
struct Member {
    admin: bool,
    windows: Vec<(usize, Option<usize>)>,
    /// Position up to which everything counts as read.
    read_upto: usize,
}

impl Member {
    fn active(&self) -> bool {
        self.windows.last().is_some_and(|(_, to)| to.is_none())
    }

    fn saw(&self, pos: usize) -> bool {
        self.windows
            .iter()
            .any(|(from, to)| *from <= pos && to.is_none_or(|to| pos <= to))
    }

    fn since(&self) -> usize {
        self.windows.last().map_or(usize::MAX, |w| w.0)
    }
}

struct Group {
    id: String,
    closed: bool,
    entries: Vec<Entry>,
    members: BTreeMap<String, Member>,
}

impl Group {
    fn role(&self, user: &str) -> Option<bool> {
        self.members
            .get(user)
            .filter(|m| m.active())
            .map(|m| m.admin)
    }

    fn active(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| m.active())
            .map(|(u, _)| u.clone())
            .collect()
    }
}

/// The model, plus what each user's device must still receive.
#[derive(Default)]
struct Model {
    groups: Vec<Group>,
    /// Every message sent: (group index, position).
    messages: Vec<(usize, usize)>,
    inbox: HashMap<String, Vec<String>>,
    receipts: HashMap<String, Vec<String>>,
    texts: usize,
}

fn event_shown(group: &str, kind: &str, by: &str, users: &[String], name: Option<&str>) -> String {
    format!(
        "{group}|ev:{kind}:{by}:{}:{}",
        users.join(","),
        name.unwrap_or_default()
    )
}

/// The normalized form of an inbox item or history entry from the server.
fn shown_of(v: &Value) -> String {
    let group = v["group"].as_str().unwrap_or("?");
    if v["type"] == "event" {
        let users: Vec<String> = v["users"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|u| u.as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default();
        event_shown(
            group,
            v["event"].as_str().unwrap_or("?"),
            v["by"].as_str().unwrap_or("?"),
            &users,
            v["name"].as_str(),
        )
    } else {
        format!(
            "{group}|msg:{}:{}",
            v["from"].as_str().unwrap_or("?"),
            v["text"].as_str().unwrap_or("?")
        )
    }
}

impl Model {
    /// Appends an event to group `g` and queues it for the current members and `also`.
    fn event(&mut self, g: usize, kind: &str, by: &str, users: &[String], name: Option<&str>) {
        let group = &mut self.groups[g];
        let shown = event_shown(&group.id, kind, by, users, name);
        group.entries.push(Entry::Event(shown.clone()));
        let mut to = group.active();
        for u in users {
            if !to.contains(u) && kind != "promoted" && kind != "demoted" {
                to.push(u.clone());
            }
        }
        for u in to {
            self.inbox.entry(u).or_default().push(shown.clone());
        }
    }

    /// After members went: closes an empty group, or promotes the longest-standing member
    /// of a group left without an admin.
    fn after_departure(&mut self, g: usize, by: &str) {
        let group = &mut self.groups[g];
        let active = group.active();
        if active.is_empty() {
            group.closed = true;
            return;
        }
        if active.iter().any(|u| group.members[u].admin) {
            return;
        }
        let next = active
            .iter()
            .min_by_key(|u| (group.members[*u].since(), (*u).clone()))
            .cloned()
            .unwrap_or_default();
        if let Some(m) = group.members.get_mut(&next) {
            m.admin = true;
        }
        self.event(g, "promoted", by, &[next], None);
    }

    /// Opens a window for `user` at the newest position (the event about to be appended).
    fn join(&mut self, g: usize, user: &str) {
        let group = &mut self.groups[g];
        let pos = group.entries.len();
        let m = group.members.entry(user.to_string()).or_insert(Member {
            admin: false,
            windows: Vec::new(),
            read_upto: pos,
        });
        m.admin = false;
        m.windows.push((pos, None));
    }

    fn leave(&mut self, g: usize, user: &str) {
        let group = &mut self.groups[g];
        let pos = group.entries.len();
        if let Some(m) = group.members.get_mut(user) {
            if let Some(w) = m.windows.last_mut() {
                w.1 = Some(pos);
            }
        }
    }
}

/// A list without repeats, first occurrence kept.
fn distinct(users: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in users {
        if !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

fn exists(user: &str) -> bool {
    USERS.contains(&user)
}

/// What a change request must answer: `Ok` or the refusal code.
type Expect = Result<(), &'static str>;

struct Run {
    rng: Rng,
    model: Model,
    clients: HashMap<String, Client>,
    log: Vec<String>,
    counts: BTreeMap<&'static str, usize>,
    /// How the checked requests came out: `ok` or the refusal code.
    outcomes: BTreeMap<&'static str, usize>,
    seed: u64,
}

impl Run {
    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(15).rev().collect();
        panic!(
            "seed {}: {what}\nlast operations:\n{}",
            self.seed,
            tail.iter()
                .map(|s| format!("  {s}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn client(&mut self, user: &str) -> &mut Client {
        self.clients.get_mut(user).expect("a client per user")
    }

    /// A list of 1..=6 users, often with repeats, sometimes with the ghost.
    fn user_list(&mut self) -> Vec<String> {
        let most = if self.rng.chance(20) { 6 } else { 3 };
        let n = 1 + self.rng.below(most);
        let mut list = Vec::new();
        if self.rng.chance(15) {
            let u = self.rng.pick(&USERS).to_string();
            list = vec![u; n];
        } else {
            for _ in 0..n {
                let u = if self.rng.chance(7) {
                    GHOST
                } else {
                    *self.rng.pick(&USERS)
                };
                list.push(u.to_string());
            }
        }
        list
    }

    /// A group index (mostly an open group), or `None` for the missing group.
    fn some_group(&mut self) -> Option<usize> {
        if self.model.groups.is_empty() || self.rng.chance(4) {
            return None;
        }
        let open: Vec<usize> = (0..self.model.groups.len())
            .filter(|g| !self.model.groups[*g].closed)
            .collect();
        if !open.is_empty() && self.rng.chance(85) {
            return Some(*self.rng.pick(&open));
        }
        Some(self.rng.below(self.model.groups.len()))
    }

    /// A user: often an active admin of `g`, else anyone.
    fn actor(&mut self, g: Option<usize>) -> String {
        if let Some(g) = g {
            let admins: Vec<String> = self.model.groups[g]
                .active()
                .into_iter()
                .filter(|u| self.model.groups[g].members[u].admin)
                .collect();
            if !admins.is_empty() && self.rng.chance(75) {
                return self.rng.pick(&admins).clone();
            }
            let members = self.model.groups[g].active();
            if !members.is_empty() && self.rng.chance(50) {
                return self.rng.pick(&members).clone();
            }
        }
        self.rng.pick(&USERS).to_string()
    }

    async fn rpc(&mut self, me: &str, mut req: Value, expect: Expect) -> Value {
        req["rid"] = json!(unique("r"));
        let r = self.client(me).rpc(me, req.clone()).await;
        let got = if r["ok"] == true {
            Ok(())
        } else {
            Err(r["error"]["code"].as_str().unwrap_or("?").to_string())
        };
        if got != expect.map_err(str::to_string) {
            self.fail(format!("{me}: {req} -> {r}, expected {expect:?}"));
        }
        self.outcome(expect);
        r["result"].clone()
    }

    async fn step(&mut self) {
        let roll = self.rng.below(100);
        match roll {
            0..=29 => self.send().await,
            30..=47 => self.receipt().await,
            48..=59 => self.add().await,
            60..=67 => self.remove().await,
            68..=71 => self.leave().await,
            72..=76 => self.promote_or_demote(true).await,
            77..=81 => self.promote_or_demote(false).await,
            82..=84 => self.rename().await,
            85..=94 => self.create().await,
            _ => self.info().await,
        }
    }

    fn outcome(&mut self, expect: Expect) {
        *self
            .outcomes
            .entry(expect.err().unwrap_or("ok"))
            .or_default() += 1;
    }

    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    async fn create(&mut self) {
        let open = self.model.groups.iter().filter(|g| !g.closed).count();
        if open >= MAX_OPEN_GROUPS || self.model.groups.len() >= MAX_GROUPS {
            return self.send().await;
        }
        self.count("group.create");
        let me = self.rng.pick(&USERS).to_string();
        let raw = if self.rng.chance(20) {
            Vec::new()
        } else {
            self.user_list()
        };
        let members: Vec<String> = distinct(&raw).into_iter().filter(|u| *u != me).collect();
        let expect = if members.len() + 1 > LIMIT {
            Err("too_large")
        } else if members.iter().any(|u| !exists(u)) {
            Err("not_found")
        } else {
            Ok(())
        };
        let name = format!("n{}", self.log.len());
        self.log.push(format!("{me} create {raw:?} -> {expect:?}"));
        let r = self
            .rpc(
                &me,
                json!({"op": "group.create", "name": name, "members": raw}),
                expect,
            )
            .await;
        if expect.is_err() {
            return;
        }
        let id = r["group"].as_str().unwrap_or_default().to_string();
        self.model.groups.push(Group {
            id,
            closed: false,
            entries: Vec::new(),
            members: BTreeMap::new(),
        });
        let g = self.model.groups.len() - 1;
        self.model.join(g, &me);
        if let Some(m) = self.model.groups[g].members.get_mut(&me) {
            m.admin = true;
        }
        for u in &members {
            self.model.join(g, u);
        }
        self.model
            .event(g, "member_added", &me, &members, Some(&name));
    }

    /// The refusal every change of an existing group checks first: missing or closed group,
    /// caller not a member, caller not an admin (when `admin`).
    fn gate(&self, g: Option<usize>, me: &str, admin: bool) -> Expect {
        let Some(g) = g else {
            return Err("not_found");
        };
        let group = &self.model.groups[g];
        if group.closed {
            return Err("not_found");
        }
        match group.role(me) {
            None => Err("forbidden"),
            Some(false) if admin => Err("forbidden"),
            Some(_) => Ok(()),
        }
    }

    fn group_id(&self, g: Option<usize>) -> String {
        g.map_or(NO_GROUP.to_string(), |g| self.model.groups[g].id.clone())
    }

    async fn add(&mut self) {
        self.count("group.add");
        let g = self.some_group();
        let me = self.actor(g);
        let raw = self.user_list();
        let mut expect = self.gate(g, &me, true);
        let mut new = Vec::new();
        if let (Ok(()), Some(g)) = (expect, g) {
            let group = &self.model.groups[g];
            new = distinct(&raw)
                .into_iter()
                .filter(|u| group.role(u).is_none())
                .collect();
            if !new.is_empty() {
                if group.active().len() + new.len() > LIMIT {
                    expect = Err("too_large");
                } else if new.iter().any(|u| !exists(u)) {
                    expect = Err("not_found");
                }
            }
        }
        self.log
            .push(format!("{me} add {raw:?} to {g:?} -> {expect:?}"));
        let id = self.group_id(g);
        self.rpc(
            &me,
            json!({"op": "group.add", "group": id, "users": raw}),
            expect,
        )
        .await;
        let (Ok(()), Some(g)) = (expect, g) else {
            return;
        };
        if new.is_empty() {
            return;
        }
        for u in &new {
            self.model.join(g, u);
        }
        self.model.event(g, "member_added", &me, &new, None);
    }

    /// Checks shared by remove, promote and demote: the gate, then the list size without
    /// repeats, then that everyone named is a member.
    fn members_named(&self, g: Option<usize>, me: &str, users: &[String]) -> Expect {
        self.gate(g, me, true)?;
        if users.len() > LIMIT {
            return Err("too_large");
        }
        let group = &self.model.groups[g.unwrap_or_default()];
        if users.iter().any(|u| group.role(u).is_none()) {
            return Err("not_found");
        }
        Ok(())
    }

    async fn remove(&mut self) {
        self.count("group.remove");
        let g = self.some_group();
        let me = self.actor(g);
        let mut raw = self.user_list();
        if let Some(g) = g {
            // Mostly members, so that removals happen.
            let members = self.model.groups[g].active();
            if !members.is_empty() && self.rng.chance(70) {
                raw = vec![self.rng.pick(&members).clone()];
                if self.rng.chance(30) {
                    raw.push(raw[0].clone());
                }
            }
        }
        let users = distinct(&raw);
        let expect = self.members_named(g, &me, &users);
        self.log
            .push(format!("{me} remove {raw:?} from {g:?} -> {expect:?}"));
        let id = self.group_id(g);
        self.rpc(
            &me,
            json!({"op": "group.remove", "group": id, "users": raw}),
            expect,
        )
        .await;
        let (Ok(()), Some(g)) = (expect, g) else {
            return;
        };
        for u in &users {
            self.model.leave(g, u);
        }
        self.model.event(g, "member_removed", &me, &users, None);
        self.model.after_departure(g, &me);
    }

    async fn leave(&mut self) {
        self.count("group.leave");
        let g = self.some_group();
        let me = self.actor(g);
        let expect = self.gate(g, &me, false);
        self.log.push(format!("{me} leave {g:?} -> {expect:?}"));
        let id = self.group_id(g);
        self.rpc(&me, json!({"op": "group.leave", "group": id}), expect)
            .await;
        let (Ok(()), Some(g)) = (expect, g) else {
            return;
        };
        self.model.leave(g, &me);
        self.model
            .event(g, "member_left", &me, std::slice::from_ref(&me), None);
        self.model.after_departure(g, &me);
    }

    async fn promote_or_demote(&mut self, promote: bool) {
        let op = if promote {
            "group.promote"
        } else {
            "group.demote"
        };
        self.count(op);
        let g = self.some_group();
        let me = self.actor(g);
        let mut raw = self.user_list();
        if let Some(g) = g {
            let members = self.model.groups[g].active();
            if !members.is_empty() && self.rng.chance(70) {
                raw = vec![self.rng.pick(&members).clone()];
            }
        }
        let users = distinct(&raw);
        let mut expect = self.members_named(g, &me, &users);
        if let (Ok(()), Some(g), false) = (expect, g, promote) {
            let group = &self.model.groups[g];
            let admins_left = group
                .active()
                .iter()
                .filter(|u| group.members[*u].admin && !users.contains(u))
                .count();
            if admins_left == 0 {
                expect = Err("bad_request");
            }
        }
        self.log
            .push(format!("{me} {op} {raw:?} in {g:?} -> {expect:?}"));
        let id = self.group_id(g);
        self.rpc(&me, json!({"op": op, "group": id, "users": raw}), expect)
            .await;
        let (Ok(()), Some(g)) = (expect, g) else {
            return;
        };
        let mut changed = Vec::new();
        for u in &users {
            if let Some(m) = self.model.groups[g].members.get_mut(u) {
                if m.admin != promote {
                    m.admin = promote;
                    changed.push(u.clone());
                }
            }
        }
        if !changed.is_empty() {
            let kind = if promote { "promoted" } else { "demoted" };
            self.model.event(g, kind, &me, &changed, None);
        }
    }

    async fn rename(&mut self) {
        self.count("group.rename");
        let g = self.some_group();
        let me = self.actor(g);
        let expect = self.gate(g, &me, true);
        let name = format!("r{}", self.log.len());
        self.log.push(format!("{me} rename {g:?} -> {expect:?}"));
        let id = self.group_id(g);
        self.rpc(
            &me,
            json!({"op": "group.rename", "group": id, "name": name}),
            expect,
        )
        .await;
        if let (Ok(()), Some(g)) = (expect, g) {
            self.model.event(g, "renamed", &me, &[], Some(&name));
        }
    }

    async fn send(&mut self) {
        self.count("send");
        let g = self.some_group();
        let me = self.actor(g);
        let expect = self.gate(g, &me, false);
        self.model.texts += 1;
        let text = format!("t{}", self.model.texts);
        self.log
            .push(format!("{me} sends {text} to {g:?} -> {expect:?}"));
        let id = self.group_id(g);
        let ack = self
            .client(&me)
            .send_json(
                &me,
                &json!({"cid": unique("c"), "group": id, "type": "text", "text": text}),
            )
            .await;
        let got = if ack["status"] == "sent" {
            Ok(())
        } else {
            Err(ack["error"]["code"].as_str().unwrap_or("?").to_string())
        };
        if got != expect.map_err(str::to_string) {
            self.fail(format!("{me} sent {text}: {ack}, expected {expect:?}"));
        }
        self.outcome(expect);
        let (Ok(()), Some(g)) = (expect, g) else {
            return;
        };
        let group = &mut self.model.groups[g];
        let recipients: Vec<String> = group.active().into_iter().filter(|u| *u != me).collect();
        let shown = format!("{}|msg:{me}:{text}", group.id);
        group.entries.push(Entry::Message {
            id: ack["id"].as_str().unwrap_or_default().to_string(),
            from: me.clone(),
            shown: shown.clone(),
            recipients: recipients.len(),
            status: BTreeMap::new(),
        });
        let pos = group.entries.len() - 1;
        let (gid, count) = (group.id.clone(), recipients.len());
        self.model.messages.push((g, pos));
        for u in recipients {
            self.model.inbox.entry(u).or_default().push(shown.clone());
        }
        // Acknowledged means readable: the sender reads it back at once, before anything else
        // is stored.
        let id = ack["id"].clone();
        let info = self
            .rpc(
                &me,
                json!({"op": "group.info", "group": gid, "message": id}),
                Ok(()),
            )
            .await;
        let want = json!({"members": count, "delivered": 0, "read": 0,
                          "delivered_by": [], "read_by": []});
        if info["message"] != id || info["status"] != "sent" || info["receipts"] != want {
            self.fail(format!("{me} reads back {id}: {info}"));
        }
    }

    async fn receipt(&mut self) {
        self.count("receipt");
        let me = self.rng.pick(&USERS).to_string();
        let status = if self.rng.chance(50) {
            Status::Delivered
        } else {
            Status::Read
        };
        let target = if self.model.messages.is_empty() || self.rng.chance(5) {
            None
        } else {
            Some(*self.rng.pick(&self.model.messages))
        };
        let (id, expect) = match target {
            None => (NO_MESSAGE.to_string(), Err("not_found")),
            Some((g, pos)) => {
                let group = &self.model.groups[g];
                let Entry::Message { id, from, .. } = &group.entries[pos] else {
                    unreachable!("messages holds messages only");
                };
                let received = *from != me && group.members.get(&me).is_some_and(|m| m.saw(pos));
                (id.clone(), if received { Ok(()) } else { Err("forbidden") })
            }
        };
        self.log.push(format!(
            "{me} receipt {} for {target:?} -> {expect:?}",
            status.name()
        ));
        let payload = json!({"ids": [id], "status": status.name()});
        if let Err(e) = self
            .client(&me)
            .publish_wait(
                &format!("chat/{me}/receipt"),
                payload.to_string().into_bytes(),
            )
            .await
        {
            self.fail(format!("receipt of {me} not acknowledged: {e}"));
        }
        // A refusal is published before the PUBACK, so it is buffered by now.
        let topic = format!("user/{me}/ack");
        let refusal = self
            .client(&me)
            .next_publish_within(&topic, Duration::from_millis(1))
            .await
            .ok()
            .map(|p| serde_json::from_slice::<Value>(&p.payload).unwrap_or_default());
        match (expect, &refusal) {
            (Ok(()), None) => {}
            (Err(code), Some(r)) if r["error"]["code"] == code && r["receipt"] == json!([id]) => {}
            _ => self.fail(format!(
                "{me} receipt for {id}: got {refusal:?}, expected {expect:?}"
            )),
        }
        self.outcome(expect);
        let (Ok(()), Some((g, pos))) = (expect, target) else {
            return;
        };
        let group = &mut self.model.groups[g];
        let Entry::Message {
            status: statuses,
            from,
            ..
        } = &mut group.entries[pos]
        else {
            return;
        };
        let current = statuses.get(&me).copied().unwrap_or(Status::Sent);
        if status <= current {
            return;
        }
        statuses.insert(me.clone(), status);
        let author = from.clone();
        if status == Status::Read {
            if let Some(m) = group.members.get_mut(&me) {
                m.read_upto = m.read_upto.max(pos);
            }
        }
        self.model
            .receipts
            .entry(author)
            .or_default()
            .push(format!("{id}:{me}:{}", status.name()));
    }

    async fn info(&mut self) {
        self.count("group.info");
        let g = self.some_group();
        let me = self.rng.pick(&USERS).to_string();
        self.check_info(g, &me).await;
    }

    /// `group.info` of group `g` as `me` sees it.
    async fn check_info(&mut self, g: Option<usize>, me: &str) {
        let expect = match g {
            None => Err("not_found"),
            Some(g) => {
                let group = &self.model.groups[g];
                match group.members.get(me) {
                    None => Err("forbidden"),
                    Some(_) if group.closed => Err("not_found"),
                    Some(m) if !m.active() => Err("forbidden"),
                    Some(_) => Ok(()),
                }
            }
        };
        let id = self.group_id(g);
        let r = self
            .rpc(me, json!({"op": "group.info", "group": id}), expect)
            .await;
        let (Ok(()), Some(g)) = (expect, g) else {
            return;
        };
        let got: Vec<(String, bool)> = r["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["user"].as_str().unwrap_or("?").to_string(),
                            m["role"] == "admin",
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let group = &self.model.groups[g];
        let want: Vec<(String, bool)> = group
            .active()
            .into_iter()
            .map(|u| {
                let admin = group.members[&u].admin;
                (u, admin)
            })
            .collect();
        if got != want {
            self.fail(format!(
                "group.info of {id} for {me}: {got:?}, expected {want:?}"
            ));
        }
    }

    /// What each user can observe must match the model: deliveries, refusals and unread
    /// counts always; history and `group.info` of every group when `full`, else of one group
    /// picked at random (a full check of 6 users and 8 groups costs about a hundred requests).
    async fn check_all(&mut self, full: bool) {
        let groups: Vec<usize> = if full {
            (0..self.model.groups.len()).collect()
        } else {
            self.some_group().into_iter().collect()
        };
        for user in USERS {
            self.check_queue(user, "inbox").await;
            self.check_queue(user, "receipt").await;
            for g in groups.iter().copied() {
                self.check_history(g, user).await;
                self.check_info(Some(g), user).await;
            }
            self.check_unread(user).await;
            // No refusal nobody expected.
            let topic = format!("user/{user}/ack");
            if let Ok(p) = self
                .client(user)
                .next_publish_within(&topic, Duration::from_millis(1))
                .await
            {
                let p = String::from_utf8_lossy(&p.payload).into_owned();
                self.fail(format!("unexpected on {topic}: {p}"));
            }
        }
    }

    /// The items `user`'s device got on `user/{user}/{kind}` since the last check, in order.
    async fn check_queue(&mut self, user: &str, kind: &str) {
        let want = match kind {
            "inbox" => self.model.inbox.remove(user),
            _ => self.model.receipts.remove(user),
        }
        .unwrap_or_default();
        let topic = format!("user/{user}/{kind}");
        let mut got = Vec::with_capacity(want.len());
        for _ in 0..want.len() {
            match self.client(user).next_publish_within(&topic, WAIT).await {
                Ok(p) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                    got.push(match kind {
                        "inbox" => shown_of(&v),
                        _ => format!(
                            "{}:{}:{}",
                            v["id"].as_str().unwrap_or("?"),
                            v["by"].as_str().unwrap_or("?"),
                            v["status"].as_str().unwrap_or("?")
                        ),
                    });
                }
                Err(e) => got.push(format!("(nothing: {e})")),
            }
        }
        // Anything more that is already here was not expected.
        if let Ok(p) = self
            .client(user)
            .next_publish_within(&topic, Duration::from_millis(1))
            .await
        {
            got.push(format!("(extra) {}", String::from_utf8_lossy(&p.payload)));
        }
        if got != want {
            self.fail(format!("{topic}:\n got  {got:?}\n want {want:?}"));
        }
    }

    async fn check_history(&mut self, g: usize, user: &str) {
        let group = &self.model.groups[g];
        let id = group.id.clone();
        let Some(member) = group.members.get(user) else {
            self.rpc(
                user,
                json!({"op": "history", "group": id, "limit": 100}),
                Err("forbidden"),
            )
            .await;
            return;
        };
        let visible: Vec<usize> = (0..group.entries.len())
            .filter(|pos| member.saw(*pos))
            .collect();
        let more = visible.len() > 100;
        let want: Vec<(String, Value)> = visible[visible.len().saturating_sub(100)..]
            .iter()
            .map(|pos| match &group.entries[*pos] {
                Entry::Event(shown) => (shown.clone(), Value::Null),
                Entry::Message {
                    shown,
                    recipients,
                    status,
                    ..
                } => {
                    let delivered: Vec<&String> = status.keys().collect();
                    let read: Vec<&String> = status
                        .iter()
                        .filter(|(_, s)| **s == Status::Read)
                        .map(|(u, _)| u)
                        .collect();
                    let overall = if *recipients > 0 && read.len() >= *recipients {
                        "read"
                    } else if *recipients > 0 && delivered.len() >= *recipients {
                        "delivered"
                    } else {
                        "sent"
                    };
                    (
                        shown.clone(),
                        json!({"status": overall, "receipts": {
                            "members": recipients, "delivered": delivered.len(),
                            "read": read.len(), "delivered_by": delivered, "read_by": read}}),
                    )
                }
            })
            .collect();
        let page = self
            .rpc(
                user,
                json!({"op": "history", "group": id, "limit": 100}),
                Ok(()),
            )
            .await;
        let got: Vec<(String, Value)> = page["messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        let extra = if m["type"] == "event" {
                            Value::Null
                        } else {
                            json!({"status": m["status"], "receipts": m["receipts"]})
                        };
                        (shown_of(m), extra)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if got != want || page["more"] != more {
            self.fail(format!(
                "history of {id} for {user}:\n got  {got:?} more={}\n want {want:?} more={more}",
                page["more"]
            ));
        }
    }

    async fn check_unread(&mut self, user: &str) {
        let conv = self.rpc(user, json!({"op": "conversations"}), Ok(())).await;
        let entries = conv["conversations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let got: BTreeMap<String, u64> = entries
            .iter()
            .filter_map(|e| Some((e["group"].as_str()?.to_string(), e["unread"].as_u64()?)))
            .collect();
        let want: BTreeMap<String, u64> = self
            .model
            .groups
            .iter()
            .filter_map(|group| {
                let m = group.members.get(user)?;
                let unread = group
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(pos, e)| {
                        matches!(e, Entry::Message { from, .. } if from != user)
                            && *pos > m.read_upto
                            && m.saw(*pos)
                    })
                    .count();
                Some((group.id.clone(), unread as u64))
            })
            .collect();
        if got != want {
            self.fail(format!("unread of {user}: got {got:?}, want {want:?}"));
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_behave_like_the_model() {
    let seed = env_or("CHATD_MODEL_SEED", DEFAULT_SEED);
    let ops = env_or("CHATD_MODEL_OPS", DEFAULT_OPS);
    let s = Server::start_with(&format!("[limits]\nmax_group_members = {LIMIT}\n"));
    let mut clients = HashMap::new();
    for user in USERS {
        s.add_user(user, &format!("{user}-pw"));
        clients.insert(user.to_string(), online(&s, user, user).await);
    }
    let mut run = Run {
        rng: Rng(seed),
        model: Model::default(),
        clients,
        log: Vec::new(),
        counts: BTreeMap::new(),
        outcomes: BTreeMap::new(),
        seed,
    };
    let started = std::time::Instant::now();
    let mut checking = Duration::ZERO;
    for i in 1..=ops {
        run.step().await;
        if i % CHECK_EVERY == 0 {
            let t = std::time::Instant::now();
            run.check_all(false).await;
            checking += t.elapsed();
        }
    }
    run.check_all(true).await;
    eprintln!("checks took {checking:.1?}");
    let sets: BTreeSet<usize> = run.model.groups.iter().map(|g| g.members.len()).collect();
    eprintln!(
        "group model: seed {seed}, {ops} operations in {:.1?} ({:?}), {} groups (member \
         records {sets:?}), {} messages; requests checked: {:?}",
        started.elapsed(),
        run.counts,
        run.model.groups.len(),
        run.model.messages.len(),
        run.outcomes,
    );
}
