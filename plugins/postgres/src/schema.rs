//! The SQL schema of the store, versioned: `schema_version` holds the version the
//! database was brought to, [`migrate`] creates or upgrades it step by step, and
//! [`check`] (run when a log opens) refuses a database whose version this build does not
//! know, so that an older binary never writes into a newer layout.
//!
//! Layout rules:
//! - every text column that holds an id, a user or a conversation is `COLLATE "C"`, so that
//!   `ORDER BY`, ranges and `GREATEST` compare bytes, as the ids' time order and the embedded
//!   store's key order need (a locale collation would sort `-` and digits differently);
//! - every per-user table (queues, summaries, cids, push jobs and their claims, media rights,
//!   media owners, push tokens, last-seen times, profiles, the groups-of-user index, accounts,
//!   purges) has the user as the first column of its primary key, so that its rows can later be split
//!   by user across several primaries with no change of key (see docs/scaling.md); the tables
//!   keyed by something else (messages, history, statuses, groups, members, fan-outs, media
//!   records and contents, token owners, skeletons) are the ones such a split must place by
//!   message, group, media id, content, token or skeleton;
//! - records that the chat core already encodes as JSON (groups, memberships, fan-outs,
//!   accounts, media records and contents, push tokens) are stored as that JSON text, exactly as the embedded store keeps them;
//!   what the log's intents change field by field (statuses, summaries) gets one column per
//!   field, so an intent is one `INSERT … ON CONFLICT DO UPDATE` and never a read.

use tokio_postgres::Client;

use crate::error::PgError;

/// The schema version this build writes and reads.
pub const VERSION: i32 = 4;

/// The statements that bring a database from version `n - 1` to version `n`, index `n - 1`.
const STEPS: &[&str] = &[V1, V2, V3, V4];

/// Version 1: the message log.
const V1: &str = r#"
CREATE TABLE messages (
    id text COLLATE "C" PRIMARY KEY,
    payload bytea NOT NULL
);
-- One row per message of a conversation (`d:{a}:{b}` or `g:{group}`); group messages carry
-- their sender and recipient count (NULL for 1:1 entries).
CREATE TABLE history (
    conversation text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    sender text COLLATE "C",
    recipients integer,
    PRIMARY KEY (conversation, id)
);
-- A user's queue: `message_id` NULL and `receipt` NULL is the 1:1 message `qid`; a
-- `message_id` points at a stored message; a `receipt` is the receipt event payload itself.
CREATE TABLE queue (
    user_id text COLLATE "C" NOT NULL,
    qid text COLLATE "C" NOT NULL,
    message_id text COLLATE "C",
    receipt bytea,
    PRIMARY KEY (user_id, qid)
);
-- Receipt statuses: 1 delivered, 2 read (no row: sent). Read per message for all recipients.
CREATE TABLE statuses (
    id text COLLATE "C" NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    status smallint NOT NULL,
    ts bigint NOT NULL,
    PRIMARY KEY (id, user_id)
);
CREATE TABLE summaries (
    user_id text COLLATE "C" NOT NULL,
    conversation text COLLATE "C" NOT NULL,
    peer text COLLATE "C" NOT NULL,
    is_group boolean NOT NULL,
    read_upto text COLLATE "C" NOT NULL,
    last_id text COLLATE "C" NOT NULL,
    unread bigint NOT NULL,
    PRIMARY KEY (user_id, conversation)
);
-- Remembered client message ids and the ack each got.
CREATE TABLE cids (
    user_id text COLLATE "C" NOT NULL,
    cid text COLLATE "C" NOT NULL,
    ack bytea NOT NULL,
    PRIMARY KEY (user_id, cid)
);
CREATE TABLE media_rights (
    user_id text COLLATE "C" NOT NULL,
    media text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, media)
);
CREATE INDEX media_rights_by_media ON media_rights (media, user_id);
-- `queued`: where the message waits in the queue when that is not `id` (a fan-out slice).
CREATE TABLE push_jobs (
    user_id text COLLATE "C" NOT NULL,
    conversation text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    queued text COLLATE "C",
    PRIMARY KEY (user_id, conversation, id)
);
CREATE TABLE groups (
    group_id text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE members (
    group_id text COLLATE "C" NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
-- The groups-of-user index: a row exactly while the membership record is active.
CREATE TABLE memberships (
    user_id text COLLATE "C" NOT NULL,
    group_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, group_id)
);
-- Unfinished fan-outs and their claims: `claimed_by` holds it until `lease_until`; a renewal
-- runs `lease_ms` again.
CREATE TABLE fanouts (
    id text COLLATE "C" PRIMARY KEY,
    record text NOT NULL,
    claimed_by text COLLATE "C",
    lease_until timestamptz,
    lease_ms bigint
);
CREATE TABLE accounts (
    user_id text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
-- Removed users whose clean-up is still pending.
CREATE TABLE purges (
    user_id text COLLATE "C" PRIMARY KEY
);
-- Single values: `last_id`, the highest id a batch issued.
CREATE TABLE meta (
    key text COLLATE "C" PRIMARY KEY,
    value text COLLATE "C" NOT NULL
);
"#;

/// Version 2: the records of the accounts, last-seen, media and push ports (accounts and
/// purges are version 1's, written by the log too).
const V2: &str = r#"
-- The look-alike index: each skeleton held by the first user who asked for it. Keyed by
-- skeleton, not user: it is the one place that says who holds a skeleton.
CREATE TABLE skeletons (
    skeleton text COLLATE "C" PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL
);
CREATE TABLE last_seen (
    user_id text COLLATE "C" PRIMARY KEY,
    ms bigint NOT NULL
);
-- Media records by id (read by id alone: a download names no uploader), and verified
-- contents by SHA-256; both as the JSON the chat core encodes.
CREATE TABLE media (
    media text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE media_contents (
    sha256 text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
-- The media id each uploader got for a content (de-duplication).
CREATE TABLE media_owners (
    user_id text COLLATE "C" NOT NULL,
    sha256 text COLLATE "C" NOT NULL,
    media text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, sha256)
);
CREATE INDEX media_owners_by_content ON media_owners (sha256, user_id);
CREATE TABLE push_tokens (
    user_id text COLLATE "C" NOT NULL,
    token text COLLATE "C" NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (user_id, token)
);
-- Who each token belongs to now (a token moves with its device to whoever registers it).
CREATE TABLE token_owners (
    token text COLLATE "C" PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL
);
-- Claims of a (user, conversation) pair's push jobs: `claimed_by` holds it until
-- `lease_until`; `taken` is how many jobs the claim handed out.
CREATE TABLE push_claims (
    user_id text COLLATE "C" NOT NULL,
    conversation text COLLATE "C" NOT NULL,
    claimed_by text COLLATE "C" NOT NULL,
    lease_until timestamptz NOT NULL,
    taken integer NOT NULL,
    PRIMARY KEY (user_id, conversation)
);
"#;

/// Version 3: the MQTT sessions port (persistent sessions, by client id).
const V3: &str = r#"
CREATE TABLE mqtt_sessions (
    client_id text COLLATE "C" PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    expiry_secs bigint NOT NULL,
    -- NULL while a connection is open.
    ended_ms bigint,
    state bytea NOT NULL
);
CREATE INDEX mqtt_sessions_by_user ON mqtt_sessions (user_id);
"#;

/// Version 4: the profiles port (display name and avatar per user; no row until one is set,
/// both NULL once cleared).
const V4: &str = r#"
CREATE TABLE profiles (
    user_id text COLLATE "C" PRIMARY KEY,
    name text,
    avatar text COLLATE "C"
);
"#;

/// The version `client`'s database is at: 0 when it has no schema yet.
pub async fn version(client: &Client) -> Result<i32, PgError> {
    let exists = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await?
        .try_get::<_, bool>(0)?;
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_opt("SELECT max(version) FROM schema_version", &[])
        .await?;
    Ok(row
        .and_then(|r| r.try_get::<_, Option<i32>>(0).ok().flatten())
        .unwrap_or(0))
}

/// Creates the schema, or upgrades it to [`VERSION`], in one transaction (a lock keeps two
/// processes migrating at once from both applying a step). Returns the version it found.
pub async fn migrate(client: &mut Client) -> Result<i32, PgError> {
    let tx = client.transaction().await?;
    // Serialises concurrent migrations; released at commit.
    tx.batch_execute("SELECT pg_advisory_xact_lock(7361726)")
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        .await?;
    let found = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .try_get::<_, i32>(0)?;
    if found > VERSION {
        return Err(PgError::UnknownSchema {
            found,
            known: VERSION,
        });
    }
    for (n, step) in STEPS.iter().enumerate().skip(found.max(0) as usize) {
        tx.batch_execute(step).await?;
        let done = i32::try_from(n + 1).unwrap_or(VERSION);
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&done])
            .await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// Refuses a database whose schema is missing, older (not migrated yet) or newer than this
/// build knows.
pub async fn check(client: &Client) -> Result<(), PgError> {
    match version(client).await? {
        VERSION => Ok(()),
        0 => Err(PgError::NoSchema),
        found if found < VERSION => Err(PgError::OldSchema {
            found,
            known: VERSION,
        }),
        found => Err(PgError::UnknownSchema {
            found,
            known: VERSION,
        }),
    }
}
