//! Clinivox: a self-hosted telephony voice assistant for medical clinics.
//! See ARCHITECTURE.md for the map of modules and their invariants.

pub mod config;
pub mod phone;
pub mod store;
pub mod testing;
pub mod api;
pub mod clock;
pub mod app;
pub mod demo;
pub mod conversation;
pub mod media;
pub mod bench;
pub mod escalation;
pub mod call;
pub mod sip;
pub mod speech;
