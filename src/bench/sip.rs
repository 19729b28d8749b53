//! `clinivox bench sip`: the SIP/RTP endpoint under SIPp, on loopback.
//!
//! 1. Simultaneous echo calls: SIPp holds N calls that each stream G.711
//!    (20 ms packets) while the `echo` app plays everything back; each step
//!    reports what our side received against what was sent (sequence gaps,
//!    late packets), RTP sent back, and CPU use of Clinivox and of SIPp.
//! 2. Call setups per second: SIPp places calls that are answered and hung
//!    up at once, at rising rates; each step reports the rate reached and
//!    failures (SIPp's own count), with our CPU use.
//!
//! The server runs in this process (the real driver and call tasks); SIPp
//! is a child process. CPU is read from /proc (Linux).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::call::apps::{self, App, Report};
use crate::sip::config::SipConfig;
use crate::sip::driver::SipServer;

const SETUP_XML: &str = include_str!("sipp/uac_setup.xml");
const STREAM_XML: &str = include_str!("sipp/uac_stream.xml");

#[derive(Debug, Error)]
pub enum SipBenchError {
    #[error("sipp is not installed (apt-get install sip-tester)")]
    NoSipp,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("starting the SIP server: {0}")]
    Server(#[from] crate::sip::driver::DriverError),
    #[error("TLS+SRTP comparison: {0}")]
    Secure(#[from] super::secure::SecureBenchError),
}

pub struct Options {
    pub rates: Vec<u32>,
    pub seconds_per_rate: u32,
    pub calls: Vec<u32>,
    pub hold_seconds: u32,
    /// The TLS+SRTP against UDP+RTP comparison.
    pub secure: super::secure::SecureOptions,
    /// Past capacity and under a flood.
    pub overload: super::secure::overload::OverloadOptions,
}

pub async fn run(o: &Options) -> Result<(), SipBenchError> {
    if std::process::Command::new("sipp").arg("-v").output().is_err() {
        return Err(SipBenchError::NoSipp);
    }
    let dir = tempfile::tempdir()?;
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let (addr, stop) = start_echo(lines.clone()).await?;
    println!("SIP server on {addr} (echo app, this process); SIPp 3.x as the caller, loopback UDP\n");

    println!("## Simultaneous echo calls (G.711 µ-law, 20 ms, both ways, {} s each)\n", o.hold_seconds);
    println!("| calls | failed | RTP in / expected | lost | late | RTP out | Clinivox CPU | SIPp CPU |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let wav = dir.path().join("voice.wav");
    write_ulaw_tone(&wav)?;
    let stream = dir.path().join("stream.xml");
    let xml = STREAM_XML.replace("FILE", &wav.display().to_string()).replace("HOLD_MS", &(o.hold_seconds * 1000).to_string());
    std::fs::write(&stream, xml)?;
    let mut carried = 0;
    for &n in &o.calls {
        lines.lock().map(|mut l| l.clear()).ok();
        let ramp = 100.min(n);
        let args = vec![
            "-sf".into(),
            stream.display().to_string(),
            "-r".into(),
            ramp.to_string(),
            "-m".into(),
            n.to_string(),
            "-l".into(),
            n.to_string(),
            // SIPp's RTP streams take ports from here up.
            "-mp".into(),
            "40000".into(),
        ];
        let r = sipp(addr, &args, dir.path()).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = media_totals(&lines.lock().map(|l| l.clone()).unwrap_or_default());
        let expected = n as u64 * o.hold_seconds as u64 * 50;
        let clean = r.failed == 0 && m.calls == n as u64 && m.lost == 0 && m.late == 0 && m.rtp_in * 100 >= expected * 98;
        println!(
            "| {n} | {} | {} / {expected} | {} | {} | {} | {:.0} % | {:.0} % |",
            r.failed,
            m.rtp_in,
            m.lost,
            m.late,
            m.rtp_out,
            r.our_cpu * 100.0,
            r.sipp_cpu * 100.0
        );
        if clean {
            carried = carried.max(n);
        }
    }
    println!(
        "\nMost simultaneous echo calls with no RTP lost or late on our side: {carried} \
         (CPU is % of one core; this machine has {} cores, shared by SIPp)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    // Setups last: the rates that fail leave half-open calls behind.
    println!("## Call setups (INVITE → 200 → ACK → BYE, no media)\n");
    println!("| target calls/s | calls | failed | reached calls/s | Clinivox CPU |");
    println!("|---:|---:|---:|---:|---:|");
    let setup = dir.path().join("setup.xml");
    std::fs::write(&setup, SETUP_XML)?;
    let mut best = 0.0f64;
    for &rate in &o.rates {
        let calls = rate * o.seconds_per_rate;
        let args = vec![
            "-sf".into(),
            setup.display().to_string(),
            "-r".into(),
            rate.to_string(),
            "-m".into(),
            calls.to_string(),
            "-l".into(),
            (rate * 2).to_string(),
        ];
        let r = sipp(addr, &args, dir.path()).await?;
        let reached = calls as f64 / r.elapsed.as_secs_f64();
        println!("| {rate} | {calls} | {} | {reached:.0} | {:.0} % |", r.failed, r.our_cpu * 100.0);
        if r.failed == 0 {
            best = best.max(reached);
        }
    }
    println!("\nSustained with no failed call: {best:.0} setups/s\n");
    let _ = stop.send(());

    // SIPp here has neither TLS nor SRTP: the encrypted comparison uses our
    // own generator, both modes from it, alternating step by step.
    println!("# TLS+SRTP beside UDP+RTP (issue 14)\n");
    super::secure::run(&o.secure).await?;
    println!("# Past capacity, and under a flood (issue 13)\n");
    super::secure::overload::run(&o.overload).await?;
    Ok(())
}

/// Starts the SIP server with the echo app on a free loopback port.
async fn start_echo(lines: Arc<Mutex<Vec<String>>>) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>), SipBenchError> {
    let cfg: SipConfig = toml::from_str(
        r#"
listen = [{ transport = "udp", addr = "127.0.0.1:0" }]
numbers = ["1000"]
nonce_secret = "bench"
[rtp]
min = 20000
max = 39999
[limits]
# The echo steps hold up to 1,000 calls at once.
max_calls = 4000
[[trunks]]
name = "bench"
cidrs = ["127.0.0.0/8"]
"#,
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let server = SipServer::bind(cfg).await?;
    let addr = server.local_addrs[0].1;
    let report: Report = Arc::new(move |line: String| {
        if line.starts_with("HANGUP") {
            if let Ok(mut l) = lines.lock() {
                l.push(line);
            }
        }
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(apps::serve(server, App::Echo, report, async move {
        let _ = stopped.await;
    }));
    Ok((addr, stop))
}

struct SippRun {
    failed: u64,
    elapsed: Duration,
    /// Fractions of one core over the run.
    our_cpu: f64,
    sipp_cpu: f64,
}

async fn sipp(to: SocketAddr, args: &[String], dir: &Path) -> Result<SippRun, SipBenchError> {
    let stat = dir.join("stat.csv");
    let _ = std::fs::remove_file(&stat);
    let start = Instant::now();
    let ours0 = cpu_ticks("self");
    let mut child = tokio::process::Command::new("sipp")
        .arg(to.to_string())
        .args(args)
        .args(["-s", "1000", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-t", "u1", "-nd", "-trace_stat", "-stf"])
        .arg(&stat)
        .args(["-timeout", "120s", "-timeout_error", "-aa"])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id().map(|p| p.to_string());
    let mut sipp_ticks = 0u64;
    loop {
        if let Some(t) = pid.as_deref().and_then(cpu_ticks) {
            sipp_ticks = t;
        }
        if child.try_wait()?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = start.elapsed();
    let ours = cpu_ticks("self").zip(ours0).map(|(a, b)| a - b).unwrap_or(0);
    let hz = 100.0; // USER_HZ on Linux
    let failed = failed_calls(&stat).unwrap_or(u64::MAX);
    Ok(SippRun {
        failed,
        elapsed,
        our_cpu: ours as f64 / hz / elapsed.as_secs_f64(),
        sipp_cpu: sipp_ticks as f64 / hz / elapsed.as_secs_f64(),
    })
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// SIPp's cumulative failed-call count from the last line of its stat file.
fn failed_calls(stat: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(stat).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = text.lines().last()?.split(';').collect();
    let i = header.iter().position(|h| *h == "FailedCall(C)")?;
    last.get(i)?.trim().parse().ok()
}

#[derive(Debug, Default)]
struct MediaTotals {
    calls: u64,
    rtp_in: u64,
    lost: u64,
    late: u64,
    rtp_out: u64,
}

/// Sums the echo app's `HANGUP … rtp_in=… lost=… late=… rtp_out=…` lines.
fn media_totals(lines: &[String]) -> MediaTotals {
    let mut m = MediaTotals::default();
    for l in lines {
        let get = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        m.calls += 1;
        m.rtp_in += get("rtp_in=");
        m.lost += get("lost=");
        m.late += get("late=");
        m.rtp_out += get("rtp_out=");
    }
    m
}

/// Two seconds of a voice-band tone pattern as a µ-law WAV for SIPp.
fn write_ulaw_tone(path: &Path) -> std::io::Result<()> {
    let pcm: Vec<i16> = (0..16000)
        .map(|i| {
            let t = i as f32 / 8000.0;
            (((2.0 * std::f32::consts::PI * 440.0 * t).sin() + 0.5 * (2.0 * std::f32::consts::PI * 1250.0 * t).sin()) * 9000.0) as i16
        })
        .collect();
    crate::speech::wav::write_ulaw(path, 8000, &pcm).map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_lines_are_summed() {
        let lines = vec![
            "HANGUP Remote call=1 rtp_in=500 lost=2 late=1 concealed=3 rtp_out=499 frames=500".to_string(),
            "HANGUP Remote call=2 rtp_in=498 lost=0 late=0 concealed=0 rtp_out=500 frames=500".to_string(),
        ];
        let m = media_totals(&lines);
        assert_eq!((m.calls, m.rtp_in, m.lost, m.late, m.rtp_out), (2, 998, 2, 1, 999));
    }

    #[test]
    fn cpu_ticks_of_this_process_are_read() {
        assert!(cpu_ticks("self").is_some());
    }
}
