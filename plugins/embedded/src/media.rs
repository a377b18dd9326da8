//! (adapter: being written)
