//! `bench sip`, encrypted beside plain (issue 14): call setups per second
//! and simultaneous echo calls with SIP over TLS + SRTP against SIP over
//! UDP + plain RTP, from one run, as ratios.
//!
//! SIPp as built here has neither TLS nor SRTP, so the calls come from a
//! generator of our own (`secure_calls.rs`): per mode one signalling path,
//! as a carrier trunk is (one UDP socket, or one TLS connection trusting
//! a certificate made for the run), each call keyed with fresh SDES keys
//! in TLS mode and its SRTP done by the project's [`SrtpContexts`].
//!
//! The server is the real [`SipServer`] with the echo app, on a tokio
//! runtime of its own in a dedicated thread whose threads are all named
//! [`SERVER_THREAD`]: its CPU is read from `/proc/self/task/*/stat` apart
//! from the generator's (the rest of this process). Its trunk has
//! `srtp = "offered"`: plain calls over UDP get plain RTP, calls over TLS
//! that offer `a=crypto` get SRTP, and the generator checks on every call
//! that the answer is the one its mode expects.
//!
//! The two modes alternate step by step, so that a change in what else
//! runs on the machine touches both rows of a ratio alike.
//!
//! [`SrtpContexts`]: crate::media::srtp::SrtpContexts

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::call::apps::{self, App, Report};
use crate::media::srtp::SrtpSuite;
use crate::sip::config::{SipConfig, Transport};
use crate::sip::driver::{DriverError, SipServer};

#[path = "secure_calls.rs"]
pub mod calls;
/// A generator of calls that costs little per call, for the overload table.
#[path = "lean.rs"]
pub(crate) mod lean;
/// Past capacity and under a flood (issue 13), with the same server and generator.
#[path = "overload.rs"]
pub mod overload;
use calls::{CallFailure, Media, MediaCount, Mode, Tone, Trunk, PACKETS_PER_SECOND};

/// Name of every thread of the server's runtime. Linux keeps 15 bytes of a
/// thread name: this one fits whole.
pub const SERVER_THREAD: &str = "clinivox-server";
/// Echo calls start this far apart (100 per second, as `bench sip` ramps SIPp).
const ECHO_RAMP: Duration = Duration::from_millis(10);
/// A step carries its calls cleanly when at least this share (per cent)
/// of the packets sent came back as echo, and no call failed.
const CLEAN_ECHO_PERCENT: u64 = 98;
/// Clock ticks per second in /proc `stat` files (USER_HZ on Linux).
const TICKS_PER_SECOND: f64 = 100.0;
/// How long the server thread gets to report its addresses.
const SERVER_START_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum SecureBenchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("making the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the bench's SIP configuration: {0}")]
    Config(String),
    #[error("starting the SIP server: {0}")]
    Server(#[from] DriverError),
    #[error("the SIP server thread stopped before it listened")]
    ServerGone,
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("TLS connection to the server: {0}")]
    Handshake(String),
}

/// What to measure. The defaults fit a 2-core machine shared with other work.
#[derive(Debug, Clone)]
pub struct SecureOptions {
    /// Setups: calls kept in flight at once, one step each.
    pub concurrency: Vec<usize>,
    /// Setups: calls placed per step.
    pub calls_per_step: usize,
    /// Echo: simultaneous calls, one step each.
    pub calls: Vec<usize>,
    /// Echo: how long each call streams, seconds.
    pub hold_seconds: u32,
    /// SRTP suite the TLS calls offer.
    pub suite: SrtpSuite,
    /// Worker threads of the server's runtime.
    pub server_threads: usize,
}

impl Default for SecureOptions {
    fn default() -> Self {
        SecureOptions {
            concurrency: vec![10, 50],
            calls_per_step: 500,
            calls: vec![20, 50, 100],
            hold_seconds: 5,
            suite: SrtpSuite::AeadAes128Gcm,
            server_threads: 1,
        }
    }
}

/// Runs both benchmarks and prints their tables (markdown) on stdout.
pub async fn run(o: &SecureOptions) -> Result<(), SecureBenchError> {
    let server = EchoServer::start(o.server_threads.max(1)).await?;
    let plain = Arc::new(Trunk::udp(server.udp).await?);
    let secure = Arc::new(Trunk::tls(server.tls, &server.cert, o.suite).await?);
    println!(
        "SIP server: echo app on its own runtime ({} worker thread{} and the thread that drives it), UDP {} and TLS {}; \
         TLS+SRTP calls offer {} (RTP/SAVP) and must be answered with it.\n\
         Generator: this process, one UDP socket / one TLS connection per mode, RTP from one socket per call. \
         CPU is % of one core; {} cores.\n",
        o.server_threads.max(1),
        if o.server_threads > 1 { "s" } else { "" },
        server.udp,
        server.tls,
        o.suite.sdes_name(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    let trunks = [plain, secure];
    setups(&trunks, o).await;
    echo(&trunks, o).await;
    for t in trunks {
        if let Ok(t) = Arc::try_unwrap(t) {
            t.close().await;
        }
    }
    server.stop().await;
    Ok(())
}

/// Table 1: setups per second at each concurrency, both modes.
async fn setups(trunks: &[Arc<Trunk>; 2], o: &SecureOptions) {
    println!("## Call setups (INVITE → 200 → ACK → BYE → 200, no media)\n");
    println!("| transport | in flight | calls | failed | setups/s | server CPU | server CPU per setup |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut best = [0.0f64; 2];
    // Per step: each mode's server CPU seconds per call, and whether none failed.
    let mut rows: Vec<(usize, [(f64, bool); 2])> = Vec::new();
    let mut notes = Vec::new();
    for &c in &o.concurrency {
        let mut row = [(0.0, false); 2];
        for (i, trunk) in trunks.iter().enumerate() {
            let s = setup_step(trunk, c.max(1), o.calls_per_step).await;
            let calls = s.done + s.failed;
            let rate = s.done as f64 / s.elapsed.as_secs_f64();
            let per_call = s.cpu.server * s.elapsed.as_secs_f64() / calls.max(1) as f64;
            println!(
                "| {} | {c} | {calls} | {} | {rate:.0} | {:.0} % | {:.3} ms |",
                trunk.mode().label(),
                s.failed,
                s.cpu.server * 100.0,
                per_call * 1000.0
            );
            let clean = s.failed == 0 && s.done > 0;
            if clean {
                best[i] = best[i].max(rate);
            }
            row[i] = (per_call, clean);
            if let Some(f) = s.first_failure {
                notes.push(format!("{} at {c} in flight: {} failed, the first: {f}", trunk.mode().label(), s.failed));
            }
        }
        rows.push((c, row));
    }
    print_notes(&notes);
    println!(
        "\nBest setups/s with no failed call: UDP+RTP {:.0}, TLS+SRTP {:.0}; TLS+SRTP / UDP+RTP = {}",
        best[0],
        best[1],
        ratio(best[1], best[0])
    );
    if let Some((c, [(p, _), (s, _)])) = common_step(&rows) {
        println!(
            "Server CPU per setup at {c} in flight: UDP+RTP {:.3} ms, TLS+SRTP {:.3} ms; TLS+SRTP / UDP+RTP = {}",
            p * 1000.0,
            s * 1000.0,
            ratio(s, p)
        );
    }
    println!();
}

/// What one step measured.
pub(super) struct Step {
    pub(super) done: u64,
    pub(super) failed: u64,
    pub(super) first_failure: Option<CallFailure>,
    media: MediaCount,
    pub(super) elapsed: Duration,
    pub(super) cpu: CpuUse,
}

/// `calls` media-less calls on `trunk`, `in_flight` at a time.
async fn setup_step(trunk: &Arc<Trunk>, in_flight: usize, calls: usize) -> Step {
    let next = Arc::new(AtomicUsize::new(0));
    let mark = CpuMark::now();
    let mut set = JoinSet::new();
    for _ in 0..in_flight.min(calls) {
        let (trunk, next) = (trunk.clone(), next.clone());
        set.spawn(async move {
            let mut results = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                results.push(calls::call(&trunk, None).await);
            }
            results
        });
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        results.extend(r.unwrap_or_default());
    }
    tally(results, mark)
}

/// Table 2: simultaneous echo calls at each N, both modes, and the ratios.
async fn echo(trunks: &[Arc<Trunk>; 2], o: &SecureOptions) {
    println!(
        "## Simultaneous echo calls (G.711 µ-law, 20 ms, both ways, {} s each; calls start {} ms apart)\n",
        o.hold_seconds,
        ECHO_RAMP.as_millis()
    );
    println!("| transport | calls | failed | echoed / expected | SRTP rejected | tone in clear | server CPU | generator CPU |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let tone = Arc::new(Tone::new());
    let packets = u64::from(o.hold_seconds) * u64::from(PACKETS_PER_SECOND);
    let mut carried = [0usize; 2];
    // Per N: each mode's server CPU (fraction of a core), and whether it was clean.
    let mut rows: Vec<(usize, [(f64, bool); 2])> = Vec::new();
    let mut notes = Vec::new();
    for &n in &o.calls {
        let mut row = [(0.0, false); 2];
        for (i, trunk) in trunks.iter().enumerate() {
            let s = echo_step(trunk, n, packets, &tone).await;
            let expected = n as u64 * packets;
            let clean = s.failed == 0 && s.media.echoed * 100 >= expected * CLEAN_ECHO_PERCENT;
            println!(
                "| {} | {n} | {} | {} / {expected} ({:.1} %) | {} | {} | {:.0} % | {:.0} % |",
                trunk.mode().label(),
                s.failed,
                s.media.echoed,
                s.media.echoed as f64 * 100.0 / expected.max(1) as f64,
                if trunk.mode() == Mode::Secure { s.media.rejected.to_string() } else { "–".into() },
                s.media.in_clear,
                s.cpu.server * 100.0,
                s.cpu.generator * 100.0
            );
            if clean {
                carried[i] = carried[i].max(n);
            }
            row[i] = (s.cpu.server, clean);
            if let Some(f) = s.first_failure {
                notes.push(format!("{} with {n} calls: {} failed, the first: {f}", trunk.mode().label(), s.failed));
            }
        }
        rows.push((n, row));
    }
    print_notes(&notes);
    println!(
        "\nMost simultaneous calls carried cleanly (no failed call, ≥ {CLEAN_ECHO_PERCENT} % echoed): \
         UDP+RTP {}, TLS+SRTP {}; TLS+SRTP / UDP+RTP = {}",
        carried[0],
        carried[1],
        ratio(carried[1] as f64, carried[0] as f64)
    );
    if let Some((n, [(p, _), (s, _)])) = common_step(&rows) {
        let (p, s) = (p / n as f64, s / n as f64);
        println!(
            "Server CPU per call at {n} calls: UDP+RTP {:.2} %, TLS+SRTP {:.2} % of a core; TLS+SRTP / UDP+RTP = {}\n",
            p * 100.0,
            s * 100.0,
            ratio(s, p)
        );
    }
}

/// `n` calls, started [`ECHO_RAMP`] apart, each streaming `packets` packets.
async fn echo_step(trunk: &Arc<Trunk>, n: usize, packets: u64, tone: &Arc<Tone>) -> Step {
    let mark = CpuMark::now();
    let mut set = JoinSet::new();
    for i in 0..n {
        let (trunk, media) = (trunk.clone(), Media { packets, tone: tone.clone() });
        set.spawn(async move {
            tokio::time::sleep(ECHO_RAMP * i as u32).await;
            calls::call(&trunk, Some(&media)).await
        });
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        // A call task that panicked is a failed call.
        results.push(r.unwrap_or(Err(CallFailure::Disconnected)));
    }
    tally(results, mark)
}

/// Sums a step's call results.
fn tally(results: Vec<Result<MediaCount, CallFailure>>, mark: CpuMark) -> Step {
    let mut s =
        Step { done: 0, failed: 0, first_failure: None, media: MediaCount::default(), elapsed: mark.at.elapsed(), cpu: mark.since() };
    for r in results {
        match r {
            Ok(m) => {
                s.done += 1;
                s.media.add(&m);
            }
            Err(e) => {
                s.failed += 1;
                s.first_failure.get_or_insert(e);
            }
        }
    }
    s
}

/// The step to compare CPU per call at: the largest both modes passed
/// cleanly, else the smallest measured.
fn common_step(rows: &[(usize, [(f64, bool); 2])]) -> Option<(usize, [(f64, bool); 2])> {
    rows.iter().filter(|(_, r)| r[0].1 && r[1].1).max_by_key(|(n, _)| *n).or_else(|| rows.iter().min_by_key(|(n, _)| *n)).copied()
}

/// `a / b` to two decimals, or "n/a" when `b` is nothing.
pub(super) fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

pub(super) fn print_notes(notes: &[String]) {
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("- {n}");
        }
    }
}

/// The echo server on its own runtime and thread, and the certificate it shows.
pub(super) struct EchoServer {
    pub(super) udp: SocketAddr,
    tls: SocketAddr,
    /// The self-signed certificate (PEM): the generator trusts it as its CA.
    cert: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Holds the certificate and key files until the end of the run.
    _dir: tempfile::TempDir,
}

impl EchoServer {
    async fn start(threads: usize) -> Result<EchoServer, SecureBenchError> {
        EchoServer::start_with(threads, server_config).await
    }

    /// The server with the configuration `config` writes for the run's
    /// certificate and key.
    pub(super) async fn start_with(threads: usize, config: fn(&Path, &Path) -> String) -> Result<EchoServer, SecureBenchError> {
        let dir = tempfile::tempdir()?;
        let (cert, key) = write_certificate(dir.path())?;
        let cfg: SipConfig = toml::from_str(&config(&cert, &key)).map_err(|e| SecureBenchError::Config(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(SERVER_THREAD)
            // Blocking threads that exit take their CPU time out of /proc.
            .thread_keep_alive(Duration::from_secs(3600))
            .enable_all()
            .build()?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name(SERVER_THREAD.into()).spawn(move || {
            // Everything on the worker threads, the application's loop
            // included: not woken across threads for every call.
            let _ = rt.block_on(rt.spawn(async move {
                // Bound here, so that its sockets belong to this runtime.
                let server = match SipServer::bind(cfg).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(server.local_addrs.clone()));
                let quiet: Report = Arc::new(|_| {});
                apps::serve(server, App::Echo, quiet, async move {
                    let _ = stopped.await;
                })
                .await;
            }));
        })?;
        let mut server = EchoServer { udp: unspecified(), tls: unspecified(), cert, stop: Some(stop), thread: Some(thread), _dir: dir };
        let addrs = tokio::time::timeout(SERVER_START_WITHIN, ready_rx)
            .await
            .map_err(|_| SecureBenchError::ServerGone)?
            .map_err(|_| SecureBenchError::ServerGone)??;
        let find = |t: Transport| addrs.iter().find(|(tr, _)| *tr == t).map(|(_, a)| *a).ok_or(SecureBenchError::ServerGone);
        server.udp = find(Transport::Udp)?;
        server.tls = find(Transport::Tls)?;
        Ok(server)
    }

    /// Stops the server and waits for its thread (the echo app lets calls
    /// still up wind down for a few seconds).
    pub(super) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // An early return: the thread stops on its own, unjoined.
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
fn write_certificate(dir: &Path) -> Result<(PathBuf, PathBuf), SecureBenchError> {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    let (cert, key) = (dir.join("bench.crt"), dir.join("bench.key"));
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.key_pair.serialize_pem())?;
    Ok((cert, key))
}

/// The server's SIP configuration: UDP and TLS on loopback, calls from
/// 127.0.0.0/8 are the trunk's, SRTP offered (used when the caller keys it).
pub fn server_config(cert: &Path, key: &Path) -> String {
    let quoted = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    format!(
        r#"
listen = [{{ transport = "udp", addr = "127.0.0.1:0" }}, {{ transport = "tls", addr = "127.0.0.1:0" }}]
numbers = ["{callee}"]
nonce_secret = "bench"
[rtp]
min = 20000
max = 39999
[limits]
max_calls = 4000
[tls]
cert = {cert}
key = {key}
[[trunks]]
name = "bench"
cidrs = ["127.0.0.0/8"]
srtp = "offered"
"#,
        callee = calls::CALLEE,
        cert = quoted(cert),
        key = quoted(key),
    )
}

/// CPU counters at the start of a step.
pub(super) struct CpuMark {
    pub(super) at: Instant,
    cpu: ThreadCpu,
}

/// CPU over a step, in fractions of one core.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CpuUse {
    /// The server's threads.
    pub(super) server: f64,
    /// This process's other threads: the generator.
    pub(super) generator: f64,
}

impl CpuMark {
    pub(super) fn now() -> CpuMark {
        CpuMark { at: Instant::now(), cpu: ThreadCpu::read() }
    }

    pub(super) fn since(&self) -> CpuUse {
        let secs = self.at.elapsed().as_secs_f64().max(1e-3);
        let now = ThreadCpu::read();
        CpuUse { server: (now.server - self.cpu.server).max(0.0) / secs, generator: (now.rest - self.cpu.rest).max(0.0) / secs }
    }
}

/// CPU seconds so far of this process's live threads: the server's (named
/// [`SERVER_THREAD`]) and the others. Each thread's time comes from its
/// `schedstat` (nanoseconds; a step of a tenth of a second is too short for
/// the 10 ms ticks of `stat`), or from `stat` where the kernel lacks it.
/// The generator's threads (tokio workers) live through the run; the
/// server's blocking threads are kept alive (see [`EchoServer::start`]).
#[derive(Debug, Clone, Copy, Default)]
struct ThreadCpu {
    server: f64,
    rest: f64,
}

impl ThreadCpu {
    fn read() -> ThreadCpu {
        let mut cpu = ThreadCpu::default();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return cpu };
        for task in tasks.filter_map(Result::ok) {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            let Some((name, ticks)) = parse_stat(&stat) else { continue };
            let secs = std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| parse_schedstat(&s))
                .map_or(ticks as f64 / TICKS_PER_SECOND, |ns| ns as f64 / 1e9);
            if name.starts_with(SERVER_THREAD) {
                cpu.server += secs;
            } else {
                cpu.rest += secs;
            }
        }
        cpu
    }
}

/// Time on a CPU (ns), the first field of a /proc `schedstat` line.
pub fn parse_schedstat(line: &str) -> Option<u64> {
    line.split_whitespace().next()?.parse().ok()
}

/// The command name and utime + stime (clock ticks) of a /proc `stat` line.
pub fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    // The name is in parentheses and may itself hold spaces or ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let name = stat.get(open + 1..close)?;
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
#[path = "secure_tests.rs"]
mod tests;
