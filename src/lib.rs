//! Clinivox: a self-hosted telephony voice assistant for medical clinics.
//! See ARCHITECTURE.md for the map of modules and their invariants.

pub mod api;
pub mod app;
pub mod bench;
pub mod call;
pub mod clock;
pub mod config;
pub mod console;
pub mod conversation;
pub mod demo;
pub mod escalation;
pub mod media;
pub mod metrics;
pub mod phone;
pub mod private_files;
pub mod sip;
pub mod speech;
pub mod store;
pub mod testing;
pub mod tls;
pub mod webhooks;

#[cfg(test)]
mod invariants_tests;
