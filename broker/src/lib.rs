//! The chatd server as a library: terminates MQTT (TCP, WebSocket, TLS), authenticates and checks
//! every packet, and hands chat traffic to the plugins. `main.rs` is a thin command line around
//! [`run`]; tests and tools can embed the server the same way.

mod accept_trouble;
pub mod allocator;
pub mod cli;
mod cluster;
pub mod config;
mod conncache;
mod datadir;
pub mod db_cli;
mod fd_limit;
mod handshake_gate;
mod http;
mod http_serve;
mod hub;
mod kept;
mod listeners;
mod login_limit;
mod login_token;
mod mailbox;
mod media;
mod metrics;
mod mqtt_on_http;
mod password_login;
mod presence;
mod presence_relay;
#[cfg(test)]
mod proptest_support;
mod push;
mod quick_ack;
mod router;
pub mod server;
mod session;
pub mod signals;
mod source_addr;
mod state;
pub(crate) mod stores;
mod tls;
mod token_http;
mod transport;
mod typing;
mod untrusted;
mod user_rate;
mod web;
mod wire;

pub use config::Config;
pub use server::run;
