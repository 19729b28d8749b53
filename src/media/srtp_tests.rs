//! RFC 4568 lines and the SRTP contexts: round trips, refusals, and what
//! forged, tampered and replayed packets get.

use super::*;

/// RFC 4568 §4's example key (30 octets).
const RFC_KEY: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

fn master(seed: u8) -> [u8; MASTER_LEN] {
    std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7))
}

/// Both ends of one SRTP session: what A protects, B unprotects.
fn pair(suite: SrtpSuite) -> (SrtpContexts, SrtpContexts) {
    let (a, b) = (master(1), master(2));
    let pa = SrtpParams { suite, tx: a, rx: b };
    let pb = SrtpParams { suite, tx: b, rx: a };
    (SrtpContexts::new(&pa).unwrap(), SrtpContexts::new(&pb).unwrap())
}

fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn crypto_lines_round_trip() {
    for suite in SrtpSuite::PREFERENCE {
        let c = CryptoAttribute::new(7, suite, &master(9));
        let text = c.to_string();
        assert!(text.starts_with(&format!("7 {} inline:", suite.sdes_name())), "{text}");
        let back = CryptoAttribute::parse(&text).unwrap();
        assert_eq!(back.master(), &master(9)[..suite.master_len()]);
        assert_eq!((back.tag, back.suite), (7, suite));
    }
    // GCM's 28 octets need padding; AES_CM's 30 do not.
    let gcm = CryptoAttribute::new(1, SrtpSuite::AeadAes128Gcm, &master(3)).to_string();
    assert!(gcm.ends_with("=="), "{gcm}");
    assert_eq!(
        CryptoAttribute::new(2, SrtpSuite::AesCm128HmacSha1_80, &master(3)).to_string().len(),
        "2 AES_CM_128_HMAC_SHA1_80 inline:".len() + 40
    );
}

#[test]
fn lifetime_window_hint_and_missing_padding_are_tolerated() {
    for line in [
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1048576"),
        format!("1  AES_CM_128_HMAC_SHA1_80\tinline:{RFC_KEY} WSH=128"),
        format!("123456789 aes_cm_128_hmac_sha1_80 INLINE:{RFC_KEY}"),
    ] {
        let c = CryptoAttribute::parse(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(c.suite, SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!(&c.key[..3], &[0x3d, 0x2d, 0x6e]);
    }
    let gcm = CryptoAttribute::new(1, SrtpSuite::AeadAes128Gcm, &master(4)).to_string();
    let unpadded = gcm.trim_end_matches('=');
    assert_eq!(CryptoAttribute::parse(unpadded).unwrap().master(), &master(4)[..28]);
}

#[test]
fn crypto_lines_we_cannot_honour_are_refused() {
    let aes28 = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+fw==";
    let cases = [
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4"), CryptoError::Mki),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:4"), CryptoError::Mki),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} UNENCRYPTED_SRTP"), CryptoError::SessionParam),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} KDR=1"), CryptoError::SessionParam),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} UNAUTHENTICATED_SRTP"), CryptoError::SessionParam),
        (format!("1 AES_CM_128_HMAC_SHA1_32 inline:{RFC_KEY}"), CryptoError::UnsupportedSuite),
        (format!("1 F8_128_HMAC_SHA1_80 inline:{RFC_KEY}"), CryptoError::UnsupportedSuite),
        (format!("1 AEAD_AES_128_GCM inline:{RFC_KEY}"), CryptoError::KeyLength),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{aes28}"), CryptoError::KeyLength),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}{RFC_KEY}"), CryptoError::KeyLength),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!notbase64!!!!".into(), CryptoError::Base64),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY};inline:{RFC_KEY}"), CryptoError::KeyMethod),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:https://example.com/key".into(), CryptoError::KeyMethod),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^x"), CryptoError::Syntax),
        (format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|2^20"), CryptoError::Syntax),
        (format!("x AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}"), CryptoError::Syntax),
        (format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}"), CryptoError::Syntax),
        ("1 AES_CM_128_HMAC_SHA1_80".into(), CryptoError::Syntax),
        (format!("1 AES_CM_128_HMAC_SHA1_80 {RFC_KEY}"), CryptoError::Syntax),
        ("".into(), CryptoError::Syntax),
    ];
    for (line, want) in cases {
        assert_eq!(CryptoAttribute::parse(&line), Err(want), "{line}");
    }
}

#[test]
fn crypto_parser_never_panics_on_mangled_input() {
    let line = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20 WSH=64");
    for cut in 0..line.len() {
        let _ = CryptoAttribute::parse(&line[..cut]);
    }
    for i in 0..line.len() {
        for b in [b' ', b'|', b':', b';', b'=', b'^', 0xC3] {
            let mut v = line.clone().into_bytes();
            v[i] = b;
            if let Ok(s) = std::str::from_utf8(&v) {
                let _ = CryptoAttribute::parse(s);
            }
        }
    }
}

#[test]
fn keys_are_never_printed() {
    let p = SrtpParams { suite: SrtpSuite::AesCm128HmacSha1_80, tx: [0xAB; MASTER_LEN], rx: [0xCD; MASTER_LEN] };
    let c = CryptoAttribute::new(1, SrtpSuite::AesCm128HmacSha1_80, &[0xAB; MASTER_LEN]);
    let (ctx, _) = pair(SrtpSuite::AeadAes128Gcm);
    for text in [format!("{p:?}"), format!("{c:?}"), format!("{ctx:?}")] {
        assert!(!text.contains("171") && !text.contains("205") && !text.contains("q6ur"), "{text}");
        assert!(!text.contains("tx") && !text.contains("key:"), "{text}");
    }
}

#[test]
fn protected_packets_unprotect_on_the_other_side() {
    for (suite, tag) in [(SrtpSuite::AesCm128HmacSha1_80, 10), (SrtpSuite::AeadAes128Gcm, 16)] {
        let (mut a, mut b) = pair(suite);
        for seq in 65530..=65535u16 {
            let plain = rtp(seq, 0x1234, &[0x55; 160]);
            let wire = a.protect_rtp(&plain).unwrap();
            assert_eq!(wire.len(), plain.len() + tag, "{suite:?}");
            assert_eq!(wire[..12], plain[..12], "the header stays readable");
            assert_ne!(wire[12..172], plain[12..], "{suite:?}: the payload is encrypted");
            assert_eq!(b.unprotect_rtp(&wire).unwrap(), plain);
        }
        // Across the sequence number wrap (the rollover counter moves on).
        let plain = rtp(0, 0x1234, &[0x66; 160]);
        assert_eq!(b.unprotect_rtp(&a.protect_rtp(&plain).unwrap()).unwrap(), plain);
    }
}

#[test]
fn tampered_replayed_foreign_and_garbage_packets_are_errors() {
    for suite in SrtpSuite::PREFERENCE {
        let (mut a, mut b) = pair(suite);
        let wire = a.protect_rtp(&rtp(100, 7, &[1; 160])).unwrap();
        for i in [1, 3, 8, 20, wire.len() - 1] {
            let mut t = wire.clone();
            t[i] ^= 0x01;
            assert!(b.unprotect_rtp(&t).is_err(), "{suite:?}: byte {i} tampered");
        }
        assert!(b.unprotect_rtp(&wire).is_ok(), "the genuine packet still passes after the forgeries");
        assert_eq!(b.unprotect_rtp(&wire), Err(SrtpError::Replay));
        // A stranger with his own key, on the peer's SSRC and on another.
        let mut stranger = SrtpContexts::new(&SrtpParams { suite, tx: master(77), rx: master(78) }).unwrap();
        for ssrc in [7, 8] {
            let forged = stranger.protect_rtp(&rtp(101, ssrc, &[2; 160])).unwrap();
            assert_eq!(b.unprotect_rtp(&forged), Err(SrtpError::Authentication), "{suite:?}");
        }
        // Plain RTP is not SRTP; neither is a short or truncated packet.
        assert!(b.unprotect_rtp(&rtp(102, 7, &[3; 160])).is_err());
        assert_eq!(b.unprotect_rtp(&[0x80, 0, 0]), Err(SrtpError::Malformed));
        assert_eq!(b.unprotect_rtp(&wire[..14]), Err(SrtpError::Malformed));
        // An extension whose length runs past the packet.
        let mut ext = rtp(103, 7, &[]);
        ext[0] |= 0x10;
        ext.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x40]);
        assert_eq!(b.unprotect_rtp(&ext), Err(SrtpError::Malformed));
        // The genuine stream goes on.
        let next = rtp(101, 7, &[4; 160]);
        assert_eq!(b.unprotect_rtp(&a.protect_rtp(&next).unwrap()).unwrap(), next);
    }
}

#[test]
fn forged_packets_neither_grow_state_nor_block_a_stream_not_yet_heard() {
    let (mut a, mut b) = pair(SrtpSuite::AesCm128HmacSha1_80);
    // Garbage on many SSRCs, the peer's (7) among them and last, sequence
    // numbers far ahead: a replay window primed by it would refuse seq 1.
    for i in 0..(2 * PROBE_FAILURES + 5) {
        let ssrc = if i % 3 == 0 { 7 } else { 1000 + i };
        let mut forged = rtp(30000u16.wrapping_add(i as u16), ssrc, &[9; 170]);
        forged[20] = i as u8;
        assert!(b.unprotect_rtp(&forged).is_err());
    }
    assert!(b.streams.is_empty());
    for seq in 1..5u16 {
        let p = rtp(seq, 7, &[5; 160]);
        assert_eq!(b.unprotect_rtp(&a.protect_rtp(&p).unwrap()).unwrap(), p, "seq {seq}");
    }
    assert_eq!(b.streams.len(), 1);
}

#[test]
fn streams_are_bounded_and_the_least_recent_goes() {
    let (mut a, mut b) = pair(SrtpSuite::AeadAes128Gcm);
    for ssrc in 0..(MAX_STREAMS as u32 + 4) {
        let p = rtp(10, ssrc, &[1; 20]);
        assert!(b.unprotect_rtp(&a.protect_rtp(&p).unwrap()).is_ok());
        assert!(b.streams.len() <= MAX_STREAMS);
    }
    assert!(b.streams.iter().all(|s| s.ssrc >= 4), "the oldest made room");
    // An evicted stream that comes back starts over.
    let p = rtp(11, 0, &[1; 20]);
    assert!(b.unprotect_rtp(&a.protect_rtp(&p).unwrap()).is_ok());
}

#[test]
fn update_keeps_what_did_not_change() {
    let (mut a, mut b) = pair(SrtpSuite::AesCm128HmacSha1_80);
    let p = rtp(1, 7, &[1; 160]);
    b.unprotect_rtp(&a.protect_rtp(&p).unwrap()).unwrap();
    // Same parameters: nothing changes, a replay is still a replay.
    let again = a.protect_rtp(&rtp(2, 7, &[1; 160])).unwrap();
    b.unprotect_rtp(&again).unwrap();
    let same = *b.params();
    b.update(&same).unwrap();
    assert_eq!(b.unprotect_rtp(&again), Err(SrtpError::Replay));
    // A's new key: B must learn it; its own sending key stays.
    let new = SrtpParams { rx: master(5), ..*b.params() };
    let a_new = SrtpParams { tx: master(5), ..*a.params() };
    a.update(&a_new).unwrap();
    let p3 = rtp(3, 7, &[3; 160]);
    let w3 = a.protect_rtp(&p3).unwrap();
    assert_eq!(b.unprotect_rtp(&w3), Err(SrtpError::Authentication));
    b.update(&new).unwrap();
    assert_eq!(b.unprotect_rtp(&w3).unwrap(), p3);
    // A suite change rebuilds both directions.
    let gcm = |p: &SrtpParams| SrtpParams { suite: SrtpSuite::AeadAes128Gcm, ..*p };
    let (pa, pb) = (gcm(a.params()), gcm(b.params()));
    a.update(&pa).unwrap();
    b.update(&pb).unwrap();
    let p4 = rtp(4, 7, &[4; 160]);
    let w4 = a.protect_rtp(&p4).unwrap();
    assert_eq!(w4.len(), p4.len() + 16);
    assert_eq!(b.unprotect_rtp(&w4).unwrap(), p4);
}
