//! The wire contract of chatd, in one place that every crate uses: what a client sees on the
//! wire (topic names, the RPC envelope, error codes, message ids, JSON limits) and the MQTT
//! framing the broker, the tests and `chatbench` share.

pub mod ids;
pub mod json;
pub mod mqtt;
pub mod reply;
pub mod request;
pub mod topics;
