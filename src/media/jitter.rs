//! Fixed-delay jitter buffer for 8 kHz G.711 audio in 20 ms frames.
//!
//! Packets are placed by RTP timestamp at sample precision, so any
//! packetisation works (10, 20, 30 ms…: a 30 ms packet fills one frame and
//! half of the next); sequence numbers feed RFC 3550-style loss statistics. Playout is
//! self-clocked: the first packet starts a 20 ms tick `target_delay` after its
//! arrival, `poll_timeout()` returns the next tick and `poll_frame(now)` emits
//! one frame per elapsed tick: real audio, a faded repeat of the last frame
//! for up to `max_concealed` missing frames, then silence.
//!
//! The playout mapping is re-anchored (tick phase kept, already-buffered
//! frames still played first) on an SSRC change, on
//! a timestamp jump outside the buffer window, and at a talkspurt start
//! (marker bit) when the buffer is empty, which also absorbs clock drift.

use std::time::{Duration, Instant};

use super::g711::{Codec, FRAME_SAMPLES};

/// Duration of one frame.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
const FRAME_TS: i64 = FRAME_SAMPLES as i64;
/// A packet this many frames behind playout is a timestamp jump, not "late".
const RESYNC_BEHIND_FRAMES: i64 = 50;
/// Largest payload accepted (samples): 256 ms, far above any real ptime.
const MAX_PACKET_SAMPLES: usize = 2048;

/// Jitter buffer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Delay between the first packet's arrival and its playout.
    pub target_delay: Duration,
    /// Frames of buffer space; packets further ahead trigger a resync.
    pub capacity_frames: usize,
    /// Missing frames concealed by fading repetition before silence.
    pub max_concealed: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig { target_delay: Duration::from_millis(60), capacity_frames: 50, max_concealed: 3 }
    }
}

/// RTP header fields the buffer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMeta {
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Buffered,
    /// Buffered after re-anchoring playout (new SSRC / timestamp jump).
    Resynced,
    /// Arrived after its playout time; dropped.
    Late,
    Duplicate,
    /// Empty payload or not a multiple of 160 samples; dropped.
    Invalid,
}

/// Where a played-out frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Audio,
    Concealed,
    Silence,
}

/// One 20 ms frame of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayoutFrame {
    pub kind: FrameKind,
    pub pcm: [i16; FRAME_SAMPLES],
}

/// Counters; `lost` is derived from sequence numbers (never-arrived packets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub late: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub concealed: u64,
    pub silence: u64,
    pub played: u64,
    pub resyncs: u64,
    /// Frames skipped because the buffer grew far beyond the target (drift).
    pub overflow_dropped: u64,
}

/// The jitter buffer; see module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    slots: Box<[Slot]>,
    stream: Option<Stream>,
    /// Frame index played at the next tick, and when that tick is due.
    next_idx: i64,
    next_deadline: Option<Instant>,
    /// Highest frame index currently buffered.
    max_idx: i64,
    /// Bit i set: frame `next_idx - 1 - i` was played from a real packet.
    played_mask: u64,
    last_audio: [i16; FRAME_SAMPLES],
    have_audio: bool,
    concealed_run: u32,
    seq: SeqTracker,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        let cap = cfg.capacity_frames.clamp(4, 1024);
        let cfg = JitterConfig { capacity_frames: cap, ..cfg };
        JitterBuffer {
            cfg,
            slots: vec![Slot::EMPTY; cap].into_boxed_slice(),
            stream: None,
            next_idx: 0,
            next_deadline: None,
            max_idx: -1,
            played_mask: 0,
            last_audio: [0; FRAME_SAMPLES],
            have_audio: false,
            concealed_run: 0,
            seq: SeqTracker::default(),
            stats: JitterStats::default(),
        }
    }

    /// Insert a packet's G.711 payload (decoded only if it will be played).
    pub fn push(&mut self, now: Instant, meta: RtpMeta, codec: Codec, payload: &[u8]) -> PushOutcome {
        if payload.is_empty() || payload.len() > MAX_PACKET_SAMPLES {
            self.stats.invalid += 1;
            return PushOutcome::Invalid;
        }
        let mut resynced = false;
        let mut offset = 0;
        let idx = match self.stream {
            Some(s) if s.ssrc == meta.ssrc => {
                let (idx, off) = s.locate(meta.timestamp);
                let behind = self.next_idx - idx;
                let ahead = idx - self.next_idx;
                if behind > RESYNC_BEHIND_FRAMES || ahead >= self.cap() as i64 {
                    // Timestamp discontinuity: the sender restarted its clock.
                    resynced = true;
                    self.anchor(now, meta.ssrc, meta.timestamp)
                } else if meta.marker && self.max_idx < self.next_idx && !self.was_played(idx) {
                    // New talkspurt into an empty buffer: restore the target delay.
                    self.anchor(now, meta.ssrc, meta.timestamp)
                } else {
                    offset = off;
                    idx
                }
            }
            Some(_) => {
                resynced = true;
                self.seq.restart();
                self.anchor(now, meta.ssrc, meta.timestamp)
            }
            None => self.anchor(now, meta.ssrc, meta.timestamp),
        };
        if resynced {
            self.stats.resyncs += 1;
        }
        let outcome = self.store(idx, offset, meta, codec, payload);
        if outcome != PushOutcome::Duplicate {
            self.seq.note(meta.seq);
        }
        match outcome {
            PushOutcome::Buffered if resynced => PushOutcome::Resynced,
            o => o,
        }
    }

    /// Count a non-audio packet of the same stream (e.g. telephone-event,
    /// which shares the SSRC and sequence space) so it is not seen as loss.
    pub fn note_sequence(&mut self, ssrc: u32, seq: u16) {
        if self.stream.is_some_and(|s| s.ssrc == ssrc) {
            self.seq.note(seq);
        }
    }

    /// When the next frame is due; `None` before the first packet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// Emit the frame for the current tick if it is due.
    pub fn poll_frame(&mut self, now: Instant) -> Option<PlayoutFrame> {
        let due = self.next_deadline?;
        if now < due {
            return None;
        }
        self.trim_overflow();
        let slot = &mut self.slots[slot_index(self.next_idx, self.slots.len())];
        let frame = if slot.filled && slot.idx == self.next_idx {
            slot.filled = false;
            self.last_audio = slot.pcm;
            self.have_audio = true;
            self.concealed_run = 0;
            self.played_mask = (self.played_mask << 1) | 1;
            self.stats.played += 1;
            PlayoutFrame { kind: FrameKind::Audio, pcm: self.last_audio }
        } else {
            self.played_mask <<= 1;
            self.fill_gap()
        };
        self.next_idx += 1;
        self.next_deadline = Some(due + FRAME_DURATION);
        Some(frame)
    }

    pub fn stats(&self) -> JitterStats {
        JitterStats { lost: self.seq.lost(), ..self.stats }
    }

    /// Frames currently waiting for playout.
    pub fn buffered_frames(&self) -> usize {
        self.slots.iter().filter(|s| s.filled && s.idx >= self.next_idx).count()
    }

    fn cap(&self) -> usize {
        self.slots.len()
    }

    /// Map `ts` so it plays at the first tick at least `target_delay` from now,
    /// keeping the existing tick phase (the caller's timer keeps running) and
    /// never before frames still buffered from the previous mapping.
    fn anchor(&mut self, now: Instant, ssrc: u32, ts: u32) -> i64 {
        let want = now + self.cfg.target_delay;
        let idx = match self.next_deadline {
            None => {
                self.next_deadline = Some(want);
                self.next_idx
            }
            Some(due) if want <= due => self.next_idx,
            Some(due) => {
                let gap = (want - due).as_nanos();
                let step = FRAME_DURATION.as_nanos();
                self.next_idx + gap.div_ceil(step) as i64
            }
        };
        let idx = idx.max(self.max_idx + 1);
        self.stream = Some(Stream { ssrc, base_ts: ts, base_idx: idx });
        idx
    }

    /// Write a packet's samples from frame `idx`, sample `offset` onwards.
    fn store(&mut self, idx: i64, offset: usize, meta: RtpMeta, codec: Codec, payload: &[u8]) -> PushOutcome {
        let mut pcm = [0i16; MAX_PACKET_SAMPLES];
        let len = codec.decode_into(payload, &mut pcm);
        let mut outcome = None;
        let mut j = 0;
        while j < len {
            let abs = offset + j;
            let fidx = idx + (abs / FRAME_SAMPLES) as i64;
            let pos = abs % FRAME_SAMPLES;
            let n = (FRAME_SAMPLES - pos).min(len - j);
            let this = if fidx < self.next_idx {
                if self.was_played(fidx) {
                    PushOutcome::Duplicate
                } else {
                    PushOutcome::Late
                }
            } else if fidx - self.next_idx >= self.cap() as i64 {
                // Tail of an oversized packet beyond the window: drop silently.
                j += n;
                continue;
            } else {
                let cap = self.cap();
                let slot = &mut self.slots[slot_index(fidx, cap)];
                if !(slot.filled && slot.idx == fidx) {
                    *slot = Slot { idx: fidx, filled: true, ..Slot::EMPTY };
                }
                if slot.covers(pos, n) {
                    PushOutcome::Duplicate
                } else {
                    slot.pcm[pos..pos + n].copy_from_slice(&pcm[j..j + n]);
                    slot.cover(pos, n);
                    self.max_idx = self.max_idx.max(fidx);
                    PushOutcome::Buffered
                }
            };
            // A packet counts by its first frame.
            outcome.get_or_insert(this);
            j += n;
        }
        let outcome = outcome.unwrap_or(PushOutcome::Late);
        match outcome {
            PushOutcome::Duplicate => self.stats.duplicates += 1,
            PushOutcome::Late => self.stats.late += 1,
            _ => {
                self.stats.received += 1;
                // Rebase so the wrapping i32 timestamp difference stays small.
                if let Some(s) = self.stream.as_mut() {
                    s.base_ts = meta.timestamp.wrapping_sub(offset as u32);
                    s.base_idx = idx;
                }
            }
        }
        outcome
    }

    fn fill_gap(&mut self) -> PlayoutFrame {
        let n = self.cfg.max_concealed;
        if self.have_audio && self.concealed_run < n {
            // Linear fade across the concealment run, continuous between frames.
            let run = self.concealed_run as i64;
            let total = (n as i64) * FRAME_TS;
            let mut pcm = [0i16; FRAME_SAMPLES];
            for (i, (o, s)) in pcm.iter_mut().zip(self.last_audio.iter()).enumerate() {
                let pos = run * FRAME_TS + i as i64;
                *o = ((*s as i64) * (total - pos) / total) as i16;
            }
            self.concealed_run += 1;
            self.stats.concealed += 1;
            PlayoutFrame { kind: FrameKind::Concealed, pcm }
        } else {
            self.have_audio = false;
            self.stats.silence += 1;
            PlayoutFrame { kind: FrameKind::Silence, pcm: [0; FRAME_SAMPLES] }
        }
    }

    /// Drop the oldest frame when depth exceeds twice the target plus slack:
    /// the sender's clock is faster than ours, or a burst followed a stall.
    fn trim_overflow(&mut self) {
        let target = self.cfg.target_delay.as_millis() as i64 / 20;
        if self.max_idx - self.next_idx + 1 > 2 * target + 4 {
            let cap = self.cap();
            let slot = &mut self.slots[slot_index(self.next_idx, cap)];
            if slot.filled && slot.idx == self.next_idx {
                slot.filled = false;
            }
            self.next_idx += 1;
            self.played_mask <<= 1;
            self.stats.overflow_dropped += 1;
        }
    }

    /// Whether `idx` was already played from a real packet (recent history only).
    fn was_played(&self, idx: i64) -> bool {
        let age = self.next_idx - 1 - idx;
        (0..64).contains(&age) && self.played_mask & (1 << age) != 0
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    idx: i64,
    filled: bool,
    pcm: [i16; FRAME_SAMPLES],
    /// Which samples have been written (bit per sample), for duplicates.
    covered: [u64; 3],
}

impl Slot {
    const EMPTY: Slot = Slot { idx: 0, filled: false, pcm: [0; FRAME_SAMPLES], covered: [0; 3] };

    fn covers(&self, pos: usize, n: usize) -> bool {
        (pos..pos + n).all(|i| self.covered[i / 64] & (1 << (i % 64)) != 0)
    }

    fn cover(&mut self, pos: usize, n: usize) {
        for i in pos..pos + n {
            self.covered[i / 64] |= 1 << (i % 64);
        }
    }
}

/// Timestamp → frame-index mapping for the current source.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    base_ts: u32,
    base_idx: i64,
}

impl Stream {
    /// Frame index and sample offset of a timestamp (wrapping difference
    /// handles the 32-bit timestamp wrap).
    fn locate(&self, ts: u32) -> (i64, usize) {
        let diff = ts.wrapping_sub(self.base_ts) as i32 as i64;
        (self.base_idx + diff.div_euclid(FRAME_TS), diff.rem_euclid(FRAME_TS) as usize)
    }
}

fn slot_index(idx: i64, cap: usize) -> usize {
    idx.rem_euclid(cap as i64) as usize
}

/// RFC 3550 A.1/A.3 style extended sequence tracking for loss counting.
#[derive(Debug, Clone, Copy, Default)]
struct SeqTracker {
    started: bool,
    base_ext: i64,
    max_ext: i64,
    received: i64,
    /// Expected/received from previous sources (before an SSRC change).
    prior_expected: i64,
    prior_received: i64,
}

impl SeqTracker {
    fn note(&mut self, seq: u16) {
        if !self.started {
            self.started = true;
            self.base_ext = seq as i64;
            self.max_ext = seq as i64;
        } else {
            // Signed 16-bit distance from the highest seen seq handles wrap-around.
            let delta = seq.wrapping_sub(self.max_ext as u16) as i16 as i64;
            let ext = self.max_ext + delta;
            self.max_ext = self.max_ext.max(ext);
            self.base_ext = self.base_ext.min(ext);
        }
        self.received += 1;
    }

    fn restart(&mut self) {
        if self.started {
            self.prior_expected += self.max_ext - self.base_ext + 1;
            self.prior_received += self.received;
        }
        self.started = false;
        self.received = 0;
    }

    fn lost(&self) -> u64 {
        let cur = if self.started { self.max_ext - self.base_ext + 1 - self.received } else { 0 };
        (self.prior_expected - self.prior_received + cur).max(0) as u64
    }
}

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
