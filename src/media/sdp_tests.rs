//! SDP parse/negotiate tests with real-world shaped offers (written by hand).

use std::net::{Ipv4Addr, SocketAddr};

use super::*;

const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

const BARESIP: &str = "v=0\r\no=- 1234567890 1234567891 IN IP4 192.168.1.10\r\ns=-\r\n\
c=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 10000 RTP/AVP 9 0 8 96 101\r\nb=AS:64\r\n\
a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:96 opus/48000/2\r\na=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=label:1\r\n\
a=rtcp-rsize\r\na=ssrc:1111 cname:abc\r\n";

// Asterisk prefers PCMA here and offers event range 0-16.
const ASTERISK: &str = "v=0\r\no=- 1693562722 1693562722 IN IP4 10.0.0.5\r\ns=Asterisk\r\n\
c=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 17042 RTP/AVP 8 0 3 100\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:3 GSM/8000\r\n\
a=rtpmap:100 telephone-event/8000\r\na=fmtp:100 0-16\r\na=ptime:20\r\na=maxptime:150\r\na=sendrecv\r\n";

// Linphone: IPv6, LF-only line endings, wideband DTMF variants, a video stream.
const LINPHONE: &str = "v=0\no=alice 3456 789 IN IP6 2001:db8::10\ns=Talk\nc=IN IP6 2001:db8::10\nt=0 0\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\n\
m=audio 7078 RTP/AVP 96 97 98 0 8 18 99 100 101\na=rtpmap:96 opus/48000/2\n\
a=fmtp:96 useinbandfec=1\na=rtpmap:97 SILK/16000\na=rtpmap:98 speex/16000\n\
a=fmtp:98 vbr=on\na=rtpmap:18 G729/8000\na=fmtp:18 annexb=yes\n\
a=rtpmap:99 telephone-event/48000\na=rtpmap:100 telephone-event/16000\n\
a=rtpmap:101 telephone-event/8000\na=rtcp-fb:* trr-int 1000\n\
m=video 9078 RTP/AVP 96\na=rtpmap:96 VP8/90000\na=rtcp-fb:* nack pli\n";

fn session() -> SdpSession {
    SdpSession::new(SdpConfig::new(IpAddr::from([203, 0, 113, 7]), 40000), 42)
}

fn answer(text: &str) -> (SessionDescription, Negotiated) {
    let offer = SessionDescription::parse(text).unwrap();
    session().answer(&offer, Direction::SendRecv).unwrap()
}

#[test]
fn parses_sipp_static_pt() {
    let sdp = SessionDescription::parse(SIPP).unwrap();
    assert_eq!(sdp.origin.session_version, 2353687637);
    let m = &sdp.media[0];
    assert_eq!((m.port, m.payload_types().collect::<Vec<_>>()), (6000, vec![0]));
    let (_, n) = answer(SIPP);
    assert_eq!((n.codec, n.codec_pt, n.dtmf_pt), (Codec::Pcmu, 0, None));
    assert_eq!(n.remote, "127.0.0.1:6000".parse::<SocketAddr>().unwrap());
    assert_eq!((n.direction, n.ptime), (Direction::SendRecv, 20));
}

#[test]
fn baresip_prefers_our_order_and_keeps_dtmf() {
    let (ans, n) = answer(BARESIP);
    assert_eq!((n.codec, n.codec_pt, n.dtmf_pt), (Codec::Pcmu, 0, Some(101)));
    let text = ans.to_string();
    assert!(text.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"));
    assert!(text.contains("c=IN IP4 203.0.113.7\r\n") && text.contains("a=sendrecv"));
}

#[test]
fn asterisk_dynamic_dtmf_pt_is_echoed() {
    let (ans, n) = answer(ASTERISK);
    // Our preference (PCMU) wins over the offerer's order; DTMF PT is theirs.
    assert_eq!((n.codec, n.dtmf_pt), (Codec::Pcmu, Some(100)));
    assert!(ans.to_string().contains("m=audio 40000 RTP/AVP 0 100\r\n"));
    let mut cfg = SdpConfig::new(IpAddr::from([10, 0, 0, 9]), 4000);
    cfg.codecs = vec![Codec::Pcma, Codec::Pcmu];
    let offer = SessionDescription::parse(ASTERISK).unwrap();
    let (_, n) = SdpSession::new(cfg, 1).answer(&offer, Direction::SendRecv).unwrap();
    assert_eq!((n.codec, n.codec_pt), (Codec::Pcma, 8));
}

#[test]
fn linphone_ipv6_rejects_video() {
    let (ans, n) = answer(LINPHONE);
    assert_eq!((n.codec, n.codec_pt, n.dtmf_pt), (Codec::Pcmu, 0, Some(101)));
    assert_eq!(n.remote, "[2001:db8::10]:7078".parse::<SocketAddr>().unwrap());
    assert_eq!(ans.media.len(), 2);
    assert_eq!((ans.media[1].media.as_str(), ans.media[1].port), ("video", 0));
    assert!(ans.to_string().contains("m=video 0 RTP/AVP 96\r\n"));
    // Our answer parses back.
    let back = SessionDescription::parse(&ans.to_string()).unwrap();
    assert_eq!(back, ans);
}

#[test]
fn media_level_connection_overrides_session() {
    let text = SIPP.replace("a=rtpmap:0 PCMU/8000\r\n", "c=IN IP4 198.51.100.2/127\r\n");
    let (_, n) = answer(&text);
    assert_eq!(n.remote, "198.51.100.2:6000".parse::<SocketAddr>().unwrap());
}

#[test]
fn direction_is_mirrored() {
    for (offered, expect) in [
        ("sendonly", Direction::RecvOnly),
        ("recvonly", Direction::SendOnly),
        ("inactive", Direction::Inactive),
        ("sendrecv", Direction::SendRecv),
    ] {
        let text = format!("{SIPP}a={offered}\r\n");
        let (ans, n) = answer(&text);
        assert_eq!(n.direction, expect, "{offered}");
        assert!(ans.to_string().contains(&format!("a={}\r\n", expect.as_str())));
    }
    // Session-level direction applies to media without one.
    let text = SIPP.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
    assert_eq!(answer(&text).1.direction, Direction::RecvOnly);
    // We can further restrict: we only want to send.
    let offer = SessionDescription::parse(SIPP).unwrap();
    let (_, n) = session().answer(&offer, Direction::SendOnly).unwrap();
    assert_eq!(n.direction, Direction::SendOnly);
}

#[test]
fn old_style_hold_with_zero_address() {
    let text = SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let (_, n) = answer(&text);
    assert_eq!(n.direction, Direction::RecvOnly);
    assert!(n.remote.ip().is_unspecified());
}

#[test]
fn no_common_codec_is_not_acceptable() {
    let g729 = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let offer = SessionDescription::parse(g729).unwrap();
    let err = session().answer(&offer, Direction::SendRecv).unwrap_err();
    assert!(err.is_not_acceptable());
    // SRTP-only and video-only offers are not acceptable either.
    let srtp = SIPP.replace("RTP/AVP", "RTP/SAVP");
    let e = session().answer(&SessionDescription::parse(&srtp).unwrap(), Direction::SendRecv);
    assert_eq!(e.unwrap_err(), SdpError::NotAcceptable);
    // PCMU at the wrong clock rate is not PCMU.
    let odd = SIPP.replace("PCMU/8000", "PCMU/16000");
    assert!(session().answer(&SessionDescription::parse(&odd).unwrap(), Direction::SendRecv).is_err());
}

#[test]
fn missing_connection_is_an_error() {
    let text = SIPP.replace("c=IN IP4 127.0.0.1\r\n", "");
    let e = session().answer(&SessionDescription::parse(&text).unwrap(), Direction::SendRecv);
    assert_eq!(e.unwrap_err(), SdpError::MissingConnection);
}

#[test]
fn offer_generation_and_version_bump() {
    let mut cfg = SdpConfig::new(IpAddr::from([192, 0, 2, 1]), 30000);
    cfg.dtmf_pt = 96;
    let mut s = SdpSession::new(cfg, 1000);
    let o1 = s.create_offer(Direction::SendRecv);
    let text = o1.to_string();
    assert!(text.starts_with("v=0\r\no=clinivox 1000 1000 IN IP4 192.0.2.1\r\n"), "{text}");
    assert!(text.contains("m=audio 30000 RTP/AVP 0 8 96\r\n"));
    assert!(text.contains("a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=ptime:20\r\n"));
    let o2 = s.create_offer(Direction::SendOnly);
    assert_eq!(o2.origin.session_version, 1001);
    assert_eq!(o2.origin.session_id, 1000);
    assert_eq!(o2.media[0].direction, Some(Direction::SendOnly));
    assert_eq!(SessionDescription::parse(&o2.to_string()).unwrap(), o2);
}

#[test]
fn accept_answer_to_our_offer() {
    let mut s = session();
    s.create_offer(Direction::SendRecv);
    let ans = "v=0\r\no=- 5 6 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n";
    let n = s.accept_answer(&SessionDescription::parse(ans).unwrap()).unwrap();
    assert_eq!((n.codec, n.codec_pt, n.dtmf_pt), (Codec::Pcma, 8, Some(101)));
    assert_eq!(n.direction, Direction::SendOnly);
    assert_eq!(n.remote, SocketAddr::from((Ipv4Addr::new(10, 1, 1, 1), 20000)));
    let rejected = ans.replace("m=audio 20000", "m=audio 0");
    let e = s.accept_answer(&SessionDescription::parse(&rejected).unwrap());
    assert!(e.unwrap_err().is_not_acceptable());
    assert!(session().accept_answer(&SessionDescription::parse(ans).unwrap()).is_err());
}

#[test]
fn malformed_sdp_is_an_error() {
    let bad = [
        "",
        "garbage",
        "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\ns=-\r\n",
        "o=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 not-an-ip\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP6 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio port RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 0\r\na=rtpmap:300 X/8000\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=\r\n",
    ];
    for b in bad {
        assert!(SessionDescription::parse(b).is_err(), "{b:?}");
    }
}

#[test]
fn parser_never_panics_on_mangled_input() {
    // Every prefix and every single-byte corruption of real offers.
    for text in [SIPP, BARESIP, ASTERISK, LINPHONE] {
        for cut in 0..text.len() {
            let _ = SessionDescription::parse(&text[..cut]);
        }
        let bytes = text.as_bytes();
        for i in 0..bytes.len() {
            for b in [b'=', b' ', b'/', b':', b'\n', 0xC3] {
                let mut v = bytes.to_vec();
                v[i] = b;
                if let Ok(s) = std::str::from_utf8(&v) {
                    if let Ok(sdp) = SessionDescription::parse(s) {
                        let _ = session().answer(&sdp, Direction::SendRecv);
                    }
                }
            }
        }
    }
}
