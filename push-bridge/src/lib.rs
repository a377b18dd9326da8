//! Push notifications (FCM and APNs) for users with no device online.
//!
//! Not implemented yet: this crate is empty on purpose, nothing in chatd calls it, and
//! `push.register` requests are refused with `bad_request` until it is.
