//! The conformance suites of the records ports — accounts, last-seen, media records, push
//! tokens, push jobs, MQTT sessions and profiles — and of the removal of an account across all ports: what every
//! adapter must do, run by the embedded store's tests and the PostgreSQL store's tests alike.
//! Each check takes a fresh, empty store as [`Ports`] and panics (naming what broke) when an
//! adapter answers wrongly.
//!
//! The checks reach the records through the ports only. Records that another port writes in
//! the real server are written through that port here too: push jobs, download rights and
//! the tombstone of a finished removal by the message log's commits, which is how a store
//! proves that its ports share one set of records.
//!
//! Left out on purpose, as adapter-specific: key or table layouts, records that cannot be
//! decoded (a test must write them behind the adapter's back), reopening, and several
//! processes sharing one store (the embedded store has one process by design).
//!
//! An adapter runs every suite with one macro per port, each given a function that returns
//! `(Ports, guard)`, the guard kept alive as long as the ports (a directory, a database):
//!
//! ```ignore
//! chatd_core::accounts_conformance_tests!(fresh);
//! chatd_core::presence_conformance_tests!(fresh);
//! chatd_core::media_conformance_tests!(fresh);
//! chatd_core::push_conformance_tests!(fresh);
//! chatd_core::removal_conformance_tests!(fresh);
//! chatd_core::sessions_conformance_tests!(fresh);
//! chatd_core::profiles_conformance_tests!(fresh);
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod accounts;
pub mod media;
pub mod presence;
pub mod profiles;
pub mod push_jobs;
pub mod push_tokens;
pub mod removal;
pub mod sessions;

use std::sync::Arc;

use crate::ports::accounts::AccountStore;
use crate::ports::log::{Intent, MessageLog};
use crate::ports::log_conformance::{durable, unit};
use crate::ports::media::MediaRecords;
use crate::ports::presence::LastSeenStore;
use crate::ports::profiles::ProfileStore;
use crate::ports::push::{PushJobs, PushTokens};
use crate::ports::sessions::SessionStore;

/// Every storage port of one fresh store.
pub struct Ports {
    /// The message log.
    pub log: Arc<dyn MessageLog>,
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Last-seen times.
    pub last_seen: Arc<dyn LastSeenStore>,
    /// Media records.
    pub media: Arc<dyn MediaRecords>,
    /// Push tokens.
    pub tokens: Arc<dyn PushTokens>,
    /// Push jobs.
    pub jobs: Arc<dyn PushJobs>,
    /// Persistent MQTT sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Profiles.
    pub profiles: Arc<dyn ProfileStore>,
}

impl Ports {
    /// Commits `intents` as one unit of a durable batch through the log.
    pub fn commit(&self, intents: Vec<Intent>) {
        self.log
            .commit(durable(vec![unit(intents)], None))
            .expect("commit");
    }
}

/// Expands to one `#[test]` per named check of `$module`; used by the suites' macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __records_conformance_each {
    ($module:ident; $open:expr; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let (ports, _guard) = ($open)();
                $crate::ports::records_conformance::$module::$name(&ports);
            }
        )*
    };
}

/// The accounts port's checks, one `#[test]` each; `$open` returns `(Ports, guard)`.
#[macro_export]
macro_rules! accounts_conformance_tests {
    ($open:expr) => {
        $crate::__records_conformance_each!(accounts; $open;
            a_new_account_holds_its_skeleton_unless_someone_holds_it,
            an_update_replaces_and_a_removal_leaves_a_tombstone_and_a_pending_purge,
            accounts_are_listed_in_id_order_and_paged,
            the_skeleton_index_is_marked_complete_and_keeps_earlier_holders,
            an_account_record_the_log_writes_is_read_here,
            many_accounts_are_read_together,
        );
    };
}

/// The last-seen port's checks, one `#[test]` each; `$open` returns `(Ports, guard)`.
#[macro_export]
macro_rules! presence_conformance_tests {
    ($open:expr) => {
        $crate::__records_conformance_each!(presence; $open;
            last_seen_times_round_trip_per_user,
        );
    };
}

/// The media records port's checks, one `#[test]` each; `$open` returns `(Ports, guard)`.
#[macro_export]
macro_rules! media_conformance_tests {
    ($open:expr) => {
        $crate::__records_conformance_each!(media; $open;
            media_records_and_owners_round_trip,
            media_metadata_round_trips,
            the_first_verified_content_stays,
            download_rights_are_the_ones_the_log_wrote,
        );
    };
}

/// The push tokens and push jobs ports' checks, one `#[test]` each; `$open` returns
/// `(Ports, guard)`.
#[macro_export]
macro_rules! push_conformance_tests {
    ($open:expr) => {
        $crate::__records_conformance_each!(push_tokens; $open;
            tokens_round_trip_and_move_to_whoever_registers_them,
            holding_a_token_needs_an_account_record,
            tokens_are_listed_in_token_order_up_to_the_limit,
        );
        $crate::__records_conformance_each!(push_jobs; $open;
            claims_group_jobs_by_user_and_conversation,
            a_claimed_group_is_not_handed_out_again_until_its_claim_ends,
            an_expired_lease_frees_the_group,
            groups_wait_for_the_collapse_window,
            notices_read_the_message_the_queue_and_the_summary,
        );
    };
}

/// The MQTT sessions port's checks, one `#[test]` each; `$open` returns `(Ports, guard)`.
#[macro_export]
macro_rules! sessions_conformance_tests {
    ($open:expr) => {
        $crate::__records_conformance_each!(sessions; $open;
            sessions_round_trip_by_client_id,
            a_forgotten_users_sessions_go,
        );
    };
}

/// The profiles port's checks, one `#[test]` each; `$open` returns `(Ports, guard)`.
#[macro_export]
macro_rules! profiles_conformance_tests {
    ($open:expr) => {
        $crate::__records_conformance_each!(profiles; $open;
            profiles_change_field_by_field_per_user,
        );
    };
}

/// The removal of an account across every port; `$open` returns `(Ports, guard)`.
#[macro_export]
macro_rules! removal_conformance_tests {
    ($open:expr) => {
        $crate::__records_conformance_each!(removal; $open;
            a_removed_users_records_go_from_every_port_and_their_peers_keep_theirs,
        );
    };
}
