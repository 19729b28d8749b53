//! Sans-IO RTP session for one call leg: G.711 audio + RFC 4733 DTMF.
//!
//! Inputs: `handle_datagram(now, from, bytes)`, `send_frame(pcm)`,
//! `send_dtmf(now, digit, duration)`. Outputs: `poll_event(now)` (played-out
//! frames every 20 ms, digits, RTP timeout) and `poll_transmit(now)` (packets
//! to send). `poll_timeout()` says when to call back. RTCP multiplexed on the
//! RTP port (RFC 5761) is recognised and ignored; no RTCP is generated.
//!
//! Where RTP may come from ([`SourcePolicy`]). By default only from the
//! transport address the peer signalled (SDP c=/m=, RFC 4566 §5.7, §5.14),
//! and we send only there: the SDP came through the authenticated signalling
//! path, an RTP packet's source address did not. Anyone who can reach our
//! port could otherwise listen to the call, talk into it and press keys as
//! the caller. A peer marked as behind NAT gets symmetric RTP (RFC 4961):
//! we send to the signalled address until the first valid packet arrives,
//! then latch to that packet's source and SSRC. The latch moves to another
//! address or SSRC only after the latched stream has been silent for
//! [`RELATCH_SILENCE`] (NAT rebinding, a restarted stream), so an injector
//! cannot take over a stream that is alive.
//!
//! SRTP ([`super::srtp`]) lives here too, when SDP negotiated it, between
//! the socket and everything else: a received datagram is unprotected
//! before it is parsed, so a packet that fails authentication is dropped
//! (counted as `srtp_failed`) before the source policy sees it and can
//! never latch; every packet we send leaves through one function that
//! protects it, so none can go out in the clear; and a re-INVITE's new keys
//! arrive where the rest of the renegotiation does (`update_negotiated`).
//! The call core above stays unaware of it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use rtp::header::Header;
use thiserror::Error;
use webrtc_util::marshal::{Marshal, MarshalSize, Unmarshal};

use super::dtmf::{Digit, DtmfError, DtmfReceiver, DtmfSender};
use super::g711::FRAME_SAMPLES;
use super::jitter::{JitterBuffer, JitterConfig, JitterStats, RtpMeta};
use super::sdp::Negotiated;
use super::srtp::{Protection, SrtpError};

/// NAT latching: how long the latched stream must have been silent before
/// another address or SSRC may take the latch. A live peer sends every
/// packetisation interval (20 ms) and comfort noise during silence, so two
/// seconds without a packet means its stream really stopped (its NAT mapping
/// changed, or it restarted the stream); an injector sending meanwhile is
/// dropped. Longer would leave a peer whose NAT rebound mute for longer.
pub const RELATCH_SILENCE: Duration = Duration::from_secs(2);
/// Gap between queued DTMF presses.
const INTER_DIGIT_GAP: Duration = Duration::from_millis(60);
const RTP_HEADER_LEN: usize = 12;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RtpError {
    #[error("not an RTP/RTCP packet (version {0})")]
    BadVersion(u8),
    #[error("malformed RTP packet")]
    Malformed,
    #[error(transparent)]
    Dtmf(#[from] DtmfError),
    #[error("telephone-event was not negotiated")]
    DtmfNotNegotiated,
    #[error(transparent)]
    Srtp(#[from] SrtpError),
}

/// Which sources a session accepts RTP (and RFC 4733 events) from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SourcePolicy {
    /// Only the address:port the peer signalled in SDP; we send only there.
    #[default]
    Signalled,
    /// The peer may be behind NAT: latch to the first source (and its SSRC),
    /// move only after [`RELATCH_SILENCE`] (symmetric RTP, RFC 4961).
    NatLatch,
}

/// Session settings beyond what SDP negotiated.
#[derive(Debug, Clone, Copy)]
pub struct RtpConfig {
    pub jitter: JitterConfig,
    /// Emit [`MediaEvent::Timeout`] after this long without valid RTP.
    pub rtp_timeout: Duration,
    pub source: SourcePolicy,
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig { jitter: JitterConfig::default(), rtp_timeout: Duration::from_secs(30), source: SourcePolicy::Signalled }
    }
}

/// Output of [`RtpSession::poll_event`].
// Frames are returned by value on purpose: boxing would allocate every 20 ms.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// 20 ms of received audio (real, concealed or silence), once per tick.
    Frame([i16; FRAME_SAMPLES]),
    Dtmf(Digit),
    /// No valid RTP for `rtp_timeout` (emitted once; re-armed by new RTP).
    Timeout,
}

/// Session counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpStats {
    pub jitter: JitterStats,
    pub packets_in: u64,
    pub rtcp_ignored: u64,
    pub malformed: u64,
    pub unknown_pt: u64,
    /// Dropped because they came from an address other than the signalled
    /// one (or, NAT latching, the latched one while it was live).
    pub wrong_source: u64,
    /// NAT latching: dropped because they came from the latched address
    /// with another SSRC while the latched stream was live.
    pub wrong_ssrc: u64,
    pub relatches: u64,
    /// SRTP: received packets dropped because they failed authentication,
    /// were replays or were not SRTP at all.
    pub srtp_failed: u64,
    /// SRTP: packets of ours not sent because they could not be protected.
    pub srtp_send_failed: u64,
    pub packets_out: u64,
    /// Audio frames not sent (direction, DTMF in progress, no address).
    pub frames_suppressed: u64,
}

/// One call leg's RTP state machine.
#[derive(Debug)]
pub struct RtpSession {
    neg: Negotiated,
    cfg: RtpConfig,
    jitter: JitterBuffer,
    dtmf_rx: DtmfReceiver,
    /// NAT latching only: the stream we follow.
    latched: Option<Latch>,
    last_rx: Instant,
    timed_out: bool,
    // Sender state.
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker_next: bool,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    dtmf_tx: Option<ActiveDtmf>,
    dtmf_queue: VecDeque<(char, Duration)>,
    /// Earliest time the next queued press may start.
    dtmf_next_start: Option<Instant>,
    srtp: Protection,
    stats: RtpStats,
}

impl RtpSession {
    /// SSRC, initial sequence number and timestamp are drawn from `rng`
    /// (RFC 3550 §5.1 wants them random); pass a seeded RNG in tests.
    pub fn new(now: Instant, neg: Negotiated, cfg: RtpConfig, rng: &mut impl RngCore) -> Self {
        RtpSession {
            neg,
            cfg,
            jitter: JitterBuffer::new(cfg.jitter),
            dtmf_rx: DtmfReceiver::default(),
            latched: None,
            last_rx: now,
            timed_out: false,
            ssrc: rng.next_u32(),
            seq: rng.next_u32() as u16,
            ts: rng.next_u32(),
            marker_next: true,
            out: VecDeque::new(),
            dtmf_tx: None,
            dtmf_queue: VecDeque::new(),
            dtmf_next_start: None,
            srtp: Protection::new(neg.srtp),
            stats: RtpStats::default(),
        }
    }

    /// Apply a renegotiation (re-INVITE). A new remote address is where RTP
    /// is expected from now on (RFC 3264 §8.3.1); NAT latching starts over.
    pub fn update_negotiated(&mut self, neg: Negotiated) {
        if neg.remote != self.neg.remote {
            self.latched = None;
        }
        if neg.direction.sends() && !self.neg.direction.sends() {
            self.marker_next = true;
        }
        if neg.srtp != self.neg.srtp {
            self.srtp.update(neg.srtp);
        }
        self.neg = neg;
    }

    pub fn negotiated(&self) -> &Negotiated {
        &self.neg
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Where outgoing RTP goes now (latched source, else the signalled address).
    pub fn remote(&self) -> SocketAddr {
        self.latched.map_or(self.neg.remote, |l| l.addr)
    }

    pub fn stats(&self) -> RtpStats {
        RtpStats { jitter: self.jitter.stats(), ..self.stats }
    }

    /// Feed one UDP datagram received on our RTP port.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Result<(), RtpError> {
        if bytes.len() < RTP_HEADER_LEN {
            self.stats.malformed += 1;
            return Err(RtpError::Malformed);
        }
        let version = bytes[0] >> 6;
        if version != 2 {
            // STUN/ZRTP/garbage: not ours.
            self.stats.malformed += 1;
            return Err(RtpError::BadVersion(version));
        }
        // RFC 5761 §4: second byte 192..=223 is an RTCP packet type.
        if (192..=223).contains(&bytes[1]) {
            self.stats.rtcp_ignored += 1;
            return Ok(());
        }
        let bytes = match self.srtp.unprotect(bytes) {
            Ok(b) => b,
            Err(e) => {
                self.stats.srtp_failed += 1;
                return Err(e.into());
            }
        };
        let Some((header, payload)) = parse_rtp(&bytes) else {
            self.stats.malformed += 1;
            return Err(RtpError::Malformed);
        };
        let pt = header.payload_type;
        let is_audio = pt == self.neg.codec_pt;
        let is_dtmf = Some(pt) == self.neg.dtmf_pt;
        if !is_audio && !is_dtmf {
            // Comfort noise (PT 13), un-negotiated codecs: ignored, but CN
            // from the latched stream shows it is alive (RFC 3389).
            self.stats.unknown_pt += 1;
            if let Some(l) = self.latched.as_mut().filter(|l| same_addr(l.addr, from) && l.ssrc == header.ssrc) {
                l.heard = now;
            }
            return Ok(());
        }
        if !self.accept_source(now, from, header.ssrc) {
            return Ok(());
        }
        self.stats.packets_in += 1;
        self.last_rx = now;
        self.timed_out = false;
        if is_dtmf {
            self.jitter.note_sequence(header.ssrc, header.sequence_number);
            self.dtmf_rx.handle_packet(now, header.timestamp, payload)?;
        } else {
            let meta = RtpMeta { seq: header.sequence_number, timestamp: header.timestamp, ssrc: header.ssrc, marker: header.marker };
            self.jitter.push(now, meta, self.neg.codec, payload);
        }
        Ok(())
    }

    /// Next event: digits first, then due audio frames, then timeout.
    pub fn poll_event(&mut self, now: Instant) -> Option<MediaEvent> {
        if let Some(d) = self.dtmf_rx.poll_digit(now) {
            return Some(MediaEvent::Dtmf(d));
        }
        if let Some(f) = self.jitter.poll_frame(now) {
            return Some(MediaEvent::Frame(f.pcm));
        }
        if !self.timed_out && self.neg.direction.receives() && now >= self.last_rx + self.cfg.rtp_timeout {
            self.timed_out = true;
            return Some(MediaEvent::Timeout);
        }
        None
    }

    /// Earliest time `poll_event`/`poll_transmit` has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = (!self.timed_out && self.neg.direction.receives()).then(|| self.last_rx + self.cfg.rtp_timeout);
        let dtmf_send = match &self.dtmf_tx {
            Some(a) => a.next.map(|p| a.start + p.offset),
            None if !self.dtmf_queue.is_empty() => self.dtmf_next_start,
            None => None,
        };
        [self.jitter.poll_timeout(), self.dtmf_rx.poll_timeout(), timeout, dtmf_send].into_iter().flatten().min()
    }

    /// Queue 20 ms of audio for sending; call every 20 ms (silence included)
    /// so the RTP timestamp tracks real time. Suppressed while a DTMF press is
    /// being sent or when we may not send, but the timestamp still advances.
    pub fn send_frame(&mut self, pcm: &[i16; FRAME_SAMPLES]) {
        let ts = self.ts;
        self.ts = self.ts.wrapping_add(FRAME_SAMPLES as u32);
        if self.dtmf_tx.is_some() || !self.can_send() {
            self.stats.frames_suppressed += 1;
            return;
        }
        let marker = std::mem::take(&mut self.marker_next);
        let mut buf = self.packet_buf(self.neg.codec_pt, marker, ts, FRAME_SAMPLES);
        let start = buf.len() - FRAME_SAMPLES;
        self.neg.codec.encode_into(pcm, &mut buf[start..]);
        self.push_out(buf);
    }

    /// Queue a key press; presses are sent one after another.
    pub fn send_dtmf(&mut self, now: Instant, digit: char, duration: Duration) -> Result<(), RtpError> {
        if self.neg.dtmf_pt.is_none() {
            return Err(RtpError::DtmfNotNegotiated);
        }
        // Validate now so the caller gets the error, not a silent drop later.
        DtmfSender::new(digit, 0, duration)?;
        self.dtmf_queue.push_back((digit, duration));
        if self.dtmf_tx.is_none() && self.dtmf_next_start.is_none_or(|t| t < now) {
            self.dtmf_next_start = Some(now);
        }
        Ok(())
    }

    /// Next datagram to send, releasing DTMF packets that are due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        self.pump_dtmf(now);
        self.out.pop_front()
    }

    fn can_send(&self) -> bool {
        self.neg.direction.sends() && !self.remote().ip().is_unspecified()
    }

    /// Source policy; returns whether a packet from `from` is accepted and
    /// counts the drop if not.
    fn accept_source(&mut self, now: Instant, from: SocketAddr, ssrc: u32) -> bool {
        if self.cfg.source == SourcePolicy::Signalled {
            let ok = same_addr(from, self.neg.remote);
            if !ok {
                self.stats.wrong_source += 1;
            }
            return ok;
        }
        match self.latched.as_mut() {
            Some(l) if same_addr(l.addr, from) && l.ssrc == ssrc => {
                l.heard = now;
                true
            }
            // The latched stream is live: whoever else sends is dropped.
            Some(l) if now < l.heard + RELATCH_SILENCE => {
                if same_addr(l.addr, from) {
                    self.stats.wrong_ssrc += 1;
                } else {
                    self.stats.wrong_source += 1;
                }
                false
            }
            previous => {
                if previous.is_some() {
                    self.stats.relatches += 1;
                }
                self.latched = Some(Latch { addr: from, ssrc, heard: now });
                true
            }
        }
    }

    fn pump_dtmf(&mut self, now: Instant) {
        loop {
            if self.dtmf_tx.is_none() {
                match (self.dtmf_next_start, self.dtmf_queue.front()) {
                    (Some(t), Some(_)) if t <= now => self.start_press(t),
                    _ => return,
                }
            }
            let Some(active) = self.dtmf_tx.as_mut() else {
                return;
            };
            match active.next {
                Some(p) if active.start + p.offset <= now => {
                    active.next = active.sender.next();
                    if self.can_send() {
                        let mut buf = self.packet_buf(self.neg.dtmf_pt.unwrap_or(101), p.marker, p.timestamp, 4);
                        let start = buf.len() - 4;
                        buf[start..].copy_from_slice(&p.payload);
                        self.push_out(buf);
                    }
                }
                Some(_) => return,
                None => {
                    // Press done: audio resumes as a new talkspurt after the event.
                    let end = active.end_ts;
                    if (end.wrapping_sub(self.ts) as i32) > 0 {
                        self.ts = end;
                    }
                    self.marker_next = true;
                    self.dtmf_tx = None;
                    self.dtmf_next_start = Some(now + INTER_DIGIT_GAP);
                }
            }
        }
    }

    fn start_press(&mut self, start: Instant) {
        let Some((digit, duration)) = self.dtmf_queue.pop_front() else {
            return;
        };
        // The event timestamp is the media time at which the tone begins.
        let Ok(mut sender) = DtmfSender::new(digit, self.ts, duration) else {
            return;
        };
        let units = (duration.as_millis() as u32).saturating_mul(8).min(u16::MAX as u32);
        let first = sender.next();
        self.dtmf_tx = Some(ActiveDtmf {
            sender,
            next: first,
            start,
            // Keep successive presses on distinct timestamps even without audio.
            end_ts: self.ts.wrapping_add(units.max(FRAME_SAMPLES as u32)),
        });
    }

    /// Allocate a datagram with the RTP header written, payload zeroed.
    fn packet_buf(&mut self, pt: u8, marker: bool, ts: u32, payload_len: usize) -> Vec<u8> {
        let header = Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
            ..Default::default()
        };
        self.seq = self.seq.wrapping_add(1);
        let hlen = header.marshal_size();
        let mut buf = vec![0u8; hlen + payload_len];
        // Cannot fail: the buffer is exactly marshal_size() long.
        let _ = header.marshal_to(&mut buf[..hlen]);
        buf
    }

    /// The one way out: SRTP-protected when negotiated, never in the clear then.
    fn push_out(&mut self, buf: Vec<u8>) {
        let Ok(buf) = self.srtp.protect(buf) else {
            self.stats.srtp_send_failed += 1;
            return;
        };
        self.stats.packets_out += 1;
        let to = self.remote();
        self.out.push_back((to, buf));
    }
}

/// NAT latching: the stream we follow and when we last heard it.
#[derive(Debug, Clone, Copy)]
struct Latch {
    addr: SocketAddr,
    ssrc: u32,
    heard: Instant,
}

/// Equal transport addresses, an IPv4-mapped IPv6 source (a dual-stack
/// socket) comparing equal to its IPv4 form.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    let canon = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canon(a.ip()) == canon(b.ip())
}

#[derive(Debug)]
struct ActiveDtmf {
    sender: DtmfSender,
    next: Option<super::dtmf::DtmfPacket>,
    start: Instant,
    end_ts: u32,
}

/// Length of the RTP header at the start of `bytes` (fixed part, CSRCs,
/// extension), `None` if it does not fit. Checks the extension's elements
/// too: webrtc-rs `rtp`'s RFC 8285 element walk reads past the block (and
/// panics) on bad lengths, so nothing is handed to it unchecked.
pub(super) fn rtp_header_len(bytes: &[u8]) -> Option<usize> {
    let first = *bytes.first()?;
    let cc = (first & 0x0F) as usize;
    let mut hlen = RTP_HEADER_LEN + 4 * cc;
    if first & 0x10 != 0 {
        let ext = bytes.get(hlen..hlen + 4)?;
        let profile = u16::from_be_bytes([ext[0], ext[1]]);
        let words = u16::from_be_bytes([ext[2], ext[3]]) as usize;
        let block = bytes.get(hlen + 4..hlen + 4 + 4 * words)?;
        if !extension_elements_fit(profile, block) {
            return None;
        }
        hlen += 4 + 4 * words;
    }
    (bytes.len() >= hlen).then_some(hlen)
}

/// Parse with webrtc-rs `rtp`, after checking the header's bounds ourselves.
fn parse_rtp(bytes: &[u8]) -> Option<(Header, &[u8])> {
    let hlen = rtp_header_len(bytes)?;
    let mut rd = &bytes[..hlen];
    let header = Header::unmarshal(&mut rd).ok()?;
    let mut payload = &bytes[hlen..];
    if header.padding {
        // Last byte counts padding octets including itself (RFC 3550 §5.1).
        let pad = *payload.last()? as usize;
        if pad == 0 || pad > payload.len() {
            return None;
        }
        payload = &payload[..payload.len() - pad];
    }
    Some((header, payload))
}

/// Mirror of the one-/two-byte element walk, checking every read stays in `block`.
fn extension_elements_fit(profile: u16, block: &[u8]) -> bool {
    let two_byte = match profile {
        0xBEDE => false,
        0x1000 => true,
        _ => return true, // opaque RFC 3550 extension: read as one blob
    };
    let mut i = 0;
    while i < block.len() {
        let b = block[i];
        i += 1;
        if b == 0 {
            continue; // padding
        }
        let len = if two_byte {
            let Some(l) = block.get(i) else { return false };
            i += 1;
            *l as usize
        } else {
            if b >> 4 == 0x0F {
                return true; // reserved id: the parser stops here
            }
            (b & 0x0F) as usize + 1
        };
        i += len;
        if i > block.len() {
            return false;
        }
    }
    true
}

#[cfg(test)]
#[path = "rtp_session_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "rtp_session_srtp_tests.rs"]
mod srtp_tests;
