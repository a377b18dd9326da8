//! (port: being written)
