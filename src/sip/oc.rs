//! SIP overload control, loss-based (RFC 7339): telling a carrier how
//! much of its new traffic to hold back, so that the excess never arrives.
//!
//! A 503 costs the server a read, a write and the ACK's read: past three
//! times capacity those took a third of the core the calls already
//! carried needed (issue 13, README "Past capacity"), which is the
//! collapse RFC 6357 describes. RFC 7339 moves the refusing upstream: a
//! client that puts `oc` in its Via (with `oc-algo="loss"`) is told in
//! the Via of each response the percentage of its new requests to drop
//! (`oc`), for how long that holds (`oc-validity`) and which value is the
//! newest (`oc-seq`). Clients that do not ask get the 503s as before.
//!
//! [`LossControl`] is the server's side: a pure state machine fed with
//! each new call offered (admitted or refused) and the time, read for the
//! percentage when a response is formed. Every [`WINDOW`] it looks at the
//! share of the window's new calls it refused:
//! - more than [`HALF`]: demand is far past capacity, and the carrier is
//!   asked at once to send what was admitted (its demand is what it sent
//!   divided by the share it kept);
//! - more than [`OVER`]: past capacity, it is asked to move half way;
//! - less than [`ENOUGH`] (or too few calls to judge, idle windows
//!   included): [`STEP`] points are given back, so the carrier sends more;
//! - in between: the percentage holds.
//!
//! It aims at a few refusals, not none. Past capacity the server's lines
//! (`max_calls`) are what limits it, and it completes the most calls when
//! they stay full, which takes a carrier sending a little more than they
//! carry; calls arriving in bursts are refused now and then even below
//! capacity. Measured on the overload bench, a controller that cut the
//! whole refused share each time (and one that also eased off when the
//! lines were 70–85 % full) held the carrier to about capacity and
//! completed fewer calls than a carrier that sent everything. The RFC
//! leaves the algorithm to the server (§5.5); this one needs no measure
//! of CPU, only the refusals the server already makes.

use std::time::{Duration, Instant};

/// How often the percentage is recomputed.
pub const WINDOW: Duration = Duration::from_millis(100);
/// How long a client applies a value it was told (`oc-validity`, ms).
pub const VALIDITY_MS: u32 = 500;
/// Share of a window's new calls refused past which the whole excess is
/// cut at once.
const HALF: f64 = 0.5;
/// ... past which the carrier is asked to move half way.
const OVER: f64 = 0.25;
/// ... below which it is given more.
const ENOUGH: f64 = 0.10;
/// Percentage points given back per window.
const STEP: u8 = 5;
/// Never ask a carrier to drop every call: some must come to measure by.
const MAX_PERCENT: u8 = 95;
/// New calls a window needs before it is judged.
const MIN_SAMPLE: u32 = 10;

/// The server's side of RFC 7339's loss-based overload control.
#[derive(Debug, Default)]
pub struct LossControl {
    since: Option<Instant>,
    offered: u32,
    refused: u32,
    percent: u8,
    /// `oc-seq`: the wall-clock second of the last change, and a count of
    /// changes (so two changes within one second still increase it).
    seq_wall: u64,
    changes: u32,
}

impl LossControl {
    /// A new call arrived (outside any dialog, not a retransmission); it
    /// was `refused` or taken.
    pub fn handle_new_call(&mut self, now: Instant, wall: u64, refused: bool) {
        self.roll(now, wall);
        self.offered = self.offered.saturating_add(1);
        self.refused = self.refused.saturating_add(refused as u32);
    }

    /// `count` new calls refused before they could be read (shed).
    pub fn handle_refused(&mut self, now: Instant, wall: u64, count: u64) {
        self.roll(now, wall);
        let n = u32::try_from(count).unwrap_or(u32::MAX);
        self.offered = self.offered.saturating_add(n);
        self.refused = self.refused.saturating_add(n);
    }

    /// The percentage of new calls clients are asked to drop now.
    pub fn percent(&mut self, now: Instant, wall: u64) -> u8 {
        self.roll(now, wall);
        self.percent
    }

    /// The Via parameters a response carries to a client that asked
    /// (RFC 7339 §5.2), starting with `;`.
    pub fn via_params(&mut self, now: Instant, wall: u64) -> String {
        let p = self.percent(now, wall);
        format!(";oc={p};oc-algo=\"loss\";oc-validity={VALIDITY_MS};oc-seq={}.{:05}", self.seq_wall, self.changes % 100_000)
    }

    /// Closes the windows that ended by `now`.
    fn roll(&mut self, now: Instant, wall: u64) {
        let Some(since) = self.since else {
            (self.since, self.seq_wall) = (Some(now), wall);
            return;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed < WINDOW {
            return;
        }
        let keep = 1.0 - f64::from(self.percent) / 100.0;
        let share = if self.offered >= MIN_SAMPLE { f64::from(self.refused) / f64::from(self.offered) } else { 0.0 };
        let next = if share > HALF {
            // Send what was admitted: the demand (offered / keep) times
            // the share admitted of it.
            ((1.0 - keep * (1.0 - share)) * 100.0).round().clamp(0.0, f64::from(MAX_PERCENT)) as u8
        } else if share > OVER {
            ((1.0 - keep * (1.0 - share / 2.0)) * 100.0).round().clamp(0.0, f64::from(MAX_PERCENT)) as u8
        } else if share < ENOUGH {
            let windows = (elapsed.as_millis() / WINDOW.as_millis()).min(u128::from(MAX_PERCENT)) as u8;
            self.percent.saturating_sub(STEP.saturating_mul(windows))
        } else {
            self.percent
        };
        if next != self.percent {
            self.percent = next;
            self.changes = self.changes.wrapping_add(1);
            self.seq_wall = self.seq_wall.max(wall);
        }
        (self.since, self.offered, self.refused) = (Some(now), 0, 0);
    }
}

/// Whether the topmost Via value (`via`: the first Via field as received)
/// asks for loss-based overload control: it has `oc`, and `oc-algo` is
/// absent or lists `loss` (RFC 7339 §5.1; `loss` is the default).
pub fn asks(via: &[u8]) -> bool {
    let top = &via[..top_end(via)];
    let (mut oc, mut loss) = (false, true);
    for p in split_outside_quotes(top, b';').skip(1) {
        let (name, value) = match p.iter().position(|&b| b == b'=') {
            Some(e) => (p[..e].trim_ascii(), p[e + 1..].trim_ascii()),
            None => (p.trim_ascii(), &b""[..]),
        };
        if name.eq_ignore_ascii_case(b"oc") {
            oc = true;
        } else if name.eq_ignore_ascii_case(b"oc-algo") {
            let list = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
            loss = list.split(|&b| b == b',').any(|a| a.trim_ascii().eq_ignore_ascii_case(b"loss"));
        }
    }
    oc && loss
}

/// `via` with `params` added to its topmost value (before the comma of a
/// second value in the same field), the client's own `oc` parameters
/// replaced.
pub fn with_params(via: &str, params: &str) -> String {
    // Cut only at ASCII bytes, with ASCII added: still UTF-8.
    String::from_utf8(with_params_raw(via.as_bytes(), params)).unwrap_or_default()
}

/// [`with_params`] on a field as received, which need not be UTF-8.
pub fn with_params_raw(via: &[u8], params: &str) -> Vec<u8> {
    let (top, rest) = via.split_at(top_end(via));
    let mut out = Vec::with_capacity(via.len() + params.len());
    for (i, p) in split_outside_quotes(top, b';').enumerate() {
        let name = p.iter().position(|&b| b == b'=').map_or(p, |e| &p[..e]).trim_ascii();
        if i > 0 && (name.eq_ignore_ascii_case(b"oc") || name.len() > 3 && name[..3].eq_ignore_ascii_case(b"oc-")) {
            continue;
        }
        if i > 0 {
            out.push(b';');
        }
        out.extend_from_slice(p.trim_ascii_end());
    }
    out.extend_from_slice(params.as_bytes());
    out.extend_from_slice(rest);
    out
}

/// Where the topmost value of a Via field ends: its first comma outside
/// quotes and angle brackets (as [`crate::sip::headers::split_commas`]
/// reads it), or the end.
fn top_end(via: &[u8]) -> usize {
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    for (i, &b) in via.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => return i,
            _ => {}
        }
    }
    via.len()
}

fn split_outside_quotes(s: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut quoted = false;
    s.split(move |&b| {
        if b == b'"' {
            quoted = !quoted;
        }
        b == sep && !quoted
    })
}

#[cfg(test)]
#[path = "oc_tests.rs"]
mod tests;
