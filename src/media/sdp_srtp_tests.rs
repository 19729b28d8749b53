//! SDES offer/answer: each [`SrtpPolicy`] against each kind of offer, our
//! offers, and answers to them.

use std::net::IpAddr;

use super::super::srtp::{CryptoAttribute, SrtpParams, SrtpPolicy, SrtpSuite, MASTER_LEN};
use super::*;

const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n";
/// Their AES_CM key (RFC 4568 §4's example) and GCM key (octets 100..128).
const THEIR_AES: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
const THEIR_GCM: &str = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+fw==";
const OURS: [u8; MASTER_LEN] = [0x42; MASTER_LEN];

/// The kinds of offer a policy meets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Offer {
    /// RTP/SAVP with AES_CM (tag 1) and GCM (tag 2).
    SavpCrypto,
    /// "Best effort" SDES: RTP/AVP carrying the same lines (baresip).
    AvpCrypto,
    AvpPlain,
    /// RTP/SAVP with only lines we cannot use (SHA1_32, an MKI).
    SavpUnsupported,
}

fn offer_text(kind: Offer) -> String {
    let crypto =
        format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{THEIR_AES}|2^31\r\na=crypto:2 AEAD_AES_128_GCM inline:{THEIR_GCM}\r\n");
    let unusable = format!(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{THEIR_AES}\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{THEIR_AES}|2^20|1:4\r\n"
    );
    let (proto, lines) = match kind {
        Offer::SavpCrypto => ("RTP/SAVP", crypto),
        Offer::AvpCrypto => ("RTP/AVP", crypto),
        Offer::AvpPlain => ("RTP/AVP", String::new()),
        Offer::SavpUnsupported => ("RTP/SAVP", unusable),
    };
    format!("{HEAD}m=audio 6000 {proto} 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n{lines}a=sendrecv\r\n")
}

fn session(policy: SrtpPolicy) -> SdpSession {
    let mut cfg = SdpConfig::new(IpAddr::from([203, 0, 113, 7]), 40000);
    cfg.srtp = policy;
    cfg.srtp_master = OURS;
    SdpSession::new(cfg, 42)
}

fn answer(policy: SrtpPolicy, text: &str) -> Result<(SessionDescription, Negotiated), SdpError> {
    session(policy).answer(&SessionDescription::parse(text).unwrap(), Direction::SendRecv)
}

fn crypto_lines(sdp: &SessionDescription) -> Vec<CryptoAttribute> {
    sdp.media[0].crypto().collect()
}

/// What each policy makes of each offer: `None` is 488, else the answer's
/// proto and whether SRTP runs.
#[test]
fn each_policy_against_each_offer() {
    use Offer::*;
    use SrtpPolicy::*;
    let table = [
        (Off, SavpCrypto, None),
        (Off, AvpCrypto, Some(("RTP/AVP", false))),
        (Off, AvpPlain, Some(("RTP/AVP", false))),
        (Off, SavpUnsupported, None),
        (Offered, SavpCrypto, Some(("RTP/SAVP", true))),
        (Offered, AvpCrypto, Some(("RTP/AVP", true))),
        (Offered, AvpPlain, Some(("RTP/AVP", false))),
        (Offered, SavpUnsupported, None),
        (Required, SavpCrypto, Some(("RTP/SAVP", true))),
        (Required, AvpCrypto, Some(("RTP/AVP", true))),
        (Required, AvpPlain, None),
        (Required, SavpUnsupported, None),
    ];
    for (policy, kind, want) in table {
        let got = answer(policy, &offer_text(kind));
        let Some((proto, secure)) = want else {
            let e = got.unwrap_err();
            assert!(e.is_not_acceptable(), "{policy:?} {kind:?}: {e:?}");
            continue;
        };
        let (ans, n) = got.unwrap_or_else(|e| panic!("{policy:?} {kind:?}: {e}"));
        let text = ans.to_string();
        assert!(text.contains(&format!("m=audio 40000 {proto} 0 101\r\n")), "{policy:?} {kind:?}: {text}");
        assert_eq!(n.srtp.is_some(), secure, "{policy:?} {kind:?}");
        assert_eq!(text.contains("a=crypto:"), secure, "{policy:?} {kind:?}: {text}");
        // Our answer parses back to itself.
        assert_eq!(SessionDescription::parse(&text).unwrap(), ans);
    }
}

#[test]
fn answer_prefers_gcm_and_repeats_the_offers_tag_with_our_key() {
    let (ans, n) = answer(SrtpPolicy::Offered, &offer_text(Offer::SavpCrypto)).unwrap();
    let lines = crypto_lines(&ans);
    assert_eq!(lines.len(), 1, "one line in the answer");
    assert_eq!((lines[0].tag, lines[0].suite), (2, SrtpSuite::AeadAes128Gcm));
    assert_eq!(lines[0].master(), &OURS[..28]);
    let p = n.srtp.unwrap();
    assert_eq!(p.suite, SrtpSuite::AeadAes128Gcm);
    assert_eq!(p.tx_master(), &OURS[..28]);
    assert_eq!(p.rx_master(), (100u8..128).collect::<Vec<_>>());
    // Without GCM on offer: AES_CM, under its own tag.
    let aes_only = offer_text(Offer::SavpCrypto).replace(&format!("a=crypto:2 AEAD_AES_128_GCM inline:{THEIR_GCM}\r\n"), "");
    let (ans, n) = answer(SrtpPolicy::Required, &aes_only).unwrap();
    assert!(ans.to_string().contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC\r\n"), "{ans}");
    assert_eq!(n.srtp.unwrap().rx_master()[..3], [0x3d, 0x2d, 0x6e]);
}

#[test]
fn savpf_is_answered_in_kind_and_dtls_is_not_ours() {
    let savpf = offer_text(Offer::SavpCrypto).replace("RTP/SAVP", "RTP/SAVPF");
    let (ans, n) = answer(SrtpPolicy::Required, &savpf).unwrap();
    assert!(ans.to_string().contains("m=audio 40000 RTP/SAVPF 0 101\r\n"));
    assert!(n.srtp.is_some());
    let dtls = offer_text(Offer::SavpCrypto).replace("RTP/SAVP", "UDP/TLS/RTP/SAVP");
    assert!(answer(SrtpPolicy::Offered, &dtls).unwrap_err().is_not_acceptable());
}

#[test]
fn a_secure_second_stream_is_taken_when_required() {
    // A plain stream first, then the same with keys (two m= lines).
    let plain = offer_text(Offer::AvpPlain);
    let secure = offer_text(Offer::SavpCrypto);
    let text = format!("{plain}{}", &secure[HEAD.len()..]);
    let (ans, n) = answer(SrtpPolicy::Required, &text).unwrap();
    assert_eq!((ans.media[0].port, ans.media[1].port), (0, 40000));
    assert!(n.srtp.is_some());
    // Offered takes the first it can, the plain one.
    let (ans, n) = answer(SrtpPolicy::Offered, &text).unwrap();
    assert_eq!((ans.media[0].port, ans.media[1].port), (40000, 0));
    assert!(n.srtp.is_none());
}

#[test]
fn our_offers_per_policy() {
    let mut s = session(SrtpPolicy::Required);
    let text = s.create_offer(Direction::SendRecv).to_string();
    assert!(text.contains("m=audio 40000 RTP/SAVP 0 8 101\r\n"), "{text}");
    assert!(text.contains("a=crypto:1 AEAD_AES_128_GCM inline:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQg==\r\n"), "{text}");
    assert!(text.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC\r\n"), "{text}");
    // A re-offer keeps the keys.
    let again = s.create_offer(Direction::SendOnly).to_string();
    assert_eq!(
        again.lines().filter(|l| l.starts_with("a=crypto:")).collect::<Vec<_>>(),
        text.lines().filter(|l| l.starts_with("a=crypto:")).collect::<Vec<_>>()
    );
    let offered = session(SrtpPolicy::Offered).create_offer(Direction::SendRecv);
    assert_eq!(offered.media[0].proto, "RTP/AVP");
    assert_eq!(crypto_lines(&offered).len(), 2);
    let off = session(SrtpPolicy::Off).create_offer(Direction::SendRecv).to_string();
    assert!(off.contains("m=audio 40000 RTP/AVP 0 8 101\r\n") && !off.contains("crypto"), "{off}");
}

fn answer_with(proto: &str, crypto: &str) -> SessionDescription {
    let text = format!("{HEAD}m=audio 20000 {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n{crypto}");
    SessionDescription::parse(&text).unwrap()
}

#[test]
fn accept_answer_per_policy() {
    let aes_tag2 = format!("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{THEIR_AES}\r\n");
    let accept = |policy, proto: &str, crypto: &str| {
        let mut s = session(policy);
        s.create_offer(Direction::SendRecv);
        s.accept_answer(&answer_with(proto, crypto))
    };
    let n = accept(SrtpPolicy::Offered, "RTP/AVP", &aes_tag2).unwrap();
    let p = n.srtp.unwrap();
    assert_eq!((p.suite, p.tx_master(), &p.rx_master()[..3]), (SrtpSuite::AesCm128HmacSha1_80, &OURS[..], &[0x3d, 0x2d, 0x6e][..]));
    assert!(accept(SrtpPolicy::Required, "RTP/SAVP", &aes_tag2).unwrap().srtp.is_some());
    // A plain answer: fine when offered, 488-worthy when required.
    assert_eq!(accept(SrtpPolicy::Offered, "RTP/AVP", "").unwrap().srtp, None);
    assert!(accept(SrtpPolicy::Required, "RTP/AVP", "").unwrap_err().is_not_acceptable());
    // A tag we did not offer, or our tag with another suite.
    let wrong_tag = aes_tag2.replace("crypto:2", "crypto:3");
    let wrong_suite = aes_tag2.replace("crypto:2", "crypto:1");
    for bad in [wrong_tag, wrong_suite] {
        assert!(accept(SrtpPolicy::Required, "RTP/SAVP", &bad).unwrap_err().is_not_acceptable(), "{bad}");
        assert_eq!(accept(SrtpPolicy::Offered, "RTP/AVP", &bad).unwrap().srtp, None, "{bad}");
    }
    // SAVP without usable keys cannot be run; nor SAVP at all when off.
    assert!(accept(SrtpPolicy::Offered, "RTP/SAVP", "").unwrap_err().is_not_acceptable());
    assert!(accept(SrtpPolicy::Off, "RTP/SAVP", &aes_tag2).unwrap_err().is_not_acceptable());
    assert_eq!(accept(SrtpPolicy::Off, "RTP/AVP", &aes_tag2).unwrap().srtp, None);
}

#[test]
fn two_sessions_agree_on_mirrored_keys() {
    let mut caller = session(SrtpPolicy::Required);
    let mut cfg = SdpConfig::new(IpAddr::from([198, 51, 100, 9]), 50000);
    cfg.srtp = SrtpPolicy::Offered;
    cfg.srtp_master = [0x17; MASTER_LEN];
    let mut callee = SdpSession::new(cfg, 7);
    let offer = caller.create_offer(Direction::SendRecv);
    let (ans, theirs) = callee.answer(&SessionDescription::parse(&offer.to_string()).unwrap(), Direction::SendRecv).unwrap();
    let ours = caller.accept_answer(&SessionDescription::parse(&ans.to_string()).unwrap()).unwrap();
    let (a, b): (SrtpParams, SrtpParams) = (ours.srtp.unwrap(), theirs.srtp.unwrap());
    assert_eq!(a.suite, SrtpSuite::AeadAes128Gcm);
    assert_eq!((a.suite, a.tx_master(), a.rx_master()), (b.suite, b.rx_master(), b.tx_master()));
    // The callee answers a re-offer with the same key; a changed caller key is taken.
    let mut reoffer = caller.create_offer(Direction::SendRecv);
    let (ans2, again) = callee.answer(&reoffer, Direction::SendRecv).unwrap();
    assert_eq!(again.srtp, theirs.srtp);
    assert_eq!(crypto_lines(&ans2), crypto_lines(&ans));
    let fresh = CryptoAttribute::new(1, SrtpSuite::AeadAes128Gcm, &[0x99; MASTER_LEN]);
    reoffer.media[0].other_attributes.retain(|a| !a.starts_with("crypto:"));
    reoffer.media[0].other_attributes.push(format!("crypto:{fresh}"));
    let (_, changed) = callee.answer(&reoffer, Direction::SendRecv).unwrap();
    let c = changed.srtp.unwrap();
    assert_eq!((c.tx_master(), c.rx_master()), (b.tx_master(), &[0x99; 28][..]));
}

#[test]
fn the_master_key_is_never_printed() {
    let mut s = session(SrtpPolicy::Required);
    s.create_offer(Direction::SendRecv);
    let (_, n) = answer(SrtpPolicy::Required, &offer_text(Offer::SavpCrypto)).unwrap();
    for text in [format!("{s:?}"), format!("{:?}", s.config()), format!("{n:?}")] {
        assert!(!text.contains("66") && !text.contains("QkJC"), "{text}");
    }
}
