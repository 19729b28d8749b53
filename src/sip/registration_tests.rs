//! Our registration to a carrier, driven with fake time through the
//! sans-IO endpoint: challenge answered, refresh at half the granted
//! expiry, back-off after a refusal, calls to the contact accepted.

use std::time::{Duration, Instant};

use super::*;
use crate::sip::headers::AuthParams;

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
register = true
register_expires_s = 300
"#
    ))
}

fn proxy() -> Peer {
    Peer { transport: Transport::Udp, addr: PROXY.parse().unwrap() }
}

/// The next REGISTER sent, as text.
fn sent_register(ep: &mut Endpoint) -> String {
    let t = ep.poll_transmit().expect("a REGISTER goes out");
    assert_eq!(t.peer, proxy());
    let text = String::from_utf8(t.bytes).unwrap();
    assert!(text.starts_with("REGISTER sip:192.0.2.10:5060 SIP/2.0\r\n"), "{text}");
    text
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

/// A response to `req` with extra header lines.
fn answer(req: &str, status: &str, extra: &str) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let v = header(req, h).unwrap();
        let v = if h == "To" { format!("{v};tag=carrier") } else { v.to_string() };
        out.push_str(&format!("{h}: {v}\r\n"));
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

fn events(ep: &mut Endpoint) -> Vec<EndpointEvent> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

#[test]
fn challenge_answered_then_refreshed_at_half_the_granted_expiry() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    ep.handle_timeout(t0, 1_000);
    let first = sent_register(&mut ep);
    assert_eq!(header(&first, "Expires"), Some("300"));
    assert_eq!(header(&first, "Contact"), Some("<sip:clinic@198.51.100.7:5060>"));
    assert_eq!(header(&first, "CSeq"), Some("1 REGISTER"));
    ep.handle_input(
        t0,
        1_000,
        proxy(),
        &answer(&first, "401 Unauthorized", "WWW-Authenticate: Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"\r\n"),
    );
    let second = sent_register(&mut ep);
    assert_eq!(header(&second, "CSeq"), Some("2 REGISTER"));
    assert_eq!(header(&second, "Call-ID"), header(&first, "Call-ID"), "same registration, same Call-ID");
    let auth = AuthParams::parse(header(&second, "Authorization").expect("credentials")).unwrap();
    let expected = crate::sip::digest::response(&crate::sip::digest::DigestInput {
        algorithm: crate::sip::digest::Algorithm::Md5,
        username: "clinic",
        realm: "carrier",
        password: "trunkpw",
        method: "REGISTER",
        uri: "sip:192.0.2.10:5060",
        nonce: "n1",
        qop_auth: Some(("00000001", auth.get("cnonce").unwrap())),
    });
    assert_eq!(auth.get("response"), Some(expected.as_str()));
    ep.handle_input(t0, 1_000, proxy(), &answer(&second, "200 OK", "Contact: <sip:clinic@198.51.100.7:5060>;expires=120\r\n"));
    assert_eq!(
        events(&mut ep),
        vec![EndpointEvent::Registration { trunk: "carrier".into(), status: RegistrationStatus::Registered { expires_s: 120 } }]
    );
    // Nothing more until half of the 120 s granted.
    ep.handle_timeout(t0 + Duration::from_secs(30), 1_030);
    assert!(ep.poll_transmit().is_none());
    ep.handle_timeout(t0 + Duration::from_secs(59), 1_059);
    assert!(ep.poll_transmit().is_none());
    ep.handle_timeout(t0 + Duration::from_secs(60), 1_060);
    let refresh = sent_register(&mut ep);
    assert_eq!(header(&refresh, "CSeq"), Some("3 REGISTER"));
}

#[test]
fn refusal_backs_off_and_a_wrong_password_is_not_retried_in_a_loop() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    ep.handle_timeout(t0, 0);
    let first = sent_register(&mut ep);
    let challenge = "WWW-Authenticate: Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5\r\n";
    ep.handle_input(t0, 0, proxy(), &answer(&first, "401 Unauthorized", challenge));
    let second = sent_register(&mut ep);
    // Credentials refused: a second 401 is a failure, not another round.
    ep.handle_input(t0, 0, proxy(), &answer(&second, "401 Unauthorized", challenge));
    assert!(ep.poll_transmit().is_none());
    assert_eq!(
        events(&mut ep),
        vec![EndpointEvent::Registration { trunk: "carrier".into(), status: RegistrationStatus::Failed { code: 401 } }]
    );
    ep.handle_timeout(t0 + Duration::from_secs(29), 29);
    assert!(ep.poll_transmit().is_none(), "no retry before 30 s");
    ep.handle_timeout(t0 + Duration::from_secs(30), 30);
    let retry = sent_register(&mut ep);
    ep.handle_input(t0 + Duration::from_secs(30), 30, proxy(), &answer(&retry, "403 Forbidden", ""));
    // The second failure waits twice as long.
    ep.handle_timeout(t0 + Duration::from_secs(89), 89);
    assert!(ep.poll_transmit().is_none(), "no retry before 60 s more");
    ep.handle_timeout(t0 + Duration::from_secs(90), 90);
    sent_register(&mut ep);
}

#[test]
fn calls_from_the_carrier_to_the_registered_contact_are_accepted() {
    let ep = endpoint();
    assert!(ep.config().owns_number("clinic"), "the registered user is one of our numbers");
    assert_eq!(ep.config().trunk_for_source("192.0.2.10".parse().unwrap()).map(|t| t.name.as_str()), Some("carrier"));
}
