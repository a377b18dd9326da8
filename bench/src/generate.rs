//! `chatbench generate`: fills a chatd data directory offline with a large message store, for
//! the start-up and read benchmarks (`chatbench startup`, `reads`, `replay`).
//!
//! Everything goes through chatd's own storage ports, opened the way the server opens them
//! (`EngineConfig::for_data_dir`, `EmbeddedAccounts`, `EmbeddedLog`), so the store holds exactly
//! the keys chatd writes: accounts with an argon2 password, and per 1:1 message the same unit
//! the committer stages for a send (cid, message, history, queue entry, both summaries). As in
//! chatd, a delivered message is dequeued and its queue entry deleted by the next commit, so
//! the store carries the same delete tombstones; only the last `--queued` messages, all to the
//! queued user (see [`crate::population`]), stay in its queue.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use chatd_core::accounts::Accounts;
use chatd_core::ports::accounts::{AccountChange, AccountRecord, AccountStore};
use chatd_core::ports::log::{CidClaim, Intent, LogBatch, MessageLog, Queued, SummaryChange, Unit};
use chatd_core::records::chat::{direct_conversation, Message};
use chatd_embedded::accounts::EmbeddedAccounts;
use chatd_embedded::log::EmbeddedLog;
use chatd_kv::EngineConfig;
use chatd_wire::ids::{now_ms, IdGen};
use serde::Serialize;

use crate::cli::GenerateArgs;
use crate::population::{Population, Rng};
use crate::report::Render;

/// Messages between two progress lines.
const PROGRESS_EVERY: u64 = 500_000;

/// What `chatbench generate` wrote.
#[derive(Debug, Serialize)]
pub struct GenerateReport {
    /// Always `generate`.
    pub mode: &'static str,
    /// The data directory.
    pub data: String,
    /// The engine of its store.
    pub engine: String,
    /// Accounts created.
    pub users: u32,
    /// 1:1 conversations.
    pub conversations: u64,
    /// Messages stored.
    pub messages: u64,
    /// Messages left in the queued user's queue.
    pub queued: u64,
    /// The user whose queue holds them.
    pub queued_user: String,
    /// Units per batch.
    pub batch: u64,
    /// Seconds spent creating accounts.
    pub accounts_s: f64,
    /// Seconds spent writing messages (the final flush included).
    pub messages_s: f64,
    /// Messages written per second.
    pub messages_per_s: f64,
    /// Bytes of every file under the data directory at the end.
    pub store_bytes: u64,
}

impl Render for GenerateReport {
    fn write_table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "chatbench generate: {} ({}), {} users, {} conversations",
            self.data, self.engine, self.users, self.conversations
        )?;
        writeln!(out, "  accounts            {:>10.1} s", self.accounts_s)?;
        writeln!(
            out,
            "  messages            {:>10}   in {:.1} s ({:.0} msg/s, batches of {})",
            self.messages, self.messages_s, self.messages_per_s, self.batch
        )?;
        writeln!(
            out,
            "  queued for {:<8} {:>10}",
            self.queued_user, self.queued
        )?;
        writeln!(
            out,
            "  store on disk       {:>10.1} MB",
            self.store_bytes as f64 / 1e6
        )
    }

    fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Builds the store `args` describes.
pub fn run(args: &GenerateArgs) -> Result<GenerateReport> {
    let pop = Population {
        prefix: args.prefix.clone(),
        users: args.users,
        peers: args.peers,
    };
    if args.queued > args.messages {
        bail!("--queued cannot exceed --messages");
    }
    let chosen = EngineConfig::for_data_dir(&args.data, args.engine)?;
    if let Some(warning) = chosen.mismatch_warning() {
        eprintln!("note: {warning}");
    }
    let store = chatd_kv::open(&chosen.config)
        .with_context(|| format!("cannot open the store in {}", args.data.display()))?;
    let log = EmbeddedLog::open(store.clone())?;
    if log.newest_id()?.is_some() {
        bail!(
            "{} already holds messages: generate into an empty data directory",
            args.data.display()
        );
    }

    let started = Instant::now();
    eprintln!("creating {} accounts", args.users);
    create_accounts(store.clone(), &pop, &args.password)?;
    let accounts_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    eprintln!(
        "writing {} messages in {} conversations, {} left queued for {}",
        args.messages,
        pop.conversations(),
        args.queued,
        pop.queued_user()
    );
    let mut writer = Writer {
        pop: &pop,
        rng: Rng::new(args.seed),
        ids: IdGen::new(args.node),
        // One message per millisecond, ending about now: the server's ids continue after them.
        start_ms: now_ms().saturating_sub(args.messages + 1000),
        text_len: args.text as usize,
    };
    let mut written = 0u64;
    let mut delivered: Vec<(String, String)> = Vec::new();
    while written < args.messages {
        let n = (args.messages - written).min(args.batch);
        let mut units = Vec::with_capacity(n as usize);
        let mut newest = None;
        let mut next_delivered = Vec::with_capacity(n as usize);
        for seq in written..written + n {
            let queued = seq >= args.messages - args.queued;
            let (unit, to, id) = writer.unit(seq, queued)?;
            if !queued {
                next_delivered.push((to, id.clone()));
            }
            newest = Some(id);
            units.push(unit);
        }
        // The previous batch's messages were delivered and acknowledged meanwhile: their
        // dequeues ride on this commit, as in chatd.
        for (user, qid) in delivered.drain(..) {
            log.dequeue(&user, &qid)?;
        }
        written += n;
        let last = written == args.messages;
        log.commit(LogBatch {
            units,
            newest,
            durable: last,
            claimant: None,
        })?;
        delivered = next_delivered;
        if written % PROGRESS_EVERY < n {
            let s = started.elapsed().as_secs_f64();
            eprintln!(
                "  {written} messages, {:.0} s, {:.0} msg/s",
                s,
                written as f64 / s.max(1e-9)
            );
        }
    }
    // The last batch's deliveries, and a durable end.
    for (user, qid) in delivered.drain(..) {
        log.dequeue(&user, &qid)?;
    }
    log.commit(LogBatch {
        durable: true,
        ..LogBatch::default()
    })?;
    log.flush()?;
    let messages_s = started.elapsed().as_secs_f64();
    drop(log);
    drop(store);
    Ok(GenerateReport {
        mode: "generate",
        data: args.data.display().to_string(),
        engine: chosen.config.engine.to_string(),
        users: args.users,
        conversations: pop.conversations(),
        messages: args.messages,
        queued: args.queued,
        queued_user: pop.queued_user(),
        batch: args.batch,
        accounts_s,
        messages_s,
        messages_per_s: args.messages as f64 / messages_s.max(1e-9),
        store_bytes: dir_bytes(&args.data)?,
    })
}

/// Creates every user of `pop` with `password`. The first goes through `Accounts::add`
/// (validation, the look-alike index, one argon2 hash); the others get the same hash through
/// the accounts port, because 10,000 argon2 hashes would take longer than the messages.
fn create_accounts(
    store: Arc<dyn chatd_kv::KvStore>,
    pop: &Population,
    password: &str,
) -> Result<()> {
    let port = Arc::new(EmbeddedAccounts::new(store));
    let accounts = Accounts::new(port.clone());
    let first = pop.user(0);
    accounts.add(&first, password)?;
    let hash = port
        .get(&first)?
        .and_then(|r| r.hash)
        .context("the first account has no password hash")?;
    for i in 1..pop.users {
        let user = pop.user(i);
        chatd_auth::validate_user_id(&user)?;
        port.write(AccountChange::Create {
            skeleton: chatd_auth::skeleton(&user),
            user,
            record: AccountRecord {
                hash: Some(hash.clone()),
                created: now_ms(),
                removed: None,
                floor: None,
            },
        })?;
    }
    Ok(())
}

/// Makes the units of the generated messages.
struct Writer<'a> {
    pop: &'a Population,
    rng: Rng,
    ids: IdGen,
    /// The clock of message `seq` is `start_ms + seq`.
    start_ms: u64,
    text_len: usize,
}

impl Writer<'_> {
    /// The send unit of message `seq`, its recipient and its id. A `queued` message goes to
    /// the queued user from one of its partners; any other between the two users of a random
    /// conversation, in a random direction.
    fn unit(&mut self, seq: u64, queued: bool) -> Result<(Unit, String, String)> {
        let pop = self.pop;
        let (from, to) = if queued {
            let k = (seq % u64::from(pop.peers.max(1))) as u32;
            (pop.peer(0, k), 0)
        } else {
            let (a, b) = pop.conversation(self.rng.below(pop.conversations()));
            if self.rng.below(2) == 0 {
                (a, b)
            } else {
                (b, a)
            }
        };
        let (from, to) = (pop.user(from), pop.user(to));
        let (id, ts) = self.ids.next_at(self.start_ms + seq);
        let mut message = Message::new(id.clone(), "text", ts);
        message.from = from.clone();
        message.to = Some(to.clone());
        message.text = Some(self.text());
        let payload = Bytes::from(serde_json::to_vec(&message)?);
        let cid = format!("gen-{seq}");
        let ack = chatd_wire::reply::ack_ok(&cid, &id, ts);
        let conversation = direct_conversation(&from, &to);
        let summary = |user: &str, peer: &str, change| Intent::Summary {
            user: user.to_string(),
            conversation: conversation.clone(),
            peer: peer.to_string(),
            group: false,
            change,
        };
        let intents = vec![
            Intent::Message {
                id: id.clone(),
                payload,
            },
            Intent::History {
                conversation: conversation.clone(),
                id: id.clone(),
                index: None,
            },
            Intent::Enqueue {
                user: to.clone(),
                qid: id.clone(),
                entry: Queued::Message,
            },
            summary(&from, &to, SummaryChange::Last(id.clone())),
            summary(&to, &from, SummaryChange::Received(id.clone())),
        ];
        let unit = Unit {
            cid: Some(CidClaim {
                user: from,
                cid,
                ack,
            }),
            intents,
            fence: Vec::new(),
        };
        Ok((unit, to, id))
    }

    /// A text of random lower-case words (compresses about as badly as real chat text).
    fn text(&mut self) -> String {
        const LETTERS: &[u8] = b"etaoinshrdlucmfwypvbgkjqxz      ";
        let mut text = String::with_capacity(self.text_len);
        while text.len() < self.text_len {
            let bits = self.rng.next_u64();
            for byte in bits.to_le_bytes() {
                if text.len() == self.text_len {
                    break;
                }
                text.push(LETTERS[byte as usize % LETTERS.len()] as char);
            }
        }
        text
    }
}

/// Bytes of every regular file under `dir`.
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_store_is_what_chatd_reads() -> Result<()> {
        let dir = tempfile_dir()?;
        let args = GenerateArgs {
            data: dir.clone(),
            engine: chatd_kv::Engine::Fjall,
            messages: 500,
            users: 20,
            peers: 4,
            prefix: "t".into(),
            password: "chatbench-pw".into(),
            queued: 30,
            text: 50,
            batch: 64,
            node: 1,
            seed: 3,
            json: false,
        };
        let report = run(&args)?;
        assert_eq!((report.messages, report.queued), (500, 30));
        let store = chatd_kv::open(&EngineConfig::for_data_dir(&dir, args.engine)?.config)?;
        let log = EmbeddedLog::open(store.clone())?;
        // Only the queued user's last messages are still queued, in order.
        let queue = log.queue("t0", None, 1000)?;
        assert_eq!(queue.len(), 30);
        assert!(log.queue("t1", None, 10)?.is_empty());
        let accounts = Accounts::new(Arc::new(EmbeddedAccounts::new(store)));
        assert!(accounts.verify("t19", "chatbench-pw")?);
        assert_eq!(log.summaries("t0")?.len(), 4);
        let newest = log.newest_id()?.context("no newest id")?;
        assert!(chatd_wire::ids::valid_message_id(&newest));
        drop(log);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// A fresh directory under the system's temporary directory.
    fn tempfile_dir() -> Result<std::path::PathBuf> {
        let dir = std::env::temp_dir().join(format!(
            "chatbench-generate-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}
