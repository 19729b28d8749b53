//! RFC 4733 telephone-event (DTMF) payloads: codec, receiver, sender.
//!
//! Payload layout (4 bytes): event(8) | E(1) R(1) volume(6) | duration(16).
//! All packets of one key press share the RTP timestamp of its start, so the
//! receiver keys presses by timestamp and emits exactly one [`Digit`] each,
//! however many updates or end packets are repeated, lost or reordered.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

/// RTP clock rate of telephone-event when negotiated alongside G.711.
pub const CLOCK_RATE: u32 = 8000;
/// Interval between update packets while a key is held (RFC 4733 §2.5.1.2).
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(50);
/// Number of end packets sent (RFC 4733 §2.5.1.4 recommends three).
pub const END_REPEATS: u32 = 3;
/// Spacing of the repeated end packets.
pub const END_SPACING: Duration = Duration::from_millis(20);
/// Default volume: −10 dBm0.
pub const DEFAULT_VOLUME: u8 = 10;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DtmfError {
    #[error("telephone-event payload too short: {0} bytes")]
    TooShort(usize),
    #[error("not a DTMF digit: {0:?}")]
    InvalidDigit(char),
}

/// One decoded telephone-event block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9 digits, 10 `*`, 11 `#`, 12-15 `A`-`D`.
    pub event: u8,
    /// E bit: this is (a repeat of) the final packet of the event.
    pub end: bool,
    /// Power level in −dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parse the first event block; trailing bytes (RFC 2198 redundancy) are ignored.
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        let b: &[u8; 4] = payload.get(..4).and_then(|s| s.try_into().ok()).ok_or(DtmfError::TooShort(payload.len()))?;
        Ok(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            // The R bit (0x40) is reserved and ignored on receipt.
            volume: b[1] & 0x3F,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3F);
        [self.event, flags, d[0], d[1]]
    }
}

/// Map a key to its event code.
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        c @ '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        c @ 'A'..='D' => Some(c as u8 - b'A' + 12),
        _ => None,
    }
}

/// Map an event code to its key; `None` for non-DTMF events (e.g. 16 = flash).
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// One complete key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    pub digit: char,
    pub duration: Duration,
}

/// Turns telephone-event packets into one [`Digit`] per key press.
#[derive(Debug)]
pub struct DtmfReceiver {
    /// Emit a press whose end packets were all lost after this much silence.
    end_timeout: Duration,
    current: Option<Press>,
    /// Timestamps of recently finished presses: their repeats are ignored.
    finished: [Option<u32>; 4],
    finished_pos: usize,
    out: VecDeque<Digit>,
}

impl Default for DtmfReceiver {
    fn default() -> Self {
        Self::new(Duration::from_millis(300))
    }
}

impl DtmfReceiver {
    pub fn new(end_timeout: Duration) -> Self {
        DtmfReceiver { end_timeout, current: None, finished: [None; 4], finished_pos: 0, out: VecDeque::new() }
    }

    /// Feed one telephone-event packet's RTP timestamp and payload.
    pub fn handle_packet(&mut self, now: Instant, timestamp: u32, payload: &[u8]) -> Result<(), DtmfError> {
        let ev = TelephoneEvent::parse(payload)?;
        let Some(digit) = event_to_digit(ev.event) else {
            return Ok(()); // non-DTMF events are not digits
        };
        if self.is_finished(timestamp) {
            return Ok(()); // repeated end packet or straggling update
        }
        if let Some(cur) = self.current {
            if cur.timestamp != timestamp {
                // Older timestamp: a stale reordered packet of a press we moved past.
                if (timestamp.wrapping_sub(cur.timestamp) as i32) < 0 {
                    return Ok(());
                }
                // A new press started while the previous never got its end packet.
                self.finish();
            }
        }
        // The start packet may have been lost: any packet of a press opens it.
        let cur = self.current.get_or_insert(Press { timestamp, digit, duration: 0, last_seen: now });
        cur.duration = cur.duration.max(ev.duration);
        cur.last_seen = now;
        if ev.end {
            self.finish();
        }
        Ok(())
    }

    /// Next completed digit, closing a press whose end packets never came.
    pub fn poll_digit(&mut self, now: Instant) -> Option<Digit> {
        if let Some(cur) = self.current {
            if now >= cur.last_seen + self.end_timeout {
                self.finish();
            }
        }
        self.out.pop_front()
    }

    /// When an unterminated press will be closed by timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current.map(|c| c.last_seen + self.end_timeout)
    }

    fn is_finished(&self, ts: u32) -> bool {
        self.finished.contains(&Some(ts))
    }

    fn finish(&mut self) {
        if let Some(cur) = self.current.take() {
            self.finished[self.finished_pos] = Some(cur.timestamp);
            self.finished_pos = (self.finished_pos + 1) % self.finished.len();
            let micros = cur.duration as u64 * 1_000_000 / CLOCK_RATE as u64;
            self.out.push_back(Digit { digit: cur.digit, duration: Duration::from_micros(micros) });
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Press {
    timestamp: u32,
    digit: char,
    duration: u16,
    last_seen: Instant,
}

/// One packet of an outgoing key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// When to send it, relative to the start of the press.
    pub offset: Duration,
    /// Set on the first packet only (start of event).
    pub marker: bool,
    /// Same for every packet of the press.
    pub timestamp: u32,
    pub payload: [u8; 4],
}

/// Yields the packets of one key press: an update every 50 ms, then three
/// identical end packets. Each update reports the duration up to the end of
/// the interval it stands for, capped at the press length.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    event: u8,
    volume: u8,
    timestamp: u32,
    /// Press length in timestamp units (max 65535 = 8.19 s; longer is clamped).
    total: u16,
    updates_sent: u32,
    ends_sent: u32,
}

impl DtmfSender {
    pub fn new(digit: char, start_timestamp: u32, duration: Duration) -> Result<Self, DtmfError> {
        let event = digit_to_event(digit).ok_or(DtmfError::InvalidDigit(digit))?;
        let units = duration.as_micros() * CLOCK_RATE as u128 / 1_000_000;
        Ok(DtmfSender {
            event,
            volume: DEFAULT_VOLUME,
            timestamp: start_timestamp,
            total: units.clamp(1, u16::MAX as u128) as u16,
            updates_sent: 0,
            ends_sent: 0,
        })
    }

    pub fn with_volume(mut self, volume: u8) -> Self {
        self.volume = volume.min(63);
        self
    }

    fn units_per_update() -> u32 {
        UPDATE_INTERVAL.as_millis() as u32 * CLOCK_RATE / 1000
    }

    fn packet(&self, offset: Duration, marker: bool, end: bool, duration: u16) -> DtmfPacket {
        let ev = TelephoneEvent { event: self.event, end, volume: self.volume, duration };
        DtmfPacket { offset, marker, timestamp: self.timestamp, payload: ev.to_bytes() }
    }
}

impl Iterator for DtmfSender {
    type Item = DtmfPacket;

    fn next(&mut self) -> Option<DtmfPacket> {
        let step = Self::units_per_update();
        let k = self.updates_sent;
        if k * step < self.total as u32 {
            self.updates_sent += 1;
            let dur = ((k + 1) * step).min(self.total as u32) as u16;
            return Some(self.packet(UPDATE_INTERVAL * k, k == 0, false, dur));
        }
        if self.ends_sent < END_REPEATS {
            let base = Duration::from_micros(self.total as u64 * 1_000_000 / CLOCK_RATE as u64);
            let offset = base + END_SPACING * self.ends_sent;
            self.ends_sent += 1;
            return Some(self.packet(offset, false, true, self.total));
        }
        None
    }
}

#[cfg(test)]
#[path = "dtmf_tests.rs"]
mod tests;
