//! In-dialog requests are taken only from the dialog's peer: a stranger who
//! knows a call's Call-ID and tags gets 403 and the call goes on. Driven
//! through the sans-IO endpoint with fake time.

use std::time::Instant;

use super::*;

const CARRIER: &str = "192.0.2.10:5060";
const STRANGER: &str = "203.0.113.66:5060";

fn endpoint() -> Endpoint {
    Endpoint::for_test(
        r#"
listen = [{ transport = "udp", addr = "198.51.100.7:5060" }]
numbers = ["1000"]
[[trunks]]
name = "carrier"
cidrs = ["192.0.2.0/28"]
"#,
    )
}

fn udp(addr: &str) -> Peer {
    Peer { transport: Transport::Udp, addr: addr.parse().unwrap() }
}

const SDP: &str =
    "v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// A request in the call `call1` as the caller (From tag `caller`) sends it.
fn request(method: &str, from: &str, cseq: u32, to_tag: Option<&str>, extra: &str, body: &str) -> Vec<u8> {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:1000@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{method}{cseq}x{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+34600111222@192.0.2.10>;tag=caller\r\nTo: <sip:1000@198.51.100.7>{to_tag}\r\n\
         Call-ID: call1@192.0.2.10\r\nCSeq: {cseq} {method}\r\nContact: <sip:+34600111222@{CARRIER}>\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        from.replace([':', '.'], ""),
        body.len()
    )
    .into_bytes()
}

/// Status codes sent to `to` since the last call.
fn answers_to(ep: &mut Endpoint, to: &str) -> Vec<u16> {
    let to = udp(to);
    std::iter::from_fn(|| ep.poll_transmit())
        .filter(|t| t.peer == to)
        .filter_map(|t| String::from_utf8(t.bytes).ok()?.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok())
        .collect()
}

/// An answered inbound call from the carrier; returns its id and our tag.
fn established(ep: &mut Endpoint, t0: Instant) -> (CallId, String) {
    let sdp = "Content-Type: application/sdp\r\n";
    ep.handle_input(t0, 0, udp(CARRIER), &request("INVITE", CARRIER, 1, None, sdp, SDP));
    let Some(EndpointEvent::Incoming { call, .. }) = ep.poll_event() else { panic!("an incoming call") };
    ep.answer(t0, call, "198.51.100.7:40000".parse().unwrap()).unwrap();
    let ok = std::iter::from_fn(|| ep.poll_transmit()).map(|t| String::from_utf8(t.bytes).unwrap()).find(|m| m.starts_with("SIP/2.0 200"));
    let ok = ok.expect("200 OK to the INVITE");
    let to = ok.lines().find_map(|l| l.strip_prefix("To: ")).unwrap();
    let tag = to.rsplit_once(";tag=").unwrap().1.to_string();
    ep.handle_input(t0, 0, udp(CARRIER), &request("ACK", CARRIER, 1, Some(&tag), "", ""));
    assert_eq!(ep.poll_event(), Some(EndpointEvent::Confirmed { call }), "the ACK confirms the call");
    (call, tag)
}

#[test]
fn bye_info_and_reinvite_from_a_stranger_are_refused_and_the_call_goes_on() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, tag) = established(&mut ep, t0);
    let _ = answers_to(&mut ep, CARRIER);
    ep.handle_input(t0, 0, udp(STRANGER), &request("BYE", STRANGER, 2, Some(&tag), "", ""));
    let dtmf = "Content-Type: application/dtmf-relay\r\n";
    ep.handle_input(t0, 0, udp(STRANGER), &request("INFO", STRANGER, 3, Some(&tag), dtmf, "Signal=1\r\nDuration=160\r\n"));
    let moved = SDP.replace("192.0.2.20", "203.0.113.66");
    ep.handle_input(t0, 0, udp(STRANGER), &request("INVITE", STRANGER, 4, Some(&tag), "Content-Type: application/sdp\r\n", &moved));
    assert_eq!(answers_to(&mut ep, STRANGER), [403, 403, 403]);
    assert_eq!(ep.poll_event(), None, "no hang-up, no key, no new media");
    assert_eq!((ep.active_calls(), ep.stats().strangers), (1, 3));
    // The same requests from the carrier act on the call.
    ep.handle_input(t0, 0, udp(CARRIER), &request("INFO", CARRIER, 5, Some(&tag), dtmf, "Signal=1\r\nDuration=160\r\n"));
    assert_eq!(ep.poll_event(), Some(EndpointEvent::InfoDtmf { call, digit: '1' }));
    ep.handle_input(t0, 0, udp(CARRIER), &request("BYE", CARRIER, 6, Some(&tag), "", ""));
    assert_eq!(answers_to(&mut ep, CARRIER), [200, 200]);
    assert_eq!(ep.poll_event(), Some(EndpointEvent::Ended { call, reason: EndReason::RemoteBye }));
    assert_eq!(ep.active_calls(), 0);
}

#[test]
fn a_trunks_dialog_takes_requests_from_any_of_its_addresses() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let (call, tag) = established(&mut ep, t0);
    // Another proxy of the same carrier (inside its CIDR) may end the call.
    let other = "192.0.2.11:5062";
    ep.handle_input(t0, 0, udp(other), &request("BYE", other, 2, Some(&tag), "", ""));
    assert_eq!(answers_to(&mut ep, other), [200]);
    assert_eq!(ep.poll_event(), Some(EndpointEvent::Ended { call, reason: EndReason::RemoteBye }));
}

#[test]
fn a_direct_calls_dialog_takes_requests_only_from_its_peers_address() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let phone = "198.51.100.50:5070";
    let id = ep.dial(t0, 0, DialTarget::Uri(format!("sip:desk@{phone}")), "198.51.100.7:40000".parse().unwrap()).unwrap();
    let invite = std::iter::from_fn(|| ep.poll_transmit()).map(|t| String::from_utf8(t.bytes).unwrap()).last().unwrap();
    let header = |name: &str| invite.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": "))).unwrap();
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=desk\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:desk@{phone}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        header("Via"),
        header("From"),
        header("To"),
        header("Call-ID"),
        SDP.len()
    );
    ep.handle_input(t0, 0, udp(phone), ok.as_bytes());
    assert!(std::iter::from_fn(|| ep.poll_event()).any(|e| matches!(e, EndpointEvent::Answered { .. })));
    let _ = std::iter::from_fn(|| ep.poll_transmit()).count();
    let our_tag = header("From").rsplit_once(";tag=").unwrap().1.to_string();
    let bye = |from: &str, cseq: u32| {
        format!(
            "BYE sip:clinivox@198.51.100.7:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKbye{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:desk@{phone}>;tag=desk\r\nTo: <sip:clinivox@clinivox.local>;tag={our_tag}\r\nCall-ID: {}\r\n\
             CSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n",
            header("Call-ID")
        )
    };
    // Same host, another port: not the dialog's peer.
    let neighbour = "198.51.100.50:5080";
    ep.handle_input(t0, 0, udp(neighbour), bye(neighbour, 1).as_bytes());
    assert_eq!(answers_to(&mut ep, neighbour), [403]);
    assert_eq!(ep.poll_event(), None);
    ep.handle_input(t0, 0, udp(phone), bye(phone, 2).as_bytes());
    assert_eq!(answers_to(&mut ep, phone), [200]);
    assert_eq!(ep.poll_event(), Some(EndpointEvent::Ended { call: id, reason: EndReason::RemoteBye }));
}

/// Behind a proxy that records the route (Kamailio spreading calls over
/// nodes), the 180 and the 200 carry the INVITE's Record-Route values in
/// order (RFC 3261 §12.1.1), so that the caller's ACK and BYE come back
/// through the proxy to this node; our own BYE goes out through it too.
#[test]
fn ringing_and_answer_carry_the_proxys_record_route() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let rr = "Record-Route: <sip:192.0.2.10;lr;ftag=caller>\r\nRecord-Route: <sip:192.0.2.11;lr>\r\nContent-Type: application/sdp\r\n";
    ep.handle_input(t0, 0, udp(CARRIER), &request("INVITE", CARRIER, 1, None, rr, SDP));
    let Some(EndpointEvent::Incoming { call, .. }) = ep.poll_event() else { panic!("an incoming call") };
    ep.ring(t0, call).unwrap();
    ep.answer(t0, call, "198.51.100.7:40000".parse().unwrap()).unwrap();
    let sent: Vec<String> = std::iter::from_fn(|| ep.poll_transmit()).map(|t| String::from_utf8(t.bytes).unwrap()).collect();
    let routes = |m: &str| m.lines().filter_map(|l| l.strip_prefix("Record-Route: ")).map(str::to_string).collect::<Vec<_>>();
    for code in ["SIP/2.0 180", "SIP/2.0 200"] {
        let m = sent.iter().find(|m| m.starts_with(code)).unwrap_or_else(|| panic!("no {code}: {sent:?}"));
        assert_eq!(routes(m), ["<sip:192.0.2.10;lr;ftag=caller>", "<sip:192.0.2.11;lr>"], "{m}");
    }
    assert!(routes(sent.iter().find(|m| m.starts_with("SIP/2.0 100")).unwrap()).is_empty(), "100 establishes nothing");
    let ok = sent.iter().find(|m| m.starts_with("SIP/2.0 200")).unwrap();
    let tag = ok.lines().find_map(|l| l.strip_prefix("To: ")).unwrap().rsplit_once(";tag=").unwrap().1.to_string();
    ep.handle_input(t0, 0, udp(CARRIER), &request("ACK", CARRIER, 1, Some(&tag), "", ""));
    ep.hangup(t0, call).unwrap();
    let bye = std::iter::from_fn(|| ep.poll_transmit()).map(|t| String::from_utf8(t.bytes).unwrap()).find(|m| m.starts_with("BYE "));
    let bye = bye.expect("our BYE");
    assert_eq!(
        bye.lines().filter_map(|l| l.strip_prefix("Route: ")).collect::<Vec<_>>(),
        ["<sip:192.0.2.10;lr;ftag=caller>", "<sip:192.0.2.11;lr>"],
        "a UAS's route set is the request's Record-Route in order (§12.1.1): {bye}"
    );
}
