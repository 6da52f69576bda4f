//! The Jupyter side of the qplay kernel: messaging protocol 5.3 over ZeroMQ.
//!
//! - [`connection`]: the connection file (ports, key, signature scheme);
//! - [`wire`]: framing, HMAC-SHA256 signing and verification.

pub mod connection;
pub mod wire;
