//! `bench sip`, part 3 (issue 13): past capacity, and under a flood.
//!
//! 1. **Overload.** The echo server's capacity is measured closed-loop
//!    (calls kept in flight); then calls are *offered* open-loop at 1.5×
//!    and 3× that rate — started on schedule whether or not earlier ones
//!    finished, as callers do — and the table reports how many completed
//!    per second, how many were refused cheaply (503 with Retry-After),
//!    and how many failed otherwise. Each multiple is offered twice: by a
//!    carrier that only reads the 503s, and by one that honours RFC 7339
//!    (`sip/oc.rs`) and holds back what the server asks. Holding ≥ 90 %
//!    of capacity is the aim.
//! 2. **Flood.** Legitimate calls from the trunk (127.0.0.1) with and
//!    without an outsider (127.0.0.2, not a trunk) sending INVITEs as fast
//!    as `flood_rate`; then the flood alone, for the server's CPU per
//!    rejected packet and the bytes it sent back per byte received (an
//!    amplifier sends back more than it gets).
//!
//! The server is the one of the TLS+SRTP comparison, here with the trunk
//! on 127.0.0.1 alone, so that the outsider's address is a stranger's. The
//! overload table's calls come from `lean.rs` (one task for all calls, as
//! SIPp does: the task-per-call generator of `secure_calls.rs` took more of
//! the shared 2 cores the more it offered); the flood table's legitimate
//! calls from `secure_calls.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use super::calls::{self, Trunk};
use super::lean::{self, Load, Outcome};
use super::{ratio, CpuMark, EchoServer, SecureBenchError};

/// Pause between the tables, for the server to finish what the last left.
const SETTLE: Duration = Duration::from_secs(5);
/// Share of capacity an overload step must still complete.
const HOLD_PERCENT: f64 = 90.0;
/// Loopback address the outsider floods from (not in the trunk's CIDR).
const OUTSIDER: [u8; 4] = [127, 0, 0, 2];

/// What to measure. The defaults fit a 2-core machine.
#[derive(Debug, Clone)]
pub struct OverloadOptions {
    /// Capacity: calls in flight (closed loop, for `seconds`).
    pub capacity_in_flight: usize,
    /// Multiples of capacity offered open-loop.
    pub multiples: Vec<f64>,
    /// Seconds each open-loop and flood step lasts.
    pub seconds: f64,
    /// INVITEs per second the outsider sends.
    pub flood_rate: u32,
    /// Times the capacity and overload steps are repeated (the table gives medians).
    pub rounds: usize,
    /// Legitimate calls in flight during the flood steps.
    pub flood_in_flight: usize,
}

impl Default for OverloadOptions {
    fn default() -> Self {
        OverloadOptions {
            capacity_in_flight: 50,
            multiples: vec![1.5, 3.0],
            seconds: 3.0,
            flood_rate: 5000,
            flood_in_flight: 10,
            rounds: 3,
        }
    }
}

/// Runs both tables.
pub async fn run(o: &OverloadOptions) -> Result<(), SecureBenchError> {
    let server = EchoServer::start_with(1, overload_config).await?;
    let trunk = Arc::new(Trunk::udp(server.udp).await?);
    println!(
        "SIP server: echo app, one worker thread, at most {LINES} calls at once (the default, {}, is for calls of minutes); \
         trunk 127.0.0.1/32 over UDP; outsider {}. CPU is % of one core; {} cores, shared by the generator (this process).\n",
        crate::sip::config::Limits::default().max_calls,
        std::net::Ipv4Addr::from(OUTSIDER),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    overload(server.udp, o).await?;
    // The overload's calls wind down (BYEs, timeouts) before the next table.
    tokio::time::sleep(SETTLE).await;
    flood(&trunk, server.udp, o).await?;
    if let Ok(t) = Arc::try_unwrap(trunk) {
        t.close().await;
    }
    server.stop().await;
    Ok(())
}

/// The comparison's server, with the trunk on 127.0.0.1 alone and
/// [`LINES`] calls at once. The default (128) is sized for callers who
/// stay minutes; these calls last a few milliseconds, and 128 of them
/// filled on the latency between two processes before the CPU did: one
/// 1.5× step refused 12 544 calls with the server at 61 % of its core.
/// With 512 the lines still bound the work in progress (without a bound,
/// 3× failed 23 148 calls), and what is measured is the CPU's capacity.
fn overload_config(cert: &Path, key: &Path) -> String {
    super::server_config(cert, key)
        .replace(r#"cidrs = ["127.0.0.0/8"]"#, r#"cidrs = ["127.0.0.1/32"]"#)
        .replace("max_calls = 4000\n", &format!("max_calls = {LINES}\n"))
}

/// `[sip.limits] max_calls` for the overload table.
const LINES: usize = 512;

/// Table 1: capacity, then open-loop offers beyond it, both from the lean
/// generator (one task, see `lean.rs`), so that offering more costs the
/// machine as little as it can besides the server's own work.
///
/// Two shared cores make one 3-second step a poor witness (a neighbour's
/// burst moves it by a fifth), so the whole sequence runs `rounds` times;
/// each offer is a multiple of the capacity measured just before it, and
/// the table gives the median of the rounds with every round's share.
async fn overload(server: SocketAddr, o: &OverloadOptions) -> Result<(), SecureBenchError> {
    println!(
        "## Past capacity (INVITE → 200 → ACK → BYE → 200; offered open-loop at multiples of capacity; median of {} rounds)\n",
        o.rounds
    );
    println!(
        "| offered | the carrier | calls sent | completed | refused (503) | held back by the carrier | failed otherwise | completed setups/s within the window | of capacity | each round | server CPU | generator CPU |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    // Rows: capacity, then each multiple with each carrier.
    let mut rows: Vec<Vec<Row>> = vec![Vec::new(); 1 + 2 * o.multiples.len()];
    // A warm-up step, not counted: a server that has been carrying calls
    // holds the answered transactions RFC 3261 keeps for 32 s (bounded at
    // 8 × `max_transactions`), and a fresh one measured ~20 % faster than
    // it then runs.
    step(server, Load::Closed(o.capacity_in_flight), o.seconds, false).await?;
    for _ in 0..o.rounds.max(1) {
        tokio::time::sleep(SETTLE).await;
        // Sustained for as long as an open-loop step: a short burst reads high.
        let (cap, cpu) = step(server, Load::Closed(o.capacity_in_flight), o.seconds, false).await?;
        let capacity = cap.completed_in_window as f64 / o.seconds.max(1e-3);
        rows[0].push(Row { out: cap, cpu, rate: capacity, share: 100.0 });
        for (k, &m) in o.multiples.iter().enumerate() {
            // A carrier that only reads 503s, then one that honours RFC 7339.
            for (j, oc) in [false, true].into_iter().enumerate() {
                tokio::time::sleep(SETTLE).await;
                let (s, cpu) = step(server, Load::Open(capacity * m), o.seconds, oc).await?;
                let done = s.completed_in_window as f64 / o.seconds.max(1e-3);
                let share = if capacity > 0.0 { done / capacity * 100.0 } else { 0.0 };
                rows[1 + 2 * k + j].push(Row { out: s, cpu, rate: done, share });
            }
        }
    }
    let cap = Row::median(&rows[0]);
    println!(
        "| closed loop, {} in flight, {} s | – | {} | {} | – | – | {} | {:.0} | 100 % | {} | {:.0} % | {:.0} % |",
        o.capacity_in_flight,
        o.seconds,
        cap.out.calls,
        cap.out.completed,
        cap.out.failed + cap.out.refused,
        cap.rate,
        Row::each(&rows[0], |r| format!("{:.0}/s", r.rate)),
        cap.cpu.server * 100.0,
        cap.cpu.generator * 100.0
    );
    let mut held = Vec::new();
    for (k, &m) in o.multiples.iter().enumerate() {
        for (j, carrier) in ["503 only", "RFC 7339 (oc)"].into_iter().enumerate() {
            let all = &rows[1 + 2 * k + j];
            let r = Row::median(all);
            println!(
                "| {m}× ≈ {:.0}/s | {carrier} | {} | {} | {} | {} | {} | {:.0} | {:.0} % | {} | {:.0} % | {:.0} % |",
                cap.rate * m,
                r.out.calls,
                r.out.completed,
                r.out.refused,
                r.out.held_back,
                r.out.failed,
                r.rate,
                r.share,
                Row::each(all, |r| format!("{:.0} %", r.share)),
                r.cpu.server * 100.0,
                r.cpu.generator * 100.0
            );
            held.push((m, carrier, r.share));
        }
    }
    let summary: Vec<String> = held
        .iter()
        .map(|(m, carrier, share)| {
            format!("{m}× ({carrier}): {share:.0} % {}", if *share >= HOLD_PERCENT { "(holds)" } else { "(below 90 %)" })
        })
        .collect();
    println!("\nCapacity {:.0} setups/s (median); completed when offered more — {}\n", cap.rate, summary.join(", "));
    Ok(())
}

/// One step of one round.
#[derive(Debug, Clone, Copy)]
struct Row {
    out: Outcome,
    cpu: super::CpuUse,
    /// Completed setups/s within the window.
    rate: f64,
    /// Of the round's capacity, %.
    share: f64,
}

impl Row {
    /// The round with the median share (the lower middle one for an even count).
    fn median(rows: &[Row]) -> Row {
        let mut sorted = rows.to_vec();
        sorted.sort_by(|a, b| a.share.total_cmp(&b.share).then(a.rate.total_cmp(&b.rate)));
        sorted[(sorted.len() - 1) / 2]
    }

    fn each(rows: &[Row], f: impl Fn(&Row) -> String) -> String {
        rows.iter().map(f).collect::<Vec<_>>().join(", ")
    }
}

/// One step of the lean generator, with the CPU it and the server used.
async fn step(server: SocketAddr, load: Load, seconds: f64, oc: bool) -> Result<(Outcome, super::CpuUse), SecureBenchError> {
    let mark = CpuMark::now();
    let out = lean::run(server, load, seconds, oc).await?;
    Ok((out, mark.since()))
}

/// Table 2: legitimate calls with and without a flood, then the flood alone.
async fn flood(trunk: &Arc<Trunk>, server: SocketAddr, o: &OverloadOptions) -> Result<(), SecureBenchError> {
    println!("## An outsider floods INVITEs ({} per second from {})\n", o.flood_rate, std::net::Ipv4Addr::from(OUTSIDER));
    println!(
        "| step | legitimate setups/s | legitimate failed | flood INVITEs | answers to the flood | bytes back / bytes in | server CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let quiet = timed_setups(trunk, o.flood_in_flight, o.seconds).await;
    println!("| trunk calls alone | {:.0} | {} | – | – | – | {:.0} % |", quiet.rate, quiet.failed, quiet.server * 100.0);
    let outsider = Outsider::start(server, o.flood_rate).await?;
    let busy = timed_setups(trunk, o.flood_in_flight, o.seconds).await;
    let f = outsider.stop().await;
    println!(
        "| trunk calls + flood | {:.0} | {} | {} | {} | {} | {:.0} % |",
        busy.rate,
        busy.failed,
        f.sent,
        f.answers,
        ratio(f.bytes_back as f64, f.bytes_in as f64),
        busy.server * 100.0
    );
    let mark = CpuMark::now();
    let outsider = Outsider::start(server, o.flood_rate).await?;
    tokio::time::sleep(Duration::from_secs_f64(o.seconds)).await;
    let f = outsider.stop().await;
    let cpu = mark.since();
    let cpu_seconds = cpu.server * mark.at.elapsed().as_secs_f64();
    let per_packet_us = if f.sent > 0 { cpu_seconds / f.sent as f64 * 1e6 } else { 0.0 };
    println!(
        "| flood alone | – | – | {} | {} | {} | {:.0} % |",
        f.sent,
        f.answers,
        ratio(f.bytes_back as f64, f.bytes_in as f64),
        cpu.server * 100.0
    );
    println!(
        "\nLegitimate setups/s under the flood / without it = {}; server CPU per flood INVITE {per_packet_us:.1} µs; \
         the outsider got {} bytes back per byte sent.\n",
        ratio(busy.rate, quiet.rate),
        ratio(f.bytes_back as f64, f.bytes_in as f64)
    );
    Ok(())
}

/// What a closed-loop step measured.
struct Timed {
    failed: u64,
    rate: f64,
    server: f64,
}

/// Closed-loop calls, `in_flight` at a time, for about `seconds`.
async fn timed_setups(trunk: &Arc<Trunk>, in_flight: usize, seconds: f64) -> Timed {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mark = CpuMark::now();
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let (t, done, failed) = (trunk.clone(), done.clone(), failed.clone());
        set.spawn(async move {
            while Instant::now() < until {
                match calls::call(&t, None).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while set.join_next().await.is_some() {}
    let elapsed = mark.at.elapsed().as_secs_f64().max(1e-3);
    let cpu = mark.since();
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    Timed { failed, rate: done as f64 / elapsed, server: cpu.server }
}

/// The outsider: INVITEs, each a new call, paced at a rate, from a
/// stranger's address; counts what comes back.
struct Outsider {
    stop: tokio::sync::oneshot::Sender<()>,
    sender: tokio::task::JoinHandle<(u64, u64)>,
    receiver: tokio::task::JoinHandle<()>,
    back: Arc<(AtomicU64, AtomicU64)>,
}

/// What the outsider sent and got.
struct FloodCount {
    sent: u64,
    bytes_in: u64,
    answers: u64,
    bytes_back: u64,
}

impl Outsider {
    async fn start(server: SocketAddr, rate: u32) -> Result<Outsider, SecureBenchError> {
        let sock = Arc::new(UdpSocket::bind(SocketAddr::from((OUTSIDER, 0))).await?);
        let local = sock.local_addr()?;
        let back = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let receiver = {
            let (sock, back) = (sock.clone(), back.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                    back.0.fetch_add(1, Ordering::Relaxed);
                    back.1.fetch_add(n as u64, Ordering::Relaxed);
                }
            })
        };
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let per_tick = (rate / 1000).max(1);
        let sender = tokio::spawn(async move {
            let (mut sent, mut bytes) = (0u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        for _ in 0..per_tick {
                            let m = flood_invite(local, server, sent);
                            if sock.send_to(m.as_bytes(), server).await.is_ok() {
                                sent += 1;
                                bytes += m.len() as u64;
                            }
                        }
                    }
                }
            }
            (sent, bytes)
        });
        Ok(Outsider { stop, sender, receiver, back })
    }

    /// Stops sending, waits a moment for the last answers, and counts.
    async fn stop(self) -> FloodCount {
        let _ = self.stop.send(());
        let (sent, bytes_in) = self.sender.await.unwrap_or((0, 0));
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.receiver.abort();
        FloodCount { sent, bytes_in, answers: self.back.0.load(Ordering::Relaxed), bytes_back: self.back.1.load(Ordering::Relaxed) }
    }
}

/// A new call's INVITE, as a scanner sends it (with an offer).
fn flood_invite(local: SocketAddr, server: SocketAddr, n: u64) -> String {
    let sdp = calls::offer_sdp(local, None);
    format!(
        "INVITE sip:{callee}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKflood{n:x};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:scanner@{ip}>;tag=f{n:x}\r\nTo: <sip:{callee}@{server}>\r\nCall-ID: flood{n:x}@{ip}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:scanner@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
        callee = calls::CALLEE,
        ip = local.ip(),
        len = sdp.len()
    )
}
