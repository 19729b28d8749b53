//! SIP signalling: message parsing, transactions, dialogs, registrar, digest
//! auth (sans-IO cores) and the tokio driver that owns the sockets.

pub mod auth;
pub mod config;
pub mod dialog;
pub mod digest;
pub mod driver;
pub mod endpoint;
pub mod flood;
pub mod headers;
pub mod lockout;
pub mod message;
pub mod nonce;
pub mod oc;
pub mod overload;
pub mod registrar;
pub mod stream;
pub mod transaction;
pub mod uri;
pub mod validate;

#[cfg(test)]
mod fuzz_tests;
