//! Clinivox: a self-hosted telephony voice assistant for medical clinics.
//! See ARCHITECTURE.md for the map of modules and their invariants.

pub mod config;
pub mod phone;
pub mod store;
pub mod testing;
