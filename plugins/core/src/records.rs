//! The records of the chat domain, as the chat core and the storage ports exchange them:
//! messages, summaries and receipts (`chat`), groups and memberships (`group`), and the
//! progress of a group fan-out (`fanout`). How a store lays them out is the adapter's business.

pub mod chat;
pub mod fanout;
pub mod group;
