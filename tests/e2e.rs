//! The end-to-end suite: every test runs the real `chatd` binary (built by Cargo, found through
//! `CARGO_BIN_EXE_chatd`) as a child process over real sockets. One test binary holds all of
//! them, so Cargo builds and links the harness and its dependencies once; each former test file
//! is a module here, named after its file (run one with
//! `cargo test -p chatd --test e2e messaging::`).

/// The server harness and client helpers shared by every module.
mod support;

/// A real PostgreSQL, shared with chatd-postgres's own tests.
#[path = "../plugins/postgres/tests/common/mod.rs"]
mod pg;

/// Fake FCM and APNs servers, shared with the push bridge's own tests.
#[path = "../push-bridge/tests/fake/mod.rs"]
mod fake;

mod accounts;
mod admin;
mod auth_acl;
mod bad_input;
mod cluster;
mod cluster_faults;
mod cluster_work;
mod conformance_more;
mod conformance_strict;
mod conformance_v311;
mod conformance_v5;
mod conncache;
mod crash;
mod crash_mixed;
mod group_defects;
mod group_limits;
mod group_model;
mod groups;
mod hostile;
mod hostile_edges;
mod jwt_first_login;
mod login_tokens;
mod media;
mod media_dedup;
mod media_meta;
mod messaging;
mod offline;
mod persistent_sessions;
mod presence;
mod presence_fanout;
mod profiles;
mod push;
mod push_tokens;
mod receipts;
mod reply_budget;
mod session_limits;
mod slow_consumer;
mod storage_failure;
mod stuck_sessions;
mod transports;
mod typing;
mod user_limits;
mod walkthrough;
mod web_serving;
