//! The fuzz tier (issue 13): mutated SIP, SDP and RTP fed to every parser
//! that reads the network, and to a whole sans-IO `Endpoint`, on stable
//! Rust without a fuzzing engine. The corpus is the RFC 4475/5118 torture
//! messages (read from `../shared/testdata`), a few calls' worth of our own
//! SDP and SRTP/RTP packets; each input is one to four mutations of a
//! corpus entry (bit flips, byte runs, insertions of SIP's delimiters and
//! large numbers, truncation, duplication, splicing two entries). What is
//! checked: no panic anywhere, and state stays bounded: the endpoint's
//! transactions under its caps, its calls and registrations few.
//!
//! `CLINIVOX_FUZZ_INPUTS` sets the number of mutated inputs (default
//! 1,000,000, which takes tens of seconds at the dev profile's -O1);
//! `CLINIVOX_FUZZ_SEED` replays a run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::media::g711::Codec;
use crate::media::rtp_session::{RtpConfig, RtpSession};
use crate::media::sdp::{Direction, Negotiated, SdpConfig, SdpSession, SessionDescription};
use crate::media::srtp::{SrtpParams, SrtpSuite};
use crate::sip::config::Transport;
use crate::sip::endpoint::Endpoint;
use crate::sip::stream::{Framed, Framer};
use crate::sip::transaction::Peer;

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b"\"",
    b"%",
    b"%00",
    b"sip:",
    b"sips:",
    b"tel:",
    b"@",
    b"[::1]",
    b"Content-Length: ",
    b"4294967296",
    b"18446744073709551616",
    b"-1",
    b"99999999999999999999",
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:",
    b"m=audio 0 RTP/SAVP 0\r\n",
    b"Via: SIP/2.0/TLS x;branch=z9hG4bK",
    b"Authorization: Digest ",
    b"\xff\xfe",
    b"\x00",
];

pub(super) fn corpus() -> Vec<Vec<u8>> {
    let root = std::env::var_os("CLINIVOX_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"))
        .join("sip-torture");
    let mut out = Vec::new();
    for sub in ["rfc4475", "rfc5118"] {
        if let Ok(dir) = std::fs::read_dir(root.join(sub)) {
            for e in dir.flatten() {
                if e.path().extension().is_some_and(|x| x == "dat") {
                    out.extend(std::fs::read(e.path()));
                }
            }
        }
    }
    assert!(out.len() > 40, "the torture corpus was not found under {} ({} files)", root.display(), out.len());
    // Our own: an offer with SRTP, a REGISTER with credentials, RTP.
    out.push(offer_bytes());
    out.push(
        b"REGISTER sip:clinivox.local SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKr1\r\nMax-Forwards: 70\r\n\
          From: <sip:201@clinivox.local>;tag=a\r\nTo: <sip:201@clinivox.local>\r\nCall-ID: r1@x\r\nCSeq: 2 REGISTER\r\n\
          Contact: <sip:201@192.0.2.9:5060;transport=tls>;expires=60\r\nAuthorization: Digest username=\"201\", realm=\"clinivox\", \
          nonce=\"abc\", uri=\"sip:clinivox.local\", response=\"00\", qop=auth, nc=00000001, cnonce=\"x\", algorithm=SHA-256\r\n\
          Content-Length: 0\r\n\r\n"
            .to_vec(),
    );
    out.push(vec![0x80, 0x00, 0x12, 0x34, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef, 0xff, 0x7f, 0x00]);
    out.push(vec![0x90, 0xe5, 0x00, 0x01, 0, 0, 1, 0, 0, 0, 0, 1, 0xbe, 0xde, 0x00, 0x01, 0x10, 0xaa, 0, 0, 1, 2, 3, 4]);
    out
}

fn offer_bytes() -> Vec<u8> {
    let mut cfg = SdpConfig::new("192.0.2.9".parse().expect("literal"), 4000);
    cfg.srtp = crate::media::srtp::SrtpPolicy::Required;
    cfg.srtp_master = [7; 30];
    SdpSession::new(cfg, 1).create_offer(Direction::SendRecv).to_string().into_bytes()
}

pub(super) fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = corpus[rng.gen_range(0..corpus.len())].clone();
    for _ in 0..rng.gen_range(1..=4) {
        let len = v.len();
        match rng.gen_range(0..8) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = rng.gen();
            }
            2 => {
                let i = rng.gen_range(0..=len);
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                v.splice(i..i, t.iter().copied());
            }
            3 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 64));
                v.drain(a..b);
            }
            4 if len > 0 => v.truncate(rng.gen_range(0..len)),
            5 if len > 0 => {
                // Repeat a slice (long headers, many Vias).
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 128));
                let chunk = v[a..b].to_vec();
                for _ in 0..rng.gen_range(1..8) {
                    v.splice(b..b, chunk.iter().copied());
                }
            }
            6 => {
                // Splice: the head of this input, the tail of another.
                let other = &corpus[rng.gen_range(0..corpus.len())];
                let cut = rng.gen_range(0..=len);
                let from = rng.gen_range(0..=other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => {
                let i = rng.gen_range(0..=len);
                let n = rng.gen_range(1..16);
                v.splice(i..i, (0..n).map(|_| rng.gen::<u8>()));
            }
        }
    }
    v.truncate(70_000);
    v
}

fn negotiated(srtp: Option<SrtpParams>) -> Negotiated {
    Negotiated {
        codec: Codec::Pcmu,
        codec_pt: 0,
        dtmf_pt: Some(101),
        remote: "192.0.2.9:4000".parse().expect("literal"),
        direction: Direction::SendRecv,
        ptime: 20,
        srtp,
    }
}

#[test]
fn mutated_sip_sdp_and_rtp_never_panic_and_state_stays_bounded() {
    let inputs: u64 = std::env::var("CLINIVOX_FUZZ_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let seed: u64 = std::env::var("CLINIVOX_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    println!("fuzz: {inputs} inputs, CLINIVOX_FUZZ_SEED={seed}");
    let corpus = corpus();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ep = Endpoint::for_test(
        r#"
        numbers = ["1000"]
        [[trunks]]
        name = "t"
        cidrs = ["192.0.2.0/24"]
        [[extensions]]
        number = "201"
        password = "a-long-desk-password"
        srtp = "offered"
        "#,
    );
    let t0 = Instant::now();
    let mut now = t0;
    let mut framer = Framer::default();
    let params = SrtpParams { suite: SrtpSuite::AeadAes128Gcm, tx: [3; 30], rx: [5; 30] };
    let mut rtp = RtpSession::new(now, negotiated(None), RtpConfig::default(), &mut rng);
    let mut srtp = RtpSession::new(now, negotiated(Some(params)), RtpConfig::default(), &mut rng);
    let mut sdp = SdpSession::new(SdpConfig::new("198.51.100.7".parse().expect("literal"), 5000), 1);
    let sources: Vec<SocketAddr> =
        ["192.0.2.9:5060", "192.0.2.10:5060", "203.0.113.5:5060", "192.0.2.9:4000"].iter().map(|s| s.parse().expect("literal")).collect();
    let mut max_tx = 0;
    for i in 0..inputs {
        let input = mutate(&mut rng, &corpus);
        let from = sources[(i % sources.len() as u64) as usize];
        match i % 4 {
            // The whole endpoint, over a datagram and a stream transport.
            0 | 1 => {
                let transport = if i % 8 < 4 { Transport::Udp } else { Transport::Tls };
                ep.handle_input(now, i / 1000, Peer { transport, addr: from }, &input);
                let _ = crate::sip::overload::is_new_invite(&input);
                if let Some(inv) = crate::sip::overload::NewInvite::scan(&input) {
                    let _ = inv.refusal("t", 10, "x", Some(";oc=5"));
                }
                while ep.poll_transmit().is_some() {}
                while ep.poll_event().is_some() {}
                framer.push(&input);
                while let Some(f) = framer.next_message() {
                    if let Framed::Invalid(_) = f {
                        framer = Framer::default();
                        break;
                    }
                }
            }
            // SDP: parse, then answer it as we would.
            2 => {
                if let Ok(offer) = SessionDescription::parse(&String::from_utf8_lossy(&input)) {
                    let _ = sdp.answer(&offer, Direction::SendRecv);
                    let _ = sdp.accept_answer(&offer);
                }
            }
            // RTP, plain and SRTP.
            _ => {
                let _ = rtp.handle_datagram(now, from, &input);
                let _ = srtp.handle_datagram(now, from, &input);
                while rtp.poll_event(now).is_some() {}
                while srtp.poll_event(now).is_some() {}
            }
        }
        if i % 1000 == 999 {
            // Time passes (2 ms an input): timers fire, state expires.
            now += Duration::from_secs(2);
            ep.handle_timeout(now, (now - t0).as_secs());
            while ep.poll_transmit().is_some() {}
            while ep.poll_event().is_some() {}
            let (server, client) = ep.transaction_counts();
            max_tx = max_tx.max(server + client);
            assert!(server + client <= 4096, "transactions beyond the cap: {server} + {client}");
            assert!(ep.active_calls() <= 64, "calls pile up: {}", ep.active_calls());
        }
    }
    println!("fuzz: done in {:?}; at most {max_tx} transactions alive", t0.elapsed());
}
