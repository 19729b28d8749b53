//! The generator's pure parts: framing, SIP and SDP text, answer checks,
//! echo counting with real SRTP contexts, /proc parsing, the server config.

use std::net::SocketAddr;

use super::calls::*;
use super::*;
use crate::media::g711::{ulaw_decode, ulaw_encode};
use crate::media::sdp::SessionDescription;
use crate::media::srtp::{CryptoAttribute, SrtpContexts, SrtpParams, SrtpSuite, MASTER_LEN};
use crate::sip::stream::{Framed, Framer};

const OPTIONS_OK: &[u8] = b"SIP/2.0 200 OK\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody";

/// The generator frames the TLS stream with the server's own `Framer`, at
/// the generator's size cap: what it relies on, checked here.
fn framer(bytes: &[u8]) -> Framer {
    let mut f = Framer::new(MAX_MESSAGE);
    f.push(bytes);
    f
}

fn message(f: &mut Framer) -> Option<Vec<u8>> {
    match f.next_message() {
        Some(Framed::Message(m)) => Some(m),
        other => {
            assert!(other.is_none(), "{other:?}");
            None
        }
    }
}

#[test]
fn a_message_is_taken_only_once_its_body_has_arrived() {
    let mut f = framer(&OPTIONS_OK[..OPTIONS_OK.len() - 2]);
    assert_eq!(message(&mut f), None);
    f.push(&OPTIONS_OK[OPTIONS_OK.len() - 2..]);
    assert_eq!(message(&mut f), Some(OPTIONS_OK.to_vec()));
    assert_eq!(f.buffered(), 0);
}

#[test]
fn back_to_back_messages_and_keepalives_are_split_by_content_length() {
    let mut buf = b"\r\n\r\n".to_vec();
    buf.extend_from_slice(OPTIONS_OK);
    buf.extend_from_slice(b"\r\n");
    // Compact form of Content-Length, and the start of a third message.
    buf.extend_from_slice(b"SIP/2.0 180 Ringing\r\ni: b\r\nl: 0\r\n\r\nSIP/2.0 2");
    let mut f = framer(&buf);
    assert_eq!(message(&mut f), Some(OPTIONS_OK.to_vec()));
    assert_eq!(message(&mut f), Some(b"SIP/2.0 180 Ringing\r\ni: b\r\nl: 0\r\n\r\n".to_vec()));
    assert_eq!(message(&mut f), None);
    assert_eq!(f.buffered(), b"SIP/2.0 2".len());
}

#[test]
fn unframeable_streams_are_errors() {
    let invalid = |bytes: &[u8]| matches!(framer(bytes).next_message(), Some(Framed::Invalid(_)));
    assert!(invalid(b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n"));
    assert!(invalid(format!("SIP/2.0 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_MESSAGE).as_bytes()));
    assert!(invalid(&vec![b'a'; MAX_MESSAGE + 1]));
}

#[test]
fn responses_give_their_code_and_cseq_method() {
    let r = Response::parse(String::from_utf8_lossy(OPTIONS_OK).into_owned()).expect("a response");
    assert_eq!((r.code, r.cseq_method.as_str()), (200, "OPTIONS"));
    assert!(Response::parse("INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n".into()).is_none());
    assert!(Response::parse("SIP/2.0 2x0 OK\r\nCSeq: 1 INVITE\r\n\r\n".into()).is_none());
}

fn dialog(mode: Mode) -> Dialog {
    Dialog {
        mode,
        local: "127.0.0.1:40000".parse().unwrap(),
        server: "127.0.0.1:5061".parse().unwrap(),
        call_id: "c1@bench".into(),
        from_tag: "f1".into(),
        to: None,
    }
}

#[test]
fn requests_over_tls_say_so_and_carry_their_body_length() {
    let sdp = offer_sdp("127.0.0.1:30000".parse().unwrap(), None);
    let invite = dialog(Mode::Secure).request("INVITE", 1, "b1", Some(&sdp));
    assert!(invite.starts_with("INVITE sip:1000@127.0.0.1:5061;transport=tls SIP/2.0\r\n"), "{invite}");
    assert!(invite.contains("\r\nVia: SIP/2.0/TLS 127.0.0.1:40000;branch=z9hG4bKb1;rport\r\n"));
    assert!(invite.contains("\r\nContact: <sip:bench@127.0.0.1:40000;transport=tls>\r\n"));
    assert_eq!(message(&mut framer(invite.as_bytes())), Some(invite.clone().into_bytes()), "framed whole by its own Content-Length");
    assert!(invite.ends_with(&sdp));

    let mut d = dialog(Mode::Plain);
    d.to = Some("<sip:1000@127.0.0.1>;tag=srv".into());
    let bye = d.request("BYE", 2, "b2", None);
    assert!(bye.starts_with("BYE sip:1000@127.0.0.1:5061 SIP/2.0\r\nVia: SIP/2.0/UDP "), "{bye}");
    assert!(bye.contains("\r\nTo: <sip:1000@127.0.0.1>;tag=srv\r\n") && bye.contains("\r\nCSeq: 2 BYE\r\n"));
    assert!(bye.ends_with("Content-Length: 0\r\n\r\n"));
}

fn key(fill: u8) -> [u8; MASTER_LEN] {
    [fill; MASTER_LEN]
}

#[test]
fn the_secure_offer_is_savp_with_our_key_and_the_plain_one_is_avp_without() {
    let ours = CryptoAttribute::new(1, SrtpSuite::AeadAes128Gcm, &key(7));
    let sdp = SessionDescription::parse(&offer_sdp("127.0.0.1:30000".parse().unwrap(), Some(&ours))).expect("valid SDP");
    let m = &sdp.media[0];
    assert!(m.is_srtp_audio() && m.port == 30000);
    let offered: Vec<_> = m.crypto().collect();
    assert_eq!(offered.len(), 1);
    assert_eq!((offered[0].tag, offered[0].suite, offered[0].master()), (1, SrtpSuite::AeadAes128Gcm, &key(7)[..28]));
    assert_eq!(m.payload_types().collect::<Vec<_>>(), vec![0, 101]);

    let plain = SessionDescription::parse(&offer_sdp("127.0.0.1:30002".parse().unwrap(), None)).expect("valid SDP");
    assert!(plain.media[0].is_rtp_audio() && plain.media[0].crypto().next().is_none());
}

fn ok_with(sdp_media: &str) -> String {
    let body = format!("v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{sdp_media}");
    format!("SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

#[test]
fn an_srtp_answer_gives_our_key_to_send_and_theirs_to_receive() {
    let ours = CryptoAttribute::new(1, SrtpSuite::AeadAes128Gcm, &key(7));
    let theirs = CryptoAttribute::new(1, SrtpSuite::AeadAes128Gcm, &key(9));
    let ok = ok_with(&format!("m=audio 20002 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{theirs}\r\n"));
    let a = parse_answer(&ok, Some(&ours)).expect("SRTP answer");
    assert_eq!(a.media, "127.0.0.1:20002".parse::<SocketAddr>().unwrap());
    let p = a.srtp.expect("keys");
    // GCM's key||salt is 28 octets of the 30 kept.
    assert_eq!((p.suite, p.tx_master(), p.rx_master()), (SrtpSuite::AeadAes128Gcm, &key(7)[..28], &key(9)[..28]));
}

#[test]
fn answers_that_do_not_match_the_mode_are_failures() {
    let ours = CryptoAttribute::new(1, SrtpSuite::AeadAes128Gcm, &key(7));
    let other_tag = CryptoAttribute::new(2, SrtpSuite::AeadAes128Gcm, &key(9));
    let other_suite = CryptoAttribute::new(1, SrtpSuite::AesCm128HmacSha1_80, &key(9));
    let plain = ok_with("m=audio 20002 RTP/AVP 0\r\n");
    for bad in [
        plain.clone(),
        ok_with(&format!("m=audio 20002 RTP/SAVP 0\r\na=crypto:{other_tag}\r\n")),
        ok_with(&format!("m=audio 20002 RTP/SAVP 0\r\na=crypto:{other_suite}\r\n")),
        ok_with(&format!("m=audio 20002 RTP/AVP 0\r\na=crypto:{ours}\r\n")),
        ok_with("m=audio 0 RTP/SAVP 0\r\n"),
        "SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".to_string(),
    ] {
        assert!(matches!(parse_answer(&bad, Some(&ours)), Err(CallFailure::BadAnswer(_))), "{bad}");
    }
    assert_eq!(parse_answer(&plain, None).map(|a| a.srtp), Ok(None));
    let keyed = ok_with(&format!("m=audio 20002 RTP/SAVP 0\r\na=crypto:{ours}\r\n"));
    assert!(matches!(parse_answer(&keyed, None), Err(CallFailure::BadAnswer(_))), "keys in a plain call");
}

#[test]
fn the_tone_survives_the_echo_codec_round_trip_and_repeats_every_second() {
    let tone = Tone::new();
    for n in 0..50 {
        let f = tone.frame(n);
        let again: Vec<u8> = f.iter().map(|&c| ulaw_encode(ulaw_decode(c))).collect();
        assert_eq!(&again[..], &f[..], "frame {n}: the echo app decodes and re-encodes");
        assert!(f.iter().any(|&c| ulaw_decode(c).unsigned_abs() > 4000), "frame {n} is loud");
        assert_eq!(tone.frame(n + 50), f);
    }
    assert!(tone.contains(tone.frame(3)));
    assert!(!tone.contains(&[0xff; 160]) && !tone.contains(&tone.frame(3)[..159]));
}

#[test]
fn rtp_payloads_are_found_after_csrcs_and_extensions() {
    let p = rtp_packet(1, 160, 42, &[1, 2, 3]);
    assert_eq!(rtp_payload(&p), Some((0, &[1u8, 2, 3][..])));
    // One CSRC, a one-word extension, two octets of padding.
    let mut q = vec![0xb1, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9, 9, 0xbe, 0xde, 0, 1, 0, 0, 0, 0, 5, 6, 0, 2];
    assert_eq!(rtp_payload(&q), Some((0, &[5u8, 6][..])));
    q.truncate(18);
    assert_eq!(rtp_payload(&q), None, "extension header cut short");
    assert_eq!(rtp_payload(&[0x40, 0, 0]), None, "not version 2");
    assert_eq!(rtp_payload(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200]), None, "padding longer than the packet");
}

/// The server's side of a call keyed like `parse_answer` keys ours.
fn contexts(ours: [u8; MASTER_LEN], theirs: [u8; MASTER_LEN]) -> (SrtpContexts, SrtpContexts) {
    let suite = SrtpSuite::AesCm128HmacSha1_80;
    let us = SrtpContexts::new(&SrtpParams { suite, tx: ours, rx: theirs }).expect("keys");
    let server = SrtpContexts::new(&SrtpParams { suite, tx: theirs, rx: ours }).expect("keys");
    (us, server)
}

#[test]
fn an_srtp_echo_counts_once_authenticated_and_never_as_voice_in_clear() {
    let tone = Tone::new();
    let (mut us, mut server) = contexts(key(1), key(2));
    let mut count = MediaCount::default();
    for n in 0..3u16 {
        let wire = server.protect_rtp(&rtp_packet(n, u32::from(n) * 160, 7, tone.frame(u64::from(n)))).expect("protect");
        count.record(&wire, Some(&mut us), &tone);
    }
    // Forged (another key), damaged, replayed, and garbage packets.
    let (_, mut stranger) = contexts(key(1), key(3));
    let forged = stranger.protect_rtp(&rtp_packet(9, 0, 7, tone.frame(0))).expect("protect");
    count.record(&forged, Some(&mut us), &tone);
    let mut damaged = server.protect_rtp(&rtp_packet(3, 480, 7, tone.frame(3))).expect("protect");
    let replay = damaged.clone();
    count.record(&replay, Some(&mut us), &tone);
    count.record(&replay, Some(&mut us), &tone);
    damaged[20] ^= 1;
    count.record(&damaged, Some(&mut us), &tone);
    count.record(b"garbage", Some(&mut us), &tone);
    assert_eq!(count, MediaCount { sent: 0, echoed: 4, rejected: 4, in_clear: 0 });
    // The same tone sent in clear is seen as such, in either mode.
    let clear = rtp_packet(5, 800, 7, tone.frame(5));
    count.record(&clear, Some(&mut us), &tone);
    let mut plain = MediaCount::default();
    plain.record(&clear, None, &tone);
    plain.record(&rtp_packet(6, 960, 7, &[0xff; 160]), None, &tone);
    assert_eq!((count.in_clear, count.rejected), (1, 5));
    assert_eq!(plain, MediaCount { sent: 0, echoed: 1, rejected: 0, in_clear: 1 });
}

#[test]
fn a_call_never_counts_more_echoes_than_it_sent() {
    let mut total = MediaCount::default();
    total.add(&MediaCount { sent: 10, echoed: 12, rejected: 1, in_clear: 0 });
    total.add(&MediaCount { sent: 10, echoed: 9, rejected: 0, in_clear: 2 });
    assert_eq!(total, MediaCount { sent: 20, echoed: 19, rejected: 1, in_clear: 2 });
}

#[test]
fn proc_stat_lines_give_name_and_cpu_ticks() {
    let line = "4242 (clinivox-serv) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 31 12 0 0 20 0 3 0 100 0 0";
    assert_eq!(parse_stat(line), Some(("clinivox-serv) x", 43)));
    assert_eq!(parse_stat("4242 (x) S 1 2"), None);
    let own = std::fs::read_to_string("/proc/thread-self/stat").expect("Linux /proc");
    assert!(parse_stat(&own).is_some(), "{own}");
}

#[test]
fn the_server_config_is_valid_with_udp_tls_and_an_srtp_offering_trunk() {
    let cfg: SipConfig = toml::from_str(&server_config(Path::new("/tmp/a \"b\".crt"), Path::new("/tmp/k.key"))).expect("TOML");
    assert_eq!(cfg.validate(), Ok(()));
    assert_eq!(cfg.listen.iter().map(|l| l.transport).collect::<Vec<_>>(), vec![Transport::Udp, Transport::Tls]);
    assert_eq!(cfg.tls.as_ref().map(|t| t.cert.clone()), Some(PathBuf::from("/tmp/a \"b\".crt")));
    assert_eq!(cfg.trunks[0].srtp, crate::media::srtp::SrtpPolicy::Offered);
    assert!(SERVER_THREAD.len() <= 15, "Linux truncates thread names to 15 bytes");
}

#[test]
fn schedstat_gives_nanoseconds_on_cpu() {
    assert_eq!(parse_schedstat("1066416 15593 2\n"), Some(1_066_416));
    assert_eq!(parse_schedstat(""), None);
    assert_eq!(parse_schedstat("x 1 2"), None);
}

#[test]
fn cpu_is_compared_at_the_largest_step_both_modes_passed() {
    let rows = vec![(10, [(1.0, true), (2.0, true)]), (50, [(3.0, true), (4.0, true)]), (100, [(5.0, true), (6.0, false)])];
    assert_eq!(common_step(&rows).map(|(n, _)| n), Some(50));
    let none_clean = vec![(50, [(1.0, false), (2.0, true)]), (10, [(1.0, true), (2.0, false)])];
    assert_eq!(common_step(&none_clean).map(|(n, _)| n), Some(10));
    assert_eq!(common_step(&[]), None);
    assert_eq!((ratio(3.0, 2.0), ratio(1.0, 0.0)), ("1.50".to_string(), "n/a".to_string()));
}
