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
    Negotiated { codec: Codec::Pcmu, codec_pt: 0, dtmf_pt: Some(101), remote, direction: Direction::SendRecv, ptime: 20, srtp: None }
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

/// A third party who knows B's RTP port and sends to it every 20 ms.
struct Intruder {
    addr: SocketAddr,
    ssrc: u32,
    seq: u16,
    /// Sends a key press ('1') instead of audio.
    dtmf: bool,
}

struct Sim {
    t0: Instant,
    ms: u64,
    a: Peer,
    b: Peer,
    intruder: Option<Intruder>,
    wire: Vec<(u64, SocketAddr, SocketAddr, Vec<u8>)>,
    latency_ms: u64,
    sent_packets: usize,
    /// Per-packet fate by global index: None = drop, Some(extra delay).
    fate: Box<dyn FnMut(usize) -> Option<u64>>,
}

impl Sim {
    /// B accepts only the signalled address (the default policy).
    fn new(a_sig: &str, a_real: &str) -> Sim {
        Sim::with_policy(a_sig, a_real, SourcePolicy::Signalled)
    }

    /// A may sit behind NAT: signals `a_sig`, really sends from `a_real`;
    /// B applies `policy` to what it receives.
    fn with_policy(a_sig: &str, a_real: &str, policy: SourcePolicy) -> Sim {
        let t0 = Instant::now();
        let b_addr = addr("192.0.2.20:30000");
        let mut rng = StdRng::seed_from_u64(7);
        let cfg = RtpConfig::default();
        let a = RtpSession::new(t0, neg(b_addr), cfg, &mut rng);
        let b = RtpSession::new(t0, neg(addr(a_sig)), RtpConfig { source: policy, ..cfg }, &mut rng);
        let peer = |s, addr| Peer { s, addr, events: Vec::new(), sending: true, sent_frames: 0 };
        Sim {
            t0,
            ms: 0,
            a: peer(a, addr(a_real)),
            b: peer(b, b_addr),
            intruder: None,
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
            if let Some(i) = self.intruder.as_mut().filter(|_| self.ms.is_multiple_of(20)) {
                i.seq = i.seq.wrapping_add(1);
                let ts = i.seq as u32 * 160;
                let bytes = if i.dtmf {
                    // Key '1', a new press every 10 packets, each ended at once.
                    let ev = [1, 0x80 | 10, 0x03, 0x20];
                    rtp(101, i.seq, ts / 1600 * 1600, i.ssrc, &ev)
                } else {
                    rtp(0, i.seq, ts, i.ssrc, &[INTRUDER_CODE; 160])
                };
                self.wire.push((self.ms, i.addr, self.b.addr, bytes));
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

/// µ-law code of the intruder's audio; A's tagged frames never use it.
const INTRUDER_CODE: u8 = 0x10;

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend(seq.to_be_bytes());
    p.extend(ts.to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn intruder_frames(events: &[(u64, MediaEvent)]) -> usize {
    let level = Codec::Pcmu.decode(INTRUDER_CODE);
    events.iter().filter(|(_, e)| matches!(e, MediaEvent::Frame(f) if f.iter().all(|s| *s == level))).count()
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
fn rtp_from_a_third_address_is_neither_delivered_nor_latched() {
    let a = "198.51.100.1:5000";
    let mut sim = Sim::new(a, a);
    // The intruder starts before the caller's first packet, and keeps going.
    sim.a.sending = false;
    sim.intruder = Some(Intruder { addr: addr("203.0.113.66:5000"), ssrc: 0x1234, seq: 0, dtmf: false });
    sim.run_until(200);
    sim.a.sending = true;
    sim.run_until(3000);
    assert_eq!(intruder_frames(&sim.b.events), 0, "the intruder's audio must not be played out");
    assert_eq!(sim.b.s.remote(), addr(a), "we keep sending to the signalled address only");
    assert!(tags(&sim.b.events).len() > 100, "the caller is still heard");
    let s = sim.b.s.stats();
    assert!(s.wrong_source >= 149, "{s:?}");
    assert_eq!(s.relatches, 0);
    // Its key presses are not the caller's either.
    sim.intruder.as_mut().unwrap().dtmf = true;
    sim.run_until(4000);
    assert!(digits(&sim.b.events).is_empty());
}

#[test]
fn only_the_signalled_port_is_accepted_and_a_reinvite_moves_it() {
    let mut rng = StdRng::seed_from_u64(11);
    let t0 = Instant::now();
    let sig = addr("198.51.100.1:5000");
    let mut s = RtpSession::new(t0, neg(sig), RtpConfig::default(), &mut rng);
    let pkt = |seq| rtp(0, seq, seq as u32 * 160, 42, &[0x90; 160]);
    // Same IP, another port: still a stranger.
    s.handle_datagram(t0, addr("198.51.100.1:5002"), &pkt(1)).unwrap();
    assert_eq!((s.stats().packets_in, s.stats().wrong_source), (0, 1));
    s.handle_datagram(t0, sig, &pkt(2)).unwrap();
    // A dual-stack socket sees the same peer as an IPv4-mapped address.
    s.handle_datagram(t0, addr("[::ffff:198.51.100.1]:5000"), &pkt(3)).unwrap();
    assert_eq!(s.stats().packets_in, 2);
    // re-INVITE to a new address: the old one becomes a stranger.
    let moved = addr("198.51.100.9:7000");
    s.update_negotiated(neg(moved));
    assert_eq!(s.remote(), moved);
    s.handle_datagram(t0, sig, &pkt(4)).unwrap();
    s.handle_datagram(t0, moved, &pkt(5)).unwrap();
    assert_eq!((s.stats().packets_in, s.stats().wrong_source), (3, 2));
}

#[test]
fn nat_latching_follows_the_real_source_and_ignores_an_intruder_while_it_talks() {
    // A signals a private address that is unreachable; its NAT maps it elsewhere.
    let mut sim = Sim::with_policy("10.0.0.1:4000", "198.51.100.1:5000", SourcePolicy::NatLatch);
    assert_eq!(sim.b.s.remote(), addr("10.0.0.1:4000"));
    sim.run_until(400);
    assert_eq!(sim.b.s.remote(), addr("198.51.100.1:5000"));
    // B's audio reaches A only thanks to latching.
    assert!(tags(&sim.a.events).len() > 10);
    // An intruder as loud as A, for longer than the silence needed to relatch.
    sim.intruder = Some(Intruder { addr: addr("203.0.113.66:9999"), ssrc: 0x1234, seq: 0, dtmf: false });
    sim.run_until(400 + 3 * RELATCH_SILENCE.as_millis() as u64);
    assert_eq!(sim.b.s.remote(), addr("198.51.100.1:5000"));
    assert_eq!(intruder_frames(&sim.b.events), 0);
    let s = sim.b.s.stats();
    assert_eq!(s.relatches, 0);
    assert!(s.wrong_source >= 290, "{s:?}");
}

#[test]
fn nat_latching_moves_only_after_the_latched_source_falls_silent() {
    let mut sim = Sim::with_policy("10.0.0.1:4000", "198.51.100.1:5000", SourcePolicy::NatLatch);
    sim.run_until(400);
    // NAT rebinding: A's packets now come from a new port. The old mapping
    // went silent at once, but the latch waits out RELATCH_SILENCE.
    sim.a.addr = addr("198.51.100.1:6000");
    let silence = RELATCH_SILENCE.as_millis() as u64;
    sim.run_until(400 + silence - 100);
    assert_eq!(sim.b.s.remote(), addr("198.51.100.1:5000"));
    assert_eq!(sim.b.s.stats().relatches, 0);
    sim.run_until(400 + silence + 600);
    assert_eq!(sim.b.s.remote(), addr("198.51.100.1:6000"));
    assert_eq!(sim.b.s.stats().relatches, 1);
    let recent: Vec<_> = sim.a.events.iter().filter(|(t, _)| *t > 400 + silence + 300).cloned().collect();
    assert!(tags(&recent).len() > 5, "A hears B again at its new address");
}

#[test]
fn nat_latching_drops_a_foreign_ssrc_from_the_latched_address_until_silence() {
    let real = "198.51.100.1:5000";
    let mut sim = Sim::with_policy("10.0.0.1:4000", real, SourcePolicy::NatLatch);
    sim.run_until(400);
    // Someone spoofing A's address, with its own SSRC, while A talks.
    sim.intruder = Some(Intruder { addr: addr(real), ssrc: 0x1234, seq: 0, dtmf: true });
    sim.run_until(2400);
    assert!(digits(&sim.b.events).is_empty());
    let s = sim.b.s.stats();
    assert!(s.wrong_ssrc >= 99, "{s:?}");
    assert_eq!((s.wrong_source, s.relatches), (0, 0));
    // A stops; after RELATCH_SILENCE a new SSRC on that address is a new stream.
    sim.a.sending = false;
    sim.run_until(2400 + RELATCH_SILENCE.as_millis() as u64 + 500);
    assert_eq!(sim.b.s.stats().relatches, 1);
    assert!(digits(&sim.b.events).iter().any(|d| d.digit == '1'));
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
