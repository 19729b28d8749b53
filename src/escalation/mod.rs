//! No-response escalation: patients who did not answer an appointment
//! reminder are called back inside the clinic's calling windows.
//!
//! [`policy`] is pure (facts and `now` in, a decision out) and decides *when*
//! to call; the store's job queue (`store::jobs`) makes sure exactly one
//! Clinivox instance places each call; [`scheduler`] ties the two together.

pub mod policy;
pub mod refill;
pub mod scheduler;
