//! Every SQL statement of the message log, prepared once per connection. Writes are single
//! statements that need no read first (`INSERT … ON CONFLICT DO UPDATE` with the change in the
//! `SET`), so a batch's statements can be pipelined and several writers never lose an update.

use tokio_postgres::{Client, Statement};

use crate::error::PgError;

/// A lease of `$n` milliseconds from the transaction's start, in SQL.
macro_rules! lease_from_now {
    ($n:literal) => {
        concat!(
            "now() + $",
            $n,
            "::bigint::float8 * interval '1 millisecond'"
        )
    };
}

/// Declares [`Statements`] and its preparation from one list of `name: SQL` pairs.
macro_rules! statements {
    ($($(#[doc = $doc:literal])* $name:ident: $sql:expr,)*) => {
        /// The prepared statements of one connection.
        pub struct Statements {
            $($(#[doc = $doc])* pub $name: Statement,)*
        }

        impl Statements {
            /// Prepares every statement on `client`.
            pub async fn prepare(client: &Client) -> Result<Statements, PgError> {
                Ok(Statements {
                    $($name: client.prepare($sql).await?,)*
                })
            }
        }
    };
}

statements! {
    /// Remembers a cid; a row comes back only when it was not remembered yet.
    claim_cid: "INSERT INTO cids (user_id, cid, ack) VALUES ($1, $2, $3) \
                ON CONFLICT DO NOTHING RETURNING 1",
    /// The ack remembered for a cid.
    cid_ack: "SELECT ack FROM cids WHERE user_id = $1 AND cid = $2",
    /// Stores a message.
    put_message: "INSERT INTO messages (id, payload) VALUES ($1, $2) \
                  ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload",
    /// Adds a history entry.
    put_history: "INSERT INTO history (conversation, id, sender, recipients) VALUES ($1, $2, $3, $4) \
                  ON CONFLICT (conversation, id) DO UPDATE \
                  SET sender = EXCLUDED.sender, recipients = EXCLUDED.recipients",
    /// Queues an entry.
    enqueue: "INSERT INTO queue (user_id, qid, message_id, receipt) VALUES ($1, $2, $3, $4) \
              ON CONFLICT (user_id, qid) DO UPDATE \
              SET message_id = EXCLUDED.message_id, receipt = EXCLUDED.receipt",
    /// A receipt status that only moves forward.
    put_status: "INSERT INTO statuses (id, user_id, status, ts) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id, user_id) DO UPDATE SET status = EXCLUDED.status, ts = EXCLUDED.ts \
                 WHERE statuses.status < EXCLUDED.status",
    /// Summary: the newest message is `$5`.
    summary_last: "INSERT INTO summaries VALUES ($1, $2, $3, $4, '', $5, 0) \
                   ON CONFLICT (user_id, conversation) DO UPDATE \
                   SET last_id = EXCLUDED.last_id, is_group = summaries.is_group OR EXCLUDED.is_group",
    /// Summary: `$5` received, one more unread.
    summary_received: "INSERT INTO summaries VALUES ($1, $2, $3, $4, '', $5, 1) \
                       ON CONFLICT (user_id, conversation) DO UPDATE \
                       SET last_id = EXCLUDED.last_id, unread = summaries.unread + 1, \
                       is_group = summaries.is_group OR EXCLUDED.is_group",
    /// Summary: one unread less, never below 0.
    summary_read_one: "INSERT INTO summaries VALUES ($1, $2, $3, $4, '', '', 0) \
                       ON CONFLICT (user_id, conversation) DO UPDATE \
                       SET unread = GREATEST(summaries.unread - 1, 0), \
                       is_group = summaries.is_group OR EXCLUDED.is_group",
    /// Summary: read up to `$5` at least.
    summary_read_upto: "INSERT INTO summaries VALUES ($1, $2, $3, $4, $5, '', 0) \
                        ON CONFLICT (user_id, conversation) DO UPDATE \
                        SET read_upto = GREATEST(summaries.read_upto, EXCLUDED.read_upto), \
                        is_group = summaries.is_group OR EXCLUDED.is_group",
    /// Summary: joined a group at `$4`, unless a read mark is kept already.
    summary_joined: "INSERT INTO summaries VALUES ($1, $2, $3, true, $4, '', 0) \
                     ON CONFLICT (user_id, conversation) DO UPDATE \
                     SET is_group = true, read_upto = CASE WHEN summaries.read_upto = '' \
                     THEN EXCLUDED.read_upto ELSE summaries.read_upto END",
    /// A media right.
    put_media_right: "INSERT INTO media_rights (user_id, media) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    /// A push job.
    put_push_job: "INSERT INTO push_jobs (user_id, conversation, id, queued) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (user_id, conversation, id) DO UPDATE SET queued = EXCLUDED.queued",
    /// A group record.
    put_group: "INSERT INTO groups (group_id, record) VALUES ($1, $2) \
                ON CONFLICT (group_id) DO UPDATE SET record = EXCLUDED.record",
    /// A membership record.
    put_member: "INSERT INTO members (group_id, user_id, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (group_id, user_id) DO UPDATE SET record = EXCLUDED.record",
    /// A membership record goes.
    delete_member: "DELETE FROM members WHERE group_id = $1 AND user_id = $2",
    /// The groups-of-user index gains a group.
    index_member: "INSERT INTO memberships (user_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    /// The groups-of-user index loses a group.
    unindex_member: "DELETE FROM memberships WHERE user_id = $1 AND group_id = $2",
    /// An unfinished fan-out, claimed by the batch's writer `$3` for `$4` ms.
    put_fanout_claimed: concat!(
        "INSERT INTO fanouts (id, record, claimed_by, lease_until, lease_ms) VALUES ($1, $2, $3, ",
        lease_from_now!(4),
        ", $4) ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, claimed_by = EXCLUDED.claimed_by, \
         lease_until = EXCLUDED.lease_until, lease_ms = EXCLUDED.lease_ms"
    ),
    /// An unfinished fan-out written with no claimant: a held claim is renewed, none is taken.
    put_fanout: "INSERT INTO fanouts (id, record) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, \
                 lease_until = CASE WHEN fanouts.claimed_by IS NULL THEN NULL \
                 ELSE now() + fanouts.lease_ms::float8 * interval '1 millisecond' END",
    /// A finished fan-out goes.
    delete_fanout: "DELETE FROM fanouts WHERE id = $1",
    /// An account record.
    put_account: "INSERT INTO accounts (user_id, record) VALUES ($1, $2) \
                  ON CONFLICT (user_id) DO UPDATE SET record = EXCLUDED.record",
    /// The highest id issued never moves back.
    put_last_id: "INSERT INTO meta (key, value) VALUES ('last_id', $1) \
                  ON CONFLICT (key) DO UPDATE SET value = GREATEST(meta.value, EXCLUDED.value)",
    /// A proof that the store takes durable writes again.
    put_probe: "INSERT INTO meta (key, value) VALUES ('probe', now()::text) \
                ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    /// Forgetting a user: the queue.
    forget_queue: "DELETE FROM queue WHERE user_id = $1",
    /// Forgetting a user: the summaries.
    forget_summaries: "DELETE FROM summaries WHERE user_id = $1",
    /// Forgetting a user: the remembered cids.
    forget_cids: "DELETE FROM cids WHERE user_id = $1",
    /// Forgetting a user: the push jobs.
    forget_push_jobs: "DELETE FROM push_jobs WHERE user_id = $1",
    /// Forgetting a user: the groups-of-user index.
    forget_memberships: "DELETE FROM memberships WHERE user_id = $1",
    /// Forgetting a user: the owner entries of their tokens (before the tokens: it finds
    /// them through them). A token that moved on to another user keeps its new owner.
    forget_token_owners: "DELETE FROM token_owners o USING push_tokens t \
                          WHERE t.user_id = $1 AND o.token = t.token AND o.user_id = $1",
    /// Forgetting a user: their push tokens.
    forget_push_tokens: "DELETE FROM push_tokens WHERE user_id = $1",
    /// Forgetting a user: when they were last seen.
    forget_last_seen: "DELETE FROM last_seen WHERE user_id = $1",
    /// Forgetting a user: their kept MQTT sessions.
    forget_mqtt_sessions: "DELETE FROM mqtt_sessions WHERE user_id = $1",
    /// Forgetting a user: their profile.
    forget_profile: "DELETE FROM profiles WHERE user_id = $1",
    /// The newest message id and the highest id issued.
    newest: "SELECT (SELECT max(id) FROM messages), (SELECT value FROM meta WHERE key = 'last_id')",
    /// A message's payload.
    message: "SELECT payload FROM messages WHERE id = $1",
    /// One receipt status.
    status: "SELECT status FROM statuses WHERE id = $1 AND user_id = $2",
    /// Every receipt status of a message.
    statuses: "SELECT user_id, status FROM statuses WHERE id = $1 ORDER BY user_id",
    /// A page of a queue with what each entry points at.
    queue: "SELECT q.qid, q.receipt, m.payload, coalesce(q.message_id, q.qid) FROM queue q \
            LEFT JOIN messages m ON q.receipt IS NULL AND m.id = coalesce(q.message_id, q.qid) \
            WHERE q.user_id = $1 AND q.qid > $2 ORDER BY q.qid LIMIT $3",
    /// Dequeues: the entries (`$1[i]`, `$2[i]`) go.
    dequeue: "DELETE FROM queue WHERE (user_id, qid) IN \
              (SELECT * FROM unnest($1::text[], $2::text[]))",
    /// One history entry.
    history_entry: "SELECT sender, recipients FROM history WHERE conversation = $1 AND id = $2",
    /// A user's summaries.
    summaries: "SELECT conversation, peer, is_group, read_upto, last_id, unread FROM summaries \
                WHERE user_id = $1 ORDER BY conversation",
    /// A group and all its membership records, read in one snapshot.
    group: "SELECT g.record, m.user_id, m.record FROM groups g \
            LEFT JOIN members m ON m.group_id = g.group_id WHERE g.group_id = $1 ORDER BY m.user_id",
    /// One membership record.
    membership: "SELECT record FROM members WHERE group_id = $1 AND user_id = $2",
    /// A page of the groups-of-user index.
    groups_of: "SELECT group_id FROM memberships WHERE user_id = $1 ORDER BY group_id LIMIT $2",
    /// Claims every unfinished fan-out nobody else holds: an unexpired claim of another owner
    /// is skipped, and so is a row another transaction has locked (its holder is writing a
    /// slice, or claiming it right now): a claimant never waits for another node, which may
    /// be paused mid-transaction. Fan-outs whose message is missing are left alone.
    claim_fanouts: concat!(
        "UPDATE fanouts f SET claimed_by = $1, lease_until = ",
        lease_from_now!(2),
        ", lease_ms = $2 FROM messages m WHERE m.id = f.id AND f.id IN (SELECT id FROM fanouts \
         WHERE claimed_by IS NULL OR claimed_by = $1 OR lease_until IS NULL \
         OR lease_until < now() FOR UPDATE SKIP LOCKED) \
         RETURNING f.id, f.record, m.payload"
    ),
    /// Every fan-out claim `$1` holds is renewed for `$2` ms (expired or not, while nobody
    /// took it over); which ones. The row locks last until the batch commits, so a claimant
    /// that would take one over waits and then sees the renewed lease.
    renew_claims: concat!(
        "UPDATE fanouts SET lease_until = ",
        lease_from_now!(2),
        ", lease_ms = $2 WHERE claimed_by = $1 RETURNING id"
    ),
    /// Removed users whose clean-up is pending.
    pending_purges: "SELECT user_id FROM purges ORDER BY user_id",
    /// A removed user's media rights go.
    purge_rights: "DELETE FROM media_rights WHERE user_id = $1",
    /// A removed user's media de-duplication entries go.
    purge_media_owners: "DELETE FROM media_owners WHERE user_id = $1",
    /// A removed user's clean-up is done.
    purge_done: "DELETE FROM purges WHERE user_id = $1",
}
