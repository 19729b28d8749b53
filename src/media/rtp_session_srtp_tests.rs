//! SRTP through two sessions: what A protects B plays out; tampered,
//! replayed and strangers' packets (another key) are dropped, counted, and
//! never latched.

use std::net::SocketAddr;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::super::g711::Codec;
use super::super::sdp::Direction;
use super::super::srtp::{SrtpContexts, SrtpParams, SrtpSuite, MASTER_LEN};
use super::*;

const A: &str = "198.51.100.1:5000";
const B: &str = "192.0.2.20:30000";
const STRANGER: &str = "203.0.113.66:5000";
const SUITES: [(SrtpSuite, usize); 2] = [(SrtpSuite::AesCm128HmacSha1_80, 10), (SrtpSuite::AeadAes128Gcm, 16)];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn master(seed: u8) -> [u8; MASTER_LEN] {
    std::array::from_fn(|i| seed.wrapping_mul(13).wrapping_add(i as u8))
}

/// A's and B's view of one SRTP session keyed with `a_key` and `b_key`.
fn params(suite: SrtpSuite, a_key: u8, b_key: u8) -> (SrtpParams, SrtpParams) {
    let (a, b) = (master(a_key), master(b_key));
    (SrtpParams { suite, tx: a, rx: b }, SrtpParams { suite, tx: b, rx: a })
}

fn neg(remote: &str, srtp: Option<SrtpParams>) -> Negotiated {
    Negotiated {
        codec: Codec::Pcmu,
        codec_pt: 0,
        dtmf_pt: Some(101),
        remote: addr(remote),
        direction: Direction::SendRecv,
        ptime: 20,
        srtp,
    }
}

/// µ-law code of frame k: constant, non-zero, never the stranger's.
fn code(k: usize) -> u8 {
    0x90 + (k % 0x60) as u8
}

/// A and B, B latching to whoever sends first (the weakest policy).
struct Pair {
    t0: Instant,
    a: RtpSession,
    b: RtpSession,
    /// µ-law codes of the frames B played out, silence left out.
    heard: Vec<u8>,
    digits: Vec<char>,
}

impl Pair {
    fn new(suite: SrtpSuite) -> Pair {
        let t0 = Instant::now();
        let (pa, pb) = params(suite, 1, 2);
        let mut rng = StdRng::seed_from_u64(3);
        let a = RtpSession::new(t0, neg(B, Some(pa)), RtpConfig::default(), &mut rng);
        let cfg = RtpConfig { source: SourcePolicy::NatLatch, ..RtpConfig::default() };
        let b = RtpSession::new(t0, neg(A, Some(pb)), cfg, &mut rng);
        Pair { t0, a, b, heard: Vec::new(), digits: Vec::new() }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// A sends frame `k` at `k * 20` ms; the datagram as it goes on the wire.
    fn a_sends(&mut self, k: usize) -> Vec<u8> {
        let now = self.at(k as u64 * 20);
        self.a.send_frame(&[Codec::Pcmu.decode(code(k)); FRAME_SAMPLES]);
        let (to, bytes) = self.a.poll_transmit(now).expect("one packet per frame");
        assert_eq!(to, addr(B));
        bytes
    }

    fn b_gets(&mut self, ms: u64, from: &str, bytes: &[u8]) -> Result<(), RtpError> {
        let r = self.b.handle_datagram(self.at(ms), addr(from), bytes);
        self.b_polls(ms);
        r
    }

    /// B's events due at `ms`: frames played out, digits.
    fn b_polls(&mut self, ms: u64) {
        let now = self.at(ms);
        while let Some(e) = self.b.poll_event(now) {
            match e {
                MediaEvent::Frame(f) if f[0] != 0 => self.heard.push(Codec::Pcmu.encode(f[0])),
                MediaEvent::Dtmf(d) => self.digits.push(d.digit),
                _ => {}
            }
        }
    }
}

/// A packet as a stranger without the key makes it: his own key, or none.
fn forged(suite: SrtpSuite, seq: u16, ssrc: u32, encrypted: bool) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend(seq.to_be_bytes());
    p.extend((seq as u32 * 160).to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend([0x10; 160]);
    if !encrypted {
        return p;
    }
    let (theirs, _) = params(suite, 77, 78);
    SrtpContexts::new(&theirs).unwrap().protect_rtp(&p).unwrap()
}

#[test]
fn audio_flows_encrypted_and_forgeries_are_dropped_unlatched() {
    for (suite, tag) in SUITES {
        let mut p = Pair::new(suite);
        // The stranger speaks first: without SRTP he would take the latch.
        for (i, encrypted) in [true, false, true].into_iter().enumerate() {
            let e = p.b_gets(i as u64, STRANGER, &forged(suite, 1000 + i as u16, 0x666, encrypted)).unwrap_err();
            assert!(matches!(e, RtpError::Srtp(_)), "{suite:?}: {e:?}");
        }
        assert_eq!(p.b.remote(), addr(A), "{suite:?}: not latched to the stranger");
        let mut expect_failed = 3;
        let mut previous: Option<Vec<u8>> = None;
        for k in 0..60 {
            let ms = k as u64 * 20;
            let wire = p.a_sends(k);
            assert_eq!(wire.len(), 12 + 160 + tag, "{suite:?}");
            assert!(wire[12..172].iter().any(|b| *b != code(k)), "{suite:?}: the audio is not on the wire in the clear");
            if k % 10 == 5 {
                // Tampered on the way, then the peer's SSRC forged by the stranger.
                let mut t = wire.clone();
                t[40] ^= 0x80;
                assert!(p.b_gets(ms, A, &t).is_err());
                let ssrc = u32::from_be_bytes([wire[8], wire[9], wire[10], wire[11]]);
                let seq = u16::from_be_bytes([wire[2], wire[3]]);
                assert!(p.b_gets(ms, STRANGER, &forged(suite, seq, ssrc, true)).is_err());
                assert!(p.b_gets(ms, A, &forged(suite, seq, ssrc, true)).is_err());
                // And the previous packet again (a replay).
                let e = p.b_gets(ms, A, previous.as_ref().unwrap()).unwrap_err();
                assert_eq!(e, RtpError::Srtp(SrtpError::Replay));
                expect_failed += 4;
            }
            p.b_gets(ms, A, &wire).unwrap();
            previous = Some(wire);
        }
        // What B played while A talked (the fading concealment after it is not A's).
        let heard = std::mem::take(&mut p.heard);
        // A falls silent for longer than the relatch guard; the stranger
        // still cannot move the stream.
        for i in 0..5u16 {
            assert!(p.b_gets(60 * 20 + 2500 + i as u64 * 20, STRANGER, &forged(suite, 2000 + i, 0x666, true)).is_err());
        }
        expect_failed += 5;
        let want: Vec<u8> = (0..heard.len()).map(code).collect();
        assert!(heard.len() >= 55, "{suite:?}: {} frames", heard.len());
        assert_eq!(heard, want, "{suite:?}: every frame of A, in order, nothing else");
        let s = p.b.stats();
        assert_eq!((s.srtp_failed, s.packets_in, s.wrong_source, s.relatches), (expect_failed, 60, 0, 0), "{suite:?}: {s:?}");
        assert_eq!(p.b.remote(), addr(A));
        assert_eq!((p.a.stats().packets_out, p.a.stats().srtp_send_failed), (60, 0));
    }
}

#[test]
fn dtmf_is_protected_too() {
    for (suite, tag) in SUITES {
        let mut p = Pair::new(suite);
        p.a.send_dtmf(p.t0, '5', Duration::from_millis(60)).unwrap();
        let mut n = 0;
        for ms in 0..200 {
            while let Some((_, bytes)) = p.a.poll_transmit(p.at(ms)) {
                assert_eq!(bytes.len(), 12 + 4 + tag);
                p.b_gets(ms, A, &bytes).unwrap();
                n += 1;
            }
        }
        assert!(n >= 3);
        for ms in 200..400 {
            p.b_polls(ms);
        }
        assert_eq!(p.digits, ['5'], "{suite:?}");
    }
}

#[test]
fn renegotiated_keys_rebuild_the_contexts() {
    let mut p = Pair::new(SrtpSuite::AesCm128HmacSha1_80);
    for k in 0..10 {
        let w = p.a_sends(k);
        p.b_gets(k as u64 * 20, A, &w).unwrap();
    }
    let old = p.a_sends(10);
    // A re-INVITE: A has a new key; B's own key stays, and so does the suite.
    let (pa, pb) = params(SrtpSuite::AesCm128HmacSha1_80, 5, 2);
    p.a.update_negotiated(neg(B, Some(pa)));
    p.b.update_negotiated(neg(A, Some(pb)));
    assert!(p.b_gets(200, A, &old).is_err(), "the old key is no longer accepted");
    for k in 11..20 {
        let w = p.a_sends(k);
        p.b_gets(k as u64 * 20, A, &w).unwrap();
    }
    // The same parameters again change nothing: a replay stays a replay.
    let w = p.a_sends(20);
    p.b_gets(400, A, &w).unwrap();
    p.b.update_negotiated(neg(A, Some(pb)));
    assert_eq!(p.b_gets(400, A, &w), Err(RtpError::Srtp(SrtpError::Replay)));
    // Back to plain RTP (a peer that dropped SRTP where it was only offered).
    p.a.update_negotiated(neg(B, None));
    p.b.update_negotiated(neg(A, None));
    let w = p.a_sends(21);
    assert_eq!(w.len(), 12 + 160);
    assert_eq!(w[12..], [code(21); 160]);
    p.b_gets(420, A, &w).unwrap();
    assert_eq!(p.b.stats().packets_in, 21);
}

#[test]
fn random_datagrams_never_panic_and_never_pass() {
    use rand::Rng;
    for (suite, _) in SUITES {
        let mut p = Pair::new(suite);
        let genuine = p.a_sends(0);
        p.b_gets(0, A, &genuine).unwrap();
        let mut rng = StdRng::seed_from_u64(11);
        for i in 0..5000u64 {
            let len = rng.gen_range(0..200);
            let mut d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if let Some(b) = d.first_mut() {
                *b = 0x80 | (*b & 0x3F);
            }
            if i % 2 == 0 && len > 12 {
                // The genuine header over random bytes: A's stream is tried.
                let n = len.min(12);
                d[..n].copy_from_slice(&genuine[..n]);
            }
            let _ = p.b_gets(i, STRANGER, &d);
        }
        let s = p.b.stats();
        assert_eq!((s.packets_in, s.relatches, s.wrong_source), (1, 0, 0), "{suite:?}: {s:?}");
        assert_eq!(p.b.remote(), addr(A));
        let next = p.a_sends(1);
        p.b_gets(6000, A, &next).unwrap();
    }
}
