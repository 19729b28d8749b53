//! Benchmarks that print tables (`clinivox bench …`). They report medians
//! and percentiles of one run: the machines are shared, so read ratios.

pub mod caller;
pub mod console;
pub mod conversation;
pub mod scheduler;
/// TLS+SRTP beside UDP+RTP, with our own caller (no whisper needed).
pub mod secure;
#[cfg(feature = "whisper")]
pub mod service;
#[cfg(feature = "whisper")]
pub mod sip;
pub mod store;
#[cfg(feature = "whisper")]
pub mod turns;

/// The `p`-th percentile (0–100) of sorted samples, nearest-rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
