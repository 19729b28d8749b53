//! Two sessions talking through a fake network with fake time (1 ms steps).

use std::net::SocketAddr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtp::packet::Packet;

use super::super::g711::Codec;
use super::super::sdp::Direction;
use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn neg(remote: SocketAddr) -> Negotiated {
    Negotiated { codec: Codec::Pcmu, codec_pt: 0, dtmf_pt: Some(101), remote, direction: Direction::SendRecv, ptime: 20 }
}

/// Frame k carries a constant, exactly representable, non-zero level.
fn tagged(k: usize) -> [i16; FRAME_SAMPLES] {
    [Codec::Pcmu.decode(0x90 + (k % 0x60) as u8); FRAME_SAMPLES]
}

fn tag_of(pcm: &[i16; FRAME_SAMPLES]) -> Option<usize> {
    let c = Codec::Pcmu.encode(pcm[0]);
    (pcm[0] != 0 && pcm.iter().all(|s| *s == pcm[0]) && (0x90..0xF0).contains(&c)).then(|| (c - 0x90) as usize)
}

struct Peer {
    s: RtpSession,
    /// Source address the network stamps on this peer's packets.
    addr: SocketAddr,
    events: Vec<(u64, MediaEvent)>,
    sending: bool,
    sent_frames: usize,
}

struct Sim {
    t0: Instant,
    ms: u64,
    a: Peer,
    b: Peer,
    wire: Vec<(u64, SocketAddr, SocketAddr, Vec<u8>)>,
    latency_ms: u64,
    sent_packets: usize,
    /// Per-packet fate by global index: None = drop, Some(extra delay).
    fate: Box<dyn FnMut(usize) -> Option<u64>>,
}

impl Sim {
    /// A sits behind NAT: signals `a_sig`, really sends from `a_real`.
    fn new(a_sig: &str, a_real: &str) -> Sim {
        let t0 = Instant::now();
        let b_addr = addr("192.0.2.20:30000");
        let mut rng = StdRng::seed_from_u64(7);
        let cfg = RtpConfig::default();
        let a = RtpSession::new(t0, neg(b_addr), cfg, &mut rng);
        let b = RtpSession::new(t0, neg(addr(a_sig)), cfg, &mut rng);
        let peer = |s, addr| Peer { s, addr, events: Vec::new(), sending: true, sent_frames: 0 };
        Sim {
            t0,
            ms: 0,
            a: peer(a, addr(a_real)),
            b: peer(b, b_addr),
            wire: Vec::new(),
            latency_ms: 30,
            sent_packets: 0,
            fate: Box::new(|_| Some(0)),
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.ms)
    }

    fn run_until(&mut self, end_ms: u64) {
        while self.ms <= end_ms {
            let now = self.now();
            for p in [&mut self.a, &mut self.b] {
                if self.ms.is_multiple_of(20) && p.sending {
                    p.s.send_frame(&tagged(p.sent_frames));
                    p.sent_frames += 1;
                }
                while let Some((to, bytes)) = p.s.poll_transmit(now) {
                    if let Some(extra) = (self.fate)(self.sent_packets) {
                        self.wire.push((self.ms + self.latency_ms + extra, p.addr, to, bytes));
                    }
                    self.sent_packets += 1;
                }
            }
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= self.ms);
            self.wire = rest;
            for (_, from, to, bytes) in due {
                // Packets to an address nobody owns vanish (e.g. a private IP behind NAT).
                for p in [&mut self.a, &mut self.b] {
                    if p.addr == to {
                        let _ = p.s.handle_datagram(now, from, &bytes);
                    }
                }
            }
            for p in [&mut self.a, &mut self.b] {
                while let Some(e) = p.s.poll_event(now) {
                    p.events.push((self.ms, e));
                }
            }
            self.ms += 1;
        }
    }
}

fn tags(events: &[(u64, MediaEvent)]) -> Vec<usize> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            MediaEvent::Frame(f) => tag_of(f),
            _ => None,
        })
        .collect()
}

fn digits(events: &[(u64, MediaEvent)]) -> Vec<Digit> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            MediaEvent::Dtmf(d) => Some(*d),
            _ => None,
        })
        .collect()
}

#[test]
fn audio_passes_both_ways() {
    let mut sim = Sim::new("198.51.100.1:5000", "198.51.100.1:5000");
    sim.run_until(1000);
    let got = tags(&sim.b.events);
    // Everything sent long enough before the end arrives, in order.
    assert!(got.len() >= 44, "{}", got.len());
    assert_eq!(got, (0..got.len()).collect::<Vec<_>>());
    assert_eq!(tags(&sim.a.events)[..40], (0..40).collect::<Vec<_>>()[..]);
    // First frame plays at latency (30) + target delay (60).
    let first = sim.b.events.iter().find(|(_, e)| matches!(e, MediaEvent::Frame(_))).unwrap();
    assert_eq!(first.0, 90);
    let s = sim.b.s.stats();
    assert_eq!((s.jitter.lost, s.jitter.late, s.malformed, s.wrong_source), (0, 0, 0, 0));
}

#[test]
fn dtmf_passes_and_suppresses_audio() {
    let mut sim = Sim::new("198.51.100.1:5000", "198.51.100.1:5000");
    sim.run_until(200);
    let now = sim.now();
    sim.a.s.send_dtmf(now, '7', Duration::from_millis(120)).unwrap();
    sim.a.s.send_dtmf(now, '#', Duration::from_millis(80)).unwrap();
    assert!(sim.a.s.send_dtmf(now, 'x', Duration::from_millis(80)).is_err());
    sim.run_until(1200);
    let d = digits(&sim.b.events);
    assert_eq!(d, [Digit { digit: '7', duration: Duration::from_millis(120) }, Digit { digit: '#', duration: Duration::from_millis(80) },]);
    let a = sim.a.s.stats();
    assert!(a.frames_suppressed >= 10, "{a:?}");
    // DTMF shares the sequence space: no false loss at the receiver.
    assert_eq!(sim.b.s.stats().jitter.lost, 0);
    // Audio resumes after the digits.
    assert!(tags(&sim.b.events).len() > 30);
}

#[test]
fn dtmf_not_negotiated_is_error() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut n = neg(addr("192.0.2.1:4000"));
    n.dtmf_pt = None;
    let now = Instant::now();
    let mut s = RtpSession::new(now, n, RtpConfig::default(), &mut rng);
    assert_eq!(s.send_dtmf(now, '1', Duration::from_millis(100)), Err(RtpError::DtmfNotNegotiated));
}

#[test]
fn reorder_and_loss_are_handled() {
    let mut sim = Sim::new("198.51.100.1:5000", "198.51.100.1:5000");
    // Global packet order alternates A,B per tick: even = A's packets.
    sim.fate = Box::new(|i| match i {
        20 => None,      // A's frame 10 lost
        40 => Some(35),  // A's frame 20 arrives after frame 21
        60 => Some(200), // A's frame 30 arrives after its playout time
        _ => Some(0),
    });
    sim.run_until(1000);
    let got = tags(&sim.b.events);
    let want: Vec<_> = (0..got.len() + 2).filter(|k| *k != 10 && *k != 30).take(got.len()).collect();
    assert_eq!(got, want);
    let s = sim.b.s.stats().jitter;
    assert_eq!((s.lost, s.late), (1, 1));
    assert!(s.concealed >= 2);
}

#[test]
fn symmetric_rtp_latches_and_relatches() {
    // A signals a private address that is unreachable; its NAT maps it elsewhere.
    let mut sim = Sim::new("10.0.0.1:4000", "198.51.100.1:5000");
    assert_eq!(sim.b.s.remote(), addr("10.0.0.1:4000"));
    sim.run_until(400);
    assert_eq!(sim.b.s.remote(), addr("198.51.100.1:5000"));
    // B's audio reaches A only thanks to latching.
    assert!(tags(&sim.a.events).len() > 10);
    // A single spoofed packet from elsewhere does not move the latch.
    let now = sim.now();
    let mut spoof = sim.a.s.packet_buf(0, false, 1, 160);
    spoof.truncate(12 + 160);
    sim.b.s.handle_datagram(now, addr("203.0.113.66:9999"), &spoof).unwrap();
    assert_eq!(sim.b.s.stats().wrong_source, 1);
    assert_eq!(sim.b.s.remote(), addr("198.51.100.1:5000"));
    // NAT rebinding: A's packets now come from a new port; the latch follows.
    sim.a.addr = addr("198.51.100.1:6000");
    sim.run_until(1000);
    assert_eq!(sim.b.s.remote(), addr("198.51.100.1:6000"));
    assert_eq!(sim.b.s.stats().relatches, 1);
    let recent: Vec<_> = sim.a.events.iter().filter(|(t, _)| *t > 800).cloned().collect();
    assert!(tags(&recent).len() > 5);
}

#[test]
fn timeout_fires_once_and_rearms() {
    let mut sim = Sim::new("198.51.100.1:5000", "198.51.100.1:5000");
    sim.a.sending = false;
    sim.b.s.cfg.rtp_timeout = Duration::from_millis(500);
    sim.run_until(100);
    assert_eq!(sim.b.s.poll_timeout(), Some(sim.t0 + Duration::from_millis(500)));
    sim.run_until(1200);
    let timeouts = |p: &Peer| p.events.iter().filter(|(_, e)| *e == MediaEvent::Timeout).count();
    assert_eq!(timeouts(&sim.b), 1);
    assert_eq!(sim.b.events.iter().find(|(_, e)| *e == MediaEvent::Timeout).unwrap().0, 500);
    sim.a.sending = true;
    sim.run_until(1400);
    assert!(sim.b.s.poll_timeout().unwrap() > sim.now());
}

#[test]
fn outgoing_packets_are_well_formed() {
    let mut rng = StdRng::seed_from_u64(3);
    let now = Instant::now();
    let mut s = RtpSession::new(now, neg(addr("192.0.2.1:4000")), RtpConfig::default(), &mut rng);
    for k in 0..3 {
        s.send_frame(&tagged(k));
    }
    let pkts: Vec<_> = std::iter::from_fn(|| s.poll_transmit(now)).collect();
    assert_eq!(pkts.len(), 3);
    let parsed: Vec<Packet> = pkts.iter().map(|(_, b)| Packet::unmarshal(&mut &b[..]).unwrap()).collect();
    for (k, p) in parsed.iter().enumerate() {
        let h = &p.header;
        assert_eq!((h.version, h.payload_type, h.ssrc), (2, 0, s.ssrc()));
        assert_eq!(h.marker, k == 0);
        assert_eq!(h.sequence_number, parsed[0].header.sequence_number.wrapping_add(k as u16));
        assert_eq!(h.timestamp, parsed[0].header.timestamp.wrapping_add(160 * k as u32));
        assert_eq!(p.payload.len(), 160);
        assert_eq!(p.payload[0], 0x90 + k as u8);
    }
    assert!(pkts.iter().all(|(to, _)| *to == addr("192.0.2.1:4000")));
    // Inactive: nothing goes out, timestamp still advances.
    let mut n = neg(addr("192.0.2.1:4000"));
    n.direction = Direction::Inactive;
    s.update_negotiated(n);
    s.send_frame(&tagged(0));
    assert!(s.poll_transmit(now).is_none());
    // Back to sendrecv: new talkspurt with marker, timestamp skipped ahead.
    s.update_negotiated(neg(addr("192.0.2.1:4000")));
    s.send_frame(&tagged(0));
    let p = Packet::unmarshal(&mut &s.poll_transmit(now).unwrap().1[..]).unwrap();
    assert!(p.header.marker);
    assert_eq!(p.header.timestamp, parsed[0].header.timestamp.wrapping_add(160 * 4));
}

#[test]
fn rtcp_garbage_and_unknown_pt_are_ignored() {
    let mut rng = StdRng::seed_from_u64(5);
    let now = Instant::now();
    let from = addr("192.0.2.1:4000");
    let mut s = RtpSession::new(now, neg(from), RtpConfig::default(), &mut rng);
    // RTCP receiver report (PT 201) on the RTP port.
    let rr = [0x81, 201, 0, 7, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(s.handle_datagram(now, from, &rr).is_ok());
    // STUN binding request, short junk.
    assert_eq!(s.handle_datagram(now, from, &[0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0]), Err(RtpError::BadVersion(0)));
    assert_eq!(s.handle_datagram(now, from, &[0x80, 0]), Err(RtpError::Malformed));
    // Comfort noise (PT 13) is ignored.
    let mut cn = s.packet_buf(13, false, 0, 1);
    cn[12] = 40;
    assert!(s.handle_datagram(now, from, &cn).is_ok());
    // One-byte header extension whose element overruns the block (would panic in rtp).
    let bad_ext = [0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xBE, 0xDE, 0, 1, 0x1F, 0, 0, 0];
    assert_eq!(s.handle_datagram(now, from, &bad_ext), Err(RtpError::Malformed));
    // Bad padding length.
    let mut pad = s.packet_buf(0, false, 0, 4);
    pad[0] |= 0x20;
    pad[15] = 9;
    assert_eq!(s.handle_datagram(now, from, &pad), Err(RtpError::Malformed));
    let st = s.stats();
    assert_eq!((st.rtcp_ignored, st.unknown_pt, st.malformed, st.packets_in), (1, 1, 4, 0));
}

#[test]
fn random_datagrams_never_panic() {
    let mut rng = StdRng::seed_from_u64(99);
    let now = Instant::now();
    let from = addr("192.0.2.1:4000");
    let mut s = RtpSession::new(now, neg(from), RtpConfig::default(), &mut rng);
    let mut buf = [0u8; 64];
    for i in 0..200_000u32 {
        let len = rng.gen_range(0..buf.len());
        rng.fill(&mut buf[..len]);
        // Bias toward plausible headers: version 2, extension bit, our PTs.
        if len > 1 && i % 2 == 0 {
            buf[0] = 0x80 | (buf[0] & 0x3F);
            buf[1] = [0, 101, 0x80, 0xE5][(i / 2 % 4) as usize] | (buf[1] & 0x80);
        }
        let _ = s.handle_datagram(now, from, &buf[..len]);
        while s.poll_event(now + Duration::from_millis(i as u64 / 10)).is_some() {}
    }
}
