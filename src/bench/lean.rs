//! A call generator that costs little per call, for the overload table.
//!
//! The generator of `secure_calls.rs` gives every call its own task and
//! inbox: fine for tens of thousands of calls, but offered three times the
//! server's capacity on a 2-core machine it took most of the core the
//! server was not using, and the server's result then measured the
//! generator as much as itself. This one is a single task with one UDP
//! socket and one state per call in a vector indexed by the Call-ID, as
//! SIPp is: INVITE (retransmitted on RFC 3261's Timer A until a provisional
//! or final answer, for at most [`FINAL_WITHIN`]), the 2xx ACKed and a BYE
//! sent at once, a failure ACKed within its transaction.
//!
//! With `oc` it is a carrier that honours RFC 7339: it puts `oc` in its
//! Via, reads the server's answer in the Via of each response, and while
//! that holds drops that percentage of its new calls at random before
//! sending them (the RFC's loss-based client; a real carrier would route
//! them elsewhere or give the caller a busy tone).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::calls::{header, offer_sdp, CALLEE, FINAL_WITHIN};
use crate::sip::driver::udp;
use crate::sip::headers::{param, Via};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// How often calls waiting for an answer are looked at for retransmission.
const SCAN: Duration = Duration::from_millis(50);

/// How calls are placed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Load {
    /// This many calls in flight, each started when one ends.
    Closed(usize),
    /// Calls per second, started on schedule whatever happened to earlier ones.
    Open(f64),
}

/// What a step measured.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Outcome {
    pub calls: u64,
    pub completed: u64,
    /// Completed within the step's window (stragglers retransmitted past it do not count).
    pub completed_in_window: u64,
    pub refused: u64,
    pub failed: u64,
    /// Calls the generator held back itself, as the server asked (RFC 7339).
    pub held_back: u64,
    pub elapsed: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// INVITE sent; `provisional` once a 1xx stopped the retransmissions.
    Inviting {
        provisional: bool,
    },
    /// 2xx ACKed, BYE sent.
    Ending,
    Over,
}

#[derive(Debug, Clone)]
struct Call {
    phase: Phase,
    /// When the request now waiting for an answer was first sent.
    since: Instant,
    resend_at: Instant,
    interval: Duration,
    /// The server's To (with its tag), once answered.
    to: Option<String>,
}

/// Places calls on `server` as `load` says, for `seconds`, and waits for
/// the last ones (at most [`FINAL_WITHIN`] after the window).
pub(super) async fn run(server: SocketAddr, load: Load, seconds: f64, oc: bool) -> std::io::Result<Outcome> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    crate::sip::driver::large_buffers(&sock);
    let mut g = Generator {
        local: sock.local_addr()?,
        server,
        run: rand::random::<u32>(),
        sdp: offer_sdp(SocketAddr::from(([127, 0, 0, 1], 9)), None),
        calls: Vec::new(),
        scheduled: 0,
        oc: oc.then(Told::default),
        waiting: Vec::new(),
        out: Vec::new(),
        outcome: Outcome::default(),
        start: Instant::now(),
        window: Duration::from_secs_f64(seconds),
    };
    let mut bufs = vec![vec![0u8; 65_535]; udp::RECV_BATCH];
    let mut got = Vec::with_capacity(udp::RECV_BATCH);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut scanned = g.start;
    loop {
        let now = Instant::now();
        let in_window = now.duration_since(g.start) < g.window;
        if in_window {
            match load {
                Load::Open(rate) => {
                    let due = (now.duration_since(g.start).as_secs_f64() * rate) as usize;
                    while g.scheduled < due {
                        g.scheduled += 1;
                        if g.holds_back(now) {
                            g.outcome.held_back += 1;
                        } else {
                            g.start_call(now);
                        }
                    }
                }
                Load::Closed(n) => {
                    while g.active() < n {
                        g.start_call(now);
                    }
                }
            }
        } else if g.active() == 0 || now.duration_since(g.start) > g.window + FINAL_WITHIN {
            break;
        }
        if now.duration_since(scanned) >= SCAN {
            scanned = now;
            g.retransmit(now);
        }
        // In batches, as the server reads and writes: one datagram per
        // system call left the generator, not the server, the bottleneck.
        if !g.out.is_empty() {
            let out: Vec<(SocketAddr, Vec<u8>)> = g.out.drain(..).map(|m| (server, m.into_bytes())).collect();
            udp::send_batch(&sock, &out).await;
        }
        tokio::select! {
            r = udp::recv_batch(&sock, &mut bufs, &mut got) => {
                r?;
                let now = Instant::now();
                for r in &got {
                    if let Ok(text) = std::str::from_utf8(r.bytes(&bufs)) {
                        g.answer(now, text);
                    }
                }
            }
            _ = tick.tick() => {}
        }
    }
    g.outcome.failed += g.active() as u64;
    g.outcome.calls = g.calls.len() as u64;
    g.outcome.elapsed = g.start.elapsed().as_secs_f64();
    Ok(g.outcome)
}

/// What the server last said about holding back (RFC 7339).
#[derive(Debug, Default)]
struct Told {
    percent: u8,
    until: Option<Instant>,
    /// `oc-seq`, as (seconds, fraction): older answers are ignored.
    seq: (u64, u64),
}

struct Generator {
    local: SocketAddr,
    server: SocketAddr,
    run: u32,
    sdp: String,
    calls: Vec<Call>,
    /// Calls due so far on an open-loop schedule, placed or held back.
    scheduled: usize,
    /// `Some` when honouring RFC 7339.
    oc: Option<Told>,
    /// Calls not over, by index (swept lazily).
    waiting: Vec<usize>,
    out: Vec<String>,
    outcome: Outcome,
    start: Instant,
    window: Duration,
}

impl Generator {
    fn active(&mut self) -> usize {
        let calls = &self.calls;
        self.waiting.retain(|&i| calls[i].phase != Phase::Over);
        self.waiting.len()
    }

    fn start_call(&mut self, now: Instant) {
        let i = self.calls.len();
        self.calls.push(Call { phase: Phase::Inviting { provisional: false }, since: now, resend_at: now + T1, interval: T1, to: None });
        self.waiting.push(i);
        let invite = self.request(i, "INVITE", 1, 'i');
        self.out.push(invite);
    }

    /// Whether the next new call is dropped here, as the server asked.
    fn holds_back(&mut self, now: Instant) -> bool {
        match &self.oc {
            Some(t) if t.percent > 0 && t.until.is_some_and(|u| now < u) => rand::random::<f64>() * 100.0 < f64::from(t.percent),
            _ => false,
        }
    }

    /// Reads RFC 7339's parameters from a response's top Via.
    fn told(&mut self, now: Instant, text: &str) {
        let Some(t) = self.oc.as_mut() else { return };
        let Some(top) = header(text, "Via", "v").and_then(|v| Via::parse_all(v).ok()).and_then(|v| v.into_iter().next()) else {
            return;
        };
        let param = |name: &str| param(&top.params, name);
        let (Some(percent), Some(seq)) = (param("oc").and_then(|v| v.parse::<u8>().ok()), param("oc-seq")) else { return };
        let seq = seq.split_once('.').and_then(|(s, f)| Some((s.parse().ok()?, f.parse().ok()?))).unwrap_or_default();
        if seq < t.seq {
            return;
        }
        let validity = param("oc-validity").and_then(|v| v.parse::<u64>().ok()).unwrap_or(500);
        (t.percent, t.seq, t.until) = (percent.min(100), seq, Some(now + Duration::from_millis(validity)));
    }

    /// A request of call `i`; `kind` tells the branches apart (INVITE and
    /// the ACK of a failure share one).
    fn request(&self, i: usize, method: &str, cseq: u32, kind: char) -> String {
        let (local, server, run) = (self.local, self.server, self.run);
        let to = self.calls[i].to.clone().unwrap_or_else(|| format!("<sip:{CALLEE}@{server}>"));
        let body = (method == "INVITE").then_some(self.sdp.as_str());
        let oc = if self.oc.is_some() { ";oc;oc-algo=\"loss\"" } else { "" };
        let mut m = format!(
            "{method} sip:{CALLEE}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKl{run:x}{kind}{i};rport{oc}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bench@{ip}>;tag=l{i}\r\nTo: {to}\r\nCall-ID: l{run:x}-{i}@bench\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:bench@{local}>\r\n",
            ip = local.ip()
        );
        match body {
            Some(b) => m.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}", b.len())),
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        m
    }

    /// A response from the server.
    fn answer(&mut self, now: Instant, text: &str) {
        let Some(code) = text.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)).and_then(|c| c.parse::<u16>().ok()) else {
            return;
        };
        self.told(now, text);
        let Some(i) = header(text, "Call-ID", "i")
            .and_then(|c| c.strip_prefix(&format!("l{:x}-", self.run)))
            .and_then(|c| c.strip_suffix("@bench"))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&i| i < self.calls.len())
        else {
            return;
        };
        let method = header(text, "CSeq", "CSeq").and_then(|c| c.split_whitespace().nth(1)).unwrap_or("");
        let to = header(text, "To", "t").map(str::to_string);
        let phase = self.calls[i].phase;
        match (method, phase) {
            ("INVITE", Phase::Inviting { .. }) if code < 200 => self.calls[i].phase = Phase::Inviting { provisional: true },
            ("INVITE", Phase::Inviting { .. }) if code >= 300 => {
                self.calls[i].to = to;
                if code == 503 {
                    self.outcome.refused += 1;
                } else {
                    self.outcome.failed += 1;
                }
                self.calls[i].phase = Phase::Over;
                let ack = self.request(i, "ACK", 1, 'i');
                self.out.push(ack);
            }
            ("INVITE", Phase::Inviting { .. }) => {
                self.calls[i].to = to;
                let ack = self.request(i, "ACK", 1, 'a');
                let bye = self.request(i, "BYE", 2, 'b');
                self.out.extend([ack, bye]);
                let c = &mut self.calls[i];
                (c.phase, c.since, c.resend_at, c.interval) = (Phase::Ending, now, now + T1, T1);
            }
            // A 2xx repeated (our ACK was lost): ACK it again.
            ("INVITE", _) if (200..300).contains(&code) => {
                let ack = self.request(i, "ACK", 1, 'a');
                self.out.push(ack);
            }
            ("BYE", Phase::Ending) if code >= 200 => {
                self.calls[i].phase = Phase::Over;
                if code < 300 {
                    self.outcome.completed += 1;
                    if now.duration_since(self.start) <= self.window {
                        self.outcome.completed_in_window += 1;
                    }
                } else {
                    self.outcome.failed += 1;
                }
            }
            _ => {}
        }
    }

    /// Timer A/E: requests without an answer go again, doubling up to T2;
    /// past [`FINAL_WITHIN`] the call has failed.
    fn retransmit(&mut self, now: Instant) {
        self.active();
        for k in 0..self.waiting.len() {
            let i = self.waiting[k];
            let c = &self.calls[i];
            let (resend, method, cseq, kind) = match c.phase {
                Phase::Inviting { provisional: false } => (true, "INVITE", 1, 'i'),
                Phase::Inviting { provisional: true } => (false, "INVITE", 1, 'i'),
                Phase::Ending => (true, "BYE", 2, 'b'),
                Phase::Over => continue,
            };
            if now.duration_since(c.since) > FINAL_WITHIN {
                self.calls[i].phase = Phase::Over;
                self.outcome.failed += 1;
                continue;
            }
            if resend && now >= c.resend_at {
                let m = self.request(i, method, cseq, kind);
                self.out.push(m);
                let c = &mut self.calls[i];
                c.interval = (c.interval * 2).min(T2);
                c.resend_at = now + c.interval;
            }
        }
    }
}
