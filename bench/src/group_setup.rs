//! Setting up `chatbench group`: the plan checked from the arguments, the deterministic user
//! names, and creating the group over chatd's request topic.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rumqttc::{Event, Packet, QoS};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::GroupArgs;
use crate::mqtt::{self, ClientSpec};

/// Longest user id chatd accepts.
const MAX_USER_ID: usize = 64;
/// Budget for the user list of one `group.create` / `group.add` request: chatd takes requests of
/// at most [`MAX_RPC_BYTES`]; the rest of the request needs well under 4 KiB.
pub const MAX_LIST_BYTES: usize = 12 * 1024;
/// Largest request chatd takes on `chat/{me}/rpc`.
pub const MAX_RPC_BYTES: usize = 24 * 1024;
/// Time one request may take to be answered.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// The run's shape, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Group members, the creator included.
    pub members: usize,
    /// Members connected during the run (the first ones).
    pub online: usize,
    /// Members sending group messages (the first ones).
    pub senders: usize,
    /// 1:1 pairs beside the fan-out.
    pub pairs: usize,
    /// Copies of each group message that online members should receive (every online member
    /// but its sender).
    pub copies: u64,
}

impl Plan {
    /// Checks the arguments against each other.
    pub fn new(args: &GroupArgs) -> Result<Plan> {
        let members = args.members as usize;
        let online = args.online.map_or(members, |n| n as usize);
        let senders = args.senders as usize;
        if online > members {
            bail!("--online {online} is more than --members {members}");
        }
        if senders > online {
            bail!("--senders {senders} is more than --online {online}: senders must be online");
        }
        if args.load.messages == 0 {
            bail!("--messages must be at least 1");
        }
        let roster = Roster::new(&args.prefix, members, args.pairs as usize);
        if let Some(bad) = roster.all().find(|u| !valid_user_id(u)) {
            bail!(
                "--prefix {:?} makes the user id {bad:?}, which chatd refuses \
                 (1-64 characters of A-Z a-z 0-9 _ . -)",
                args.prefix
            );
        }
        Ok(Plan {
            members,
            online,
            senders,
            pairs: args.pairs as usize,
            copies: (online - 1) as u64,
        })
    }
}

/// True for ids chatd accepts as user ids.
fn valid_user_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_USER_ID
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The users of one run. Names depend only on the prefix and the counts, so later runs reuse
/// the accounts earlier runs created.
#[derive(Debug, Clone)]
pub struct Roster {
    /// `{prefix}-m{i}`: the group members; `m0` creates the group.
    pub members: Vec<String>,
    /// `{prefix}-pa{i}`: the 1:1 senders.
    pub pair_senders: Vec<String>,
    /// `{prefix}-pb{i}`: the 1:1 receivers (pair i: `pa{i}` → `pb{i}`).
    pub pair_receivers: Vec<String>,
}

impl Roster {
    /// The users for `members` members and `pairs` pairs.
    pub fn new(prefix: &str, members: usize, pairs: usize) -> Roster {
        Roster {
            members: (0..members).map(|i| format!("{prefix}-m{i}")).collect(),
            pair_senders: (0..pairs).map(|i| format!("{prefix}-pa{i}")).collect(),
            pair_receivers: (0..pairs).map(|i| format!("{prefix}-pb{i}")).collect(),
        }
    }

    /// Every user of the run.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.members
            .iter()
            .chain(&self.pair_senders)
            .chain(&self.pair_receivers)
    }
}

/// Splits `users` into lists whose JSON encoding (`"id",` each) stays within `max_bytes`
/// (a list holds at least one user).
pub fn chunks(users: &[String], max_bytes: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut current = Vec::new();
    let mut size = 2;
    for user in users {
        let cost = user.len() + 3;
        if !current.is_empty() && size + cost > max_bytes {
            out.push(std::mem::take(&mut current));
            size = 2;
        }
        size += cost;
        current.push(user.clone());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A reply on `user/{me}/rpc`.
#[derive(Deserialize)]
struct RpcReply {
    rid: Option<String>,
    ok: Option<bool>,
    result: Option<Value>,
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcError {
    code: Option<String>,
    message: Option<String>,
}

/// Reads a reply to request `rid`: `None` when the payload answers something else, else the
/// result or the refusal as text.
pub fn parse_reply(payload: &[u8], rid: &str) -> Option<Result<Value, String>> {
    let reply: RpcReply = serde_json::from_slice(payload).ok()?;
    if reply.rid.as_deref() != Some(rid) {
        return None;
    }
    Some(match (reply.ok, reply.result, reply.error) {
        (Some(true), Some(result), _) => Ok(result),
        (_, _, Some(e)) => Err(format!(
            "{}: {}",
            e.code.as_deref().unwrap_or("unknown"),
            e.message.as_deref().unwrap_or("")
        )),
        _ => Err("reply without result or error".into()),
    })
}

/// Creates a group named `name` with `spec`'s user as admin and `members` (the creator not
/// among them) as members: `group.create` with the first chunk of members, then `group.add`
/// for the others. Uses its own connection (`spec`, which should subscribe to
/// `user/{creator}/rpc`) and closes it afterwards. Returns the group id.
pub async fn create_group(spec: &ClientSpec, name: &str, members: &[String]) -> Result<String> {
    let user = spec
        .credentials
        .as_ref()
        .map(|(u, _)| u.clone())
        .ok_or_else(|| anyhow!("the group creator needs credentials"))?;
    let mut conn = mqtt::connect(spec).await?;
    let request_topic = format!("chat/{user}/rpc");
    let reply_topic = format!("user/{user}/rpc");
    let lists = chunks(members, MAX_LIST_BYTES);
    let mut group: Option<String> = None;
    let mut call = 0usize;
    let first = lists.first().cloned().unwrap_or_default();
    let rest = lists.iter().skip(1);
    for list in std::iter::once(&first).chain(rest) {
        call += 1;
        let rid = format!("setup{call}");
        let request = match &group {
            None => {
                serde_json::json!({"rid": rid, "op": "group.create", "name": name, "members": list})
            }
            Some(g) => {
                serde_json::json!({"rid": rid, "op": "group.add", "group": g, "users": list})
            }
        };
        conn.client
            .publish(
                request_topic.as_str(),
                QoS::AtLeastOnce,
                false,
                request.to_string().into_bytes(),
            )
            .await?;
        let answer = tokio::time::timeout(RPC_TIMEOUT, async {
            loop {
                match conn.eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == reply_topic => {
                        if let Some(answer) = parse_reply(&p.payload, &rid) {
                            return Ok(answer);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Err(anyhow!(e)),
                }
            }
        })
        .await
        .map_err(|_| anyhow!("no reply to request {rid} within {RPC_TIMEOUT:?}"))??;
        let op = if group.is_none() {
            "group.create"
        } else {
            "group.add"
        };
        let result = answer
            .map_err(|e| anyhow!("{op} of {} users refused: {e}", list.len()))
            .context("creating the benchmark group")?;
        if group.is_none() {
            let id = result
                .get("group")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("group.create answered without a group id: {result}"))?;
            group = Some(id.to_string());
        }
    }
    mqtt::disconnect(&conn.client, &mut conn.eventloop).await;
    group.ok_or_else(|| anyhow!("no group was created"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Mode};
    use clap::Parser;

    fn args(extra: &[&str]) -> GroupArgs {
        let argv = ["chatbench", "group"].iter().chain(extra).copied();
        match Cli::try_parse_from(argv).map(|c| c.mode) {
            Ok(Mode::Group(a)) => a,
            other => panic!("{extra:?}: {other:?}"),
        }
    }

    #[test]
    fn plan_checks_arguments() {
        let p = Plan::new(&args(&["--members", "1024", "--online", "100"])).unwrap();
        assert_eq!(
            (p.members, p.online, p.senders, p.pairs, p.copies),
            (1024, 100, 1, 5, 99)
        );
        let p = Plan::new(&args(&[
            "--members",
            "10",
            "--senders",
            "3",
            "--pairs",
            "0",
        ]))
        .unwrap();
        assert_eq!((p.online, p.senders, p.pairs, p.copies), (10, 3, 0, 9));
        for bad in [
            &["--members", "10", "--online", "11"][..],
            &["--members", "10", "--online", "2", "--senders", "3"],
            &["--messages", "0"],
            &["--prefix", "a b"],
            &["--prefix", &"x".repeat(62)],
        ] {
            assert!(Plan::new(&args(bad)).is_err(), "{bad:?} accepted");
        }
        assert!(Cli::try_parse_from(["chatbench", "group", "--members", "1"]).is_err());
        assert!(Cli::try_parse_from(["chatbench", "group", "--pair-rate", "0"]).is_err());
    }

    #[test]
    fn roster_names_are_deterministic() {
        let r = Roster::new("g", 3, 2);
        assert_eq!(r.members, ["g-m0", "g-m1", "g-m2"]);
        assert_eq!(r.pair_senders, ["g-pa0", "g-pa1"]);
        assert_eq!(r.pair_receivers, ["g-pb0", "g-pb1"]);
        assert_eq!(r.all().count(), 7);
    }

    #[test]
    fn chunks_respect_the_budget() {
        let users: Vec<String> = (0..1023).map(|i| format!("grp-m{i}")).collect();
        assert_eq!(chunks(&users, MAX_LIST_BYTES).len(), 1);
        let lists = chunks(&users, 4096);
        assert_eq!(lists.len(), 3);
        assert_eq!(lists.concat(), users);
        for list in &lists {
            let json = serde_json::to_string(list).unwrap();
            assert!(json.len() <= 4096, "{}", json.len());
        }
        assert_eq!(chunks(&users[..3], 10).len(), 3);
        assert!(chunks(&[], 100).is_empty());
    }

    #[test]
    fn replies_are_matched_by_rid() {
        let ok = br#"{"rid":"setup1","ok":true,"result":{"group":"g_1"}}"#;
        assert_eq!(parse_reply(ok, "setup1").unwrap().unwrap()["group"], "g_1");
        assert!(parse_reply(ok, "setup2").is_none());
        assert!(parse_reply(b"junk", "setup1").is_none());
        let err =
            br#"{"rid":"r","ok":false,"error":{"code":"not_found","message":"no such users: x"}}"#;
        assert_eq!(
            parse_reply(err, "r").unwrap().unwrap_err(),
            "not_found: no such users: x"
        );
    }
}
