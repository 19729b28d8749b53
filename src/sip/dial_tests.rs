//! Outbound calls through a trunk that demands credentials, driven with
//! fake time through the sans-IO endpoint: the ACK for the 2xx follows the
//! dialog (§13.2.2.4).

use std::net::SocketAddr;
use std::time::Instant;

use super::*;

const PROXY: &str = "192.0.2.10:5060";

fn endpoint() -> Endpoint {
    Endpoint::for_test(&format!(
        r#"
listen = [{{ transport = "udp", addr = "198.51.100.7:5060" }}]
[[trunks]]
name = "carrier"
proxy = "{PROXY}"
username = "clinic"
password = "trunkpw"
"#
    ))
}

fn proxy() -> Peer {
    Peer { transport: Transport::Udp, addr: PROXY.parse().unwrap() }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

/// Everything sent to the proxy so far, as text.
fn sent(ep: &mut Endpoint) -> Vec<String> {
    std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| {
            assert_eq!(t.peer, proxy());
            String::from_utf8(t.bytes).unwrap()
        })
        .collect()
}

/// The proxy's (or, through it, the phone's) response to `req`.
fn answer(req: &str, status: &str, extra: &str, body: &str) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let v = header(req, h).unwrap();
        let v = if h == "To" { format!("{v};tag=phone") } else { v.to_string() };
        out.push_str(&format!("{h}: {v}\r\n"));
    }
    out.push_str(extra);
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

const SDP: &str =
    "v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

#[test]
fn the_ack_for_a_2xx_goes_to_the_remote_target_along_the_route_set_with_the_invites_credentials() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let target = DialTarget::Number { number: "+34600999888".into(), trunk: None };
    ep.dial(t0, 0, target, "198.51.100.7:40000".parse().unwrap()).unwrap();
    let first = sent(&mut ep).pop().expect("an INVITE");
    assert!(first.starts_with("INVITE sip:+34600999888@192.0.2.10:5060 SIP/2.0\r\n"), "{first}");
    let challenge = "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"\r\n";
    ep.handle_input(t0, 0, proxy(), &answer(&first, "407 Proxy Authentication Required", challenge, ""));
    let second = sent(&mut ep).into_iter().find(|m| m.starts_with("INVITE ")).expect("the INVITE again, with credentials");
    let credentials = header(&second, "Proxy-Authorization").expect("credentials");
    assert_eq!(header(&second, "CSeq"), Some("2 INVITE"));

    let extra = "Contact: <sip:+34600999888-0x1@192.0.2.20:5090>\r\n\
                 Record-Route: <sip:192.0.2.10:5060;lr;ftag=x>\r\n\
                 Content-Type: application/sdp\r\n";
    ep.handle_input(t0, 0, proxy(), &answer(&second, "200 OK", extra, SDP));
    let ack = sent(&mut ep).into_iter().find(|m| m.starts_with("ACK ")).expect("an ACK");
    assert!(ack.starts_with("ACK sip:+34600999888-0x1@192.0.2.20:5090 SIP/2.0\r\n"), "the remote target:\n{ack}");
    assert_eq!(header(&ack, "Route"), Some("<sip:192.0.2.10:5060;lr;ftag=x>"));
    assert_eq!(header(&ack, "CSeq"), Some("2 ACK"));
    assert!(header(&ack, "To").is_some_and(|t| t.ends_with(";tag=phone")), "{ack}");
    assert_eq!(header(&ack, "Proxy-Authorization"), Some(credentials), "the INVITE's credentials");
    assert!(std::iter::from_fn(|| ep.poll_event()).any(|e| matches!(e, EndpointEvent::Answered { .. })));
}

/// Issue 13: trunk dialling stays within `dial_allow` (the clinic's country
/// by default): a foreign or premium number is refused before anything is
/// sent, in international, `00` and national form alike.
#[test]
fn numbers_outside_the_dial_allow_list_are_refused_before_anything_is_sent() {
    let mut ep = Endpoint::for_test(&format!(
        r#"
listen = [{{ transport = "udp", addr = "198.51.100.7:5060" }}]
dial_allow = ["+346", "+347", "+349"]
home_country_code = "+34"
[[trunks]]
name = "carrier"
proxy = "{PROXY}"
"#
    ));
    let t0 = Instant::now();
    let rtp: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let dial = |ep: &mut Endpoint, n: &str| ep.dial(t0, 0, DialTarget::Number { number: n.into(), trunk: None }, rtp);
    for refused in ["+447911123456", "0044909123456", "803123456", "+34806123456"] {
        assert!(matches!(dial(&mut ep, refused), Err(CallError::NotAllowed(_))), "{refused}");
        assert!(sent(&mut ep).is_empty(), "{refused}: nothing goes out");
    }
    for allowed in ["+34600111222", "0034711222333", "912345678"] {
        assert!(dial(&mut ep, allowed).is_ok(), "{allowed}");
        assert!(sent(&mut ep).iter().any(|m| m.starts_with("INVITE ")), "{allowed}");
    }
}
