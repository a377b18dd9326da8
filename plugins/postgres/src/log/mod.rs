//! The message-log port (`chatd_core::ports::log`) in PostgreSQL.
//!
//! A commit is one transaction (group commit: one per batch, not one per message) on the
//! durable connection, acknowledged only after `COMMIT` returned with `synchronous_commit =
//! on`; reads run on their own connections and see committed rows only, which is what the
//! port asks. Every batch is made durable, the ones the port allows to be lazy included: a
//! PostgreSQL commit becomes visible to other sessions as soon as it is made, so a lazy commit
//! could be read (and delivered) and then lost in a crash, which the port forbids.
//!
//! Split by concern: `commit.rs` (intents to statements), `reads.rs`, `claims.rs` (fan-out
//! leases, purges), `acked.rs` (dequeues that wait for the next batch). The synchronous port
//! reaches the async client through `crate::bridge`.

mod acked;
mod claims;
mod commit;
mod reads;

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::log::{
    HistoryEntry, LogBatch, MessageLog, PendingFanout, QueueItem, UnitOutcome,
};
use chatd_core::records::chat::{Status, Summary};
use chatd_core::records::group::{Group, MemberRecord};
use tokio::sync::MappedMutexGuard;

use self::acked::Acked;
use crate::bridge::Bridge;
use crate::connect::{Connector, Role, Session, Slot};
use crate::error::PgError;
use crate::schema;

/// How a [`PostgresLog`] connects and waits.
#[derive(Clone, Debug)]
pub struct Options {
    /// Connections for reads (queue, history, groups…), used in turn.
    pub readers: usize,
    /// The longest one call may take before it fails.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            readers: 4,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What the calls on the adapter's runtime share.
struct Inner {
    connector: Connector,
    /// Batches (dequeues included), fan-out claims and purges.
    writer: Slot,
    /// Reads.
    readers: Vec<Slot>,
    /// The reader the next read takes.
    next: AtomicUsize,
}

impl Inner {
    /// The writer's session.
    async fn writer(&self) -> Result<MappedMutexGuard<'_, Session>, PgError> {
        self.writer.session(&self.connector).await
    }

    /// A reader's session, taken in turn.
    async fn reader(&self) -> Result<MappedMutexGuard<'_, Session>, PgError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len().max(1);
        match self.readers.get(n) {
            Some(slot) => slot.session(&self.connector).await,
            None => self.writer().await,
        }
    }
}

/// The message log kept in PostgreSQL.
pub struct PostgresLog {
    inner: Arc<Inner>,
    /// Shared with the other ports of a [`crate::PostgresStore`].
    bridge: Arc<Bridge>,
    /// Set when a commit failed, cleared when one (or a recovery) succeeds.
    failing: AtomicBool,
    /// Dequeues waiting for the next batch.
    acked: Acked,
}

/// Creates or upgrades the schema of the database at `url`; the version found before.
pub fn migrate(url: &str) -> Result<i32, PgError> {
    let connector = Connector::new(url)?;
    let bridge = Bridge::new(1, Options::default().timeout)?;
    bridge.run(async move {
        let mut client = connector.client().await?;
        schema::migrate(&mut client).await
    })
}

impl PostgresLog {
    /// The log in the database at `url`, whose schema must be this build's (see
    /// [`migrate`]); connects once to find out.
    pub fn open(url: &str, options: Options) -> Result<PostgresLog, PgError> {
        let connector = Connector::new(url)?;
        let bridge = Arc::new(Bridge::new(2, options.timeout)?);
        PostgresLog::on(connector, bridge, &options)
    }

    /// The log reached through `connector`, its calls run on `bridge`; connects once to check
    /// the schema.
    pub(crate) fn on(
        connector: Connector,
        bridge: Arc<Bridge>,
        options: &Options,
    ) -> Result<PostgresLog, PgError> {
        let inner = Arc::new(Inner {
            connector,
            writer: Slot::new(Role::Durable),
            readers: (0..options.readers.max(1))
                .map(|_| Slot::new(Role::Durable))
                .collect(),
            next: AtomicUsize::new(0),
        });
        let log = PostgresLog {
            inner,
            bridge,
            failing: AtomicBool::new(false),
            acked: Acked::default(),
        };
        log.call(|inner| async move { inner.writer().await.map(drop) })?;
        Ok(log)
    }

    /// Runs `f` on the adapter's runtime and waits for it.
    fn call<T, F, Fut>(&self, f: F) -> Result<T, PgError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: std::future::Future<Output = Result<T, PgError>> + Send + 'static,
    {
        self.bridge.run(f(self.inner.clone()))
    }
}

impl MessageLog for PostgresLog {
    fn commit(&self, batch: LogBatch) -> Result<Vec<UnitOutcome>, RecordError> {
        let (users, qids) = self.acked.take();
        let dequeues = (users.clone(), qids.clone());
        let result = self.call(|inner| async move {
            let mut session = inner.writer().await?;
            commit::commit(&mut session, batch, dequeues).await
        });
        self.failing.store(result.is_err(), Ordering::Relaxed);
        if result.is_ok() {
            self.acked.done(&users, &qids);
        }
        Ok(result?)
    }

    fn newest_id(&self) -> Result<Option<String>, RecordError> {
        Ok(self.call(|inner| async move { reads::newest_id(&*inner.reader().await?).await })?)
    }

    fn remembered_ack(&self, user: &str, cid: &str) -> Result<Option<Bytes>, RecordError> {
        let (user, cid) = (user.to_string(), cid.to_string());
        Ok(self.call(|inner| async move {
            reads::remembered_ack(&*inner.reader().await?, &user, &cid).await
        })?)
    }

    fn message(&self, id: &str) -> Result<Option<Bytes>, RecordError> {
        let id = id.to_string();
        Ok(self.call(|inner| async move { reads::message(&*inner.reader().await?, &id).await })?)
    }

    fn status(&self, id: &str, user: &str) -> Result<Status, RecordError> {
        let (id, user) = (id.to_string(), user.to_string());
        Ok(self.call(
            |inner| async move { reads::status(&*inner.reader().await?, &id, &user).await },
        )?)
    }

    fn statuses(&self, id: &str) -> Result<Vec<(String, Status)>, RecordError> {
        let id = id.to_string();
        Ok(self.call(|inner| async move { reads::statuses(&*inner.reader().await?, &id).await })?)
    }

    fn queue(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QueueItem>, RecordError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Acknowledged entries not deleted yet are skipped: those waiting before the read
        // (which it may still find) and those added during it. Asking for as many more rows as
        // wait keeps a page full.
        let before = self.acked.of(user);
        let ask = limit.saturating_add(before.len());
        let (owner, after) = (user.to_string(), after.unwrap_or_default().to_string());
        let mut items = self.call(|inner| async move {
            reads::queue(&*inner.reader().await?, &owner, &after, ask).await
        })?;
        let during = self.acked.of(user);
        items.retain(|i| !before.contains(&i.qid) && !during.contains(&i.qid));
        items.truncate(limit);
        Ok(items)
    }

    fn dequeue(&self, user: &str, qid: &str) -> Result<bool, RecordError> {
        // The next batch deletes it (see `acked.rs`); true asks the committer for one soon.
        Ok(self.acked.add(user, qid))
    }

    fn history(
        &self,
        conversation: &str,
        low: Bound<&str>,
        high: Bound<&str>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, RecordError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let conversation = conversation.to_string();
        let low = low.map(str::to_string);
        let high = high.map(str::to_string);
        Ok(self.call(|inner| async move {
            let mut session = inner.reader().await?;
            reads::history(&mut session, &conversation, low, high, newest_first, limit).await
        })?)
    }

    fn history_entry(
        &self,
        conversation: &str,
        id: &str,
    ) -> Result<Option<HistoryEntry>, RecordError> {
        let (conversation, id) = (conversation.to_string(), id.to_string());
        Ok(self.call(|inner| async move {
            reads::history_entry(&*inner.reader().await?, &conversation, &id).await
        })?)
    }

    fn summaries(&self, user: &str) -> Result<Vec<(String, Summary)>, RecordError> {
        let user = user.to_string();
        Ok(self
            .call(|inner| async move { reads::summaries(&*inner.reader().await?, &user).await })?)
    }

    fn group(&self, group: &str) -> Result<Option<Arc<Group>>, RecordError> {
        let group = group.to_string();
        Ok(self
            .call(|inner| async move { reads::group(&*inner.reader().await?, &group).await })?
            .map(Arc::new))
    }

    fn membership(&self, group: &str, user: &str) -> Result<Option<MemberRecord>, RecordError> {
        let (group, user) = (group.to_string(), user.to_string());
        Ok(self.call(|inner| async move {
            reads::membership(&*inner.reader().await?, &group, &user).await
        })?)
    }

    fn groups_of(&self, user: &str, limit: usize) -> Result<Vec<String>, RecordError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let user = user.to_string();
        Ok(self.call(|inner| async move {
            reads::groups_of(&*inner.reader().await?, &user, limit).await
        })?)
    }

    fn claim_fanouts(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<PendingFanout>, RecordError> {
        let owner = owner.to_string();
        Ok(self.call(|inner| async move {
            claims::claim_fanouts(&*inner.writer().await?, &owner, lease).await
        })?)
    }

    fn pending_purges(&self) -> Result<Vec<String>, RecordError> {
        Ok(self
            .call(|inner| async move { claims::pending_purges(&*inner.reader().await?).await })?)
    }

    fn finish_purge(&self, user: &str) -> Result<usize, RecordError> {
        let user = user.to_string();
        Ok(self.call(|inner| async move {
            claims::finish_purge(&mut *inner.writer().await?, &user).await
        })?)
    }

    fn flush(&self) -> Result<(), RecordError> {
        // Every commit is durable when it returns: nothing waits to be flushed.
        Ok(())
    }

    fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    fn recover(&self) -> Result<(), RecordError> {
        let result = self.call(|inner| async move {
            let session = inner.writer().await?;
            session.client.execute(&session.st.put_probe, &[]).await?;
            Ok(())
        });
        if result.is_ok() {
            self.failing.store(false, Ordering::Relaxed);
        }
        Ok(result?)
    }
}
