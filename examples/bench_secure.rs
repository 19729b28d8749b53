//! The TLS+SRTP against UDP+RTP comparison of `bench sip`, runnable
//! without the whisper feature, with small numbers by default.
//!
//! `cargo run --no-default-features --example bench_secure [in-flight,…] [calls-per-step] [echo-calls,…] [hold-seconds] [gcm|cm]`
//!
//! e.g. `… --example bench_secure 5,20 100 5,10 2 gcm`

use clinivox::bench::secure::{run, SecureOptions};
use clinivox::media::srtp::SrtpSuite;

fn list(arg: Option<String>, default: &[usize]) -> Vec<usize> {
    arg.map(|a| a.split(',').filter_map(|n| n.trim().parse().ok()).collect()).unwrap_or_else(|| default.to_vec())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let o = SecureOptions {
        concurrency: list(args.next(), &[5, 20]),
        calls_per_step: args.next().and_then(|n| n.parse().ok()).unwrap_or(100),
        calls: list(args.next(), &[5, 10]),
        hold_seconds: args.next().and_then(|n| n.parse().ok()).unwrap_or(2),
        suite: match args.next().as_deref() {
            Some("cm") => SrtpSuite::AesCm128HmacSha1_80,
            _ => SrtpSuite::AeadAes128Gcm,
        },
        ..SecureOptions::default()
    };
    if let Err(e) = run(&o).await {
        eprintln!("bench_secure: {e}");
        std::process::exit(1);
    }
}
