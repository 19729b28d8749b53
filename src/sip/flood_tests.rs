//! Flood protection through the sans-IO endpoint, with fake time: a
//! stranger's requests are answered once and statelessly, a flood is cut
//! to the source's rate, trunks are served throughout, and transactions
//! are capped.

use std::time::{Duration, Instant};

use super::*;

const TRUNK: &str = "192.0.2.10:5060";
const STRANGER: &str = "203.0.113.66:5060";

fn endpoint(extra: &str) -> Endpoint {
    Endpoint::for_test(&format!(
        r#"
listen = [{{ transport = "udp", addr = "198.51.100.7:5060" }}]
numbers = ["1000"]
user_agent = "Clinivox"
[[trunks]]
name = "carrier"
cidrs = ["192.0.2.0/24"]
[[extensions]]
number = "201"
password = "secret201"
{extra}
"#
    ))
}

fn udp(addr: &str) -> Peer {
    Peer { transport: Transport::Udp, addr: addr.parse().unwrap() }
}

fn request(method: &str, to_user: &str, n: u32) -> Vec<u8> {
    let body = if method == "INVITE" {
        "v=0\r\no=- 1 1 IN IP4 203.0.113.66\r\ns=-\r\nc=IN IP4 203.0.113.66\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    } else {
        ""
    };
    let ct = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
    format!(
        "{method} sip:{to_user}@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bK{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:x@203.0.113.66>;tag=f{n}\r\nTo: <sip:{to_user}@198.51.100.7>\r\n\
         Call-ID: c{n}@x\r\nCSeq: 1 {method}\r\nContact: <sip:x@203.0.113.66>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn sent(ep: &mut Endpoint) -> Vec<String> {
    std::iter::from_fn(|| ep.poll_transmit()).map(|t| String::from_utf8_lossy(&t.bytes).into_owned()).collect()
}

/// Run every timer for `secs` seconds; what went out meanwhile.
fn run_timers(ep: &mut Endpoint, from: Instant, secs: u64) -> Vec<String> {
    let end = from + Duration::from_secs(secs);
    let mut out = Vec::new();
    while let Some(t) = ep.poll_timeout().filter(|t| *t <= end) {
        ep.handle_timeout(t, 0);
        out.extend(sent(ep));
    }
    out
}

#[test]
fn strangers_invite_answered_once_statelessly_without_server() {
    let mut ep = endpoint("");
    let t0 = Instant::now();
    ep.handle_input(t0, 0, udp(STRANGER), &request("INVITE", "1000", 1));
    let out = sent(&mut ep);
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("SIP/2.0 403 "), "{}", out[0]);
    assert!(!out[0].contains("Server:"), "{}", out[0]);
    assert_eq!(ep.tx.len(), (0, 0), "no transaction for a stranger");
    // Never retransmitted (an INVITE transaction resent its 403 ~11 times).
    assert!(run_timers(&mut ep, t0, 40).iter().all(|m| !m.starts_with("SIP/2.0 403")));
    // The same request again gets the same To tag (RFC 3261 §8.2.7).
    ep.handle_input(t0, 0, udp(STRANGER), &request("INVITE", "1000", 1));
    let again = sent(&mut ep);
    let to = |m: &str| m.lines().find(|l| l.starts_with("To:")).map(str::to_string);
    assert_eq!(to(&out[0]), to(&again[0]));
    // ACK and CANCEL from strangers are ignored (§8.2.7).
    ep.handle_input(t0, 0, udp(STRANGER), &request("CANCEL", "1000", 1));
    assert!(sent(&mut ep).is_empty());
}

#[test]
fn flood_is_cut_to_the_rate_and_never_amplified() {
    let mut ep = endpoint("");
    let t0 = Instant::now();
    let (mut bytes_in, mut bytes_out, mut answers) = (0usize, 0usize, 0usize);
    // 5,000 INVITEs in 2 s from one stranger, OPTIONS from the trunk among them.
    for i in 0..5_000u32 {
        let now = t0 + Duration::from_micros(400 * u64::from(i));
        let inv = request("INVITE", "1000", i);
        bytes_in += inv.len();
        ep.handle_input(now, 0, udp(STRANGER), &inv);
        for t in std::iter::from_fn(|| ep.poll_transmit()) {
            assert_eq!(t.peer, udp(STRANGER));
            bytes_out += t.bytes.len();
            answers += 1;
        }
        if i % 500 == 0 {
            ep.handle_input(now, 0, udp(TRUNK), &request("OPTIONS", "1000", 100_000 + i));
            let out = sent(&mut ep);
            assert!(out.len() == 1 && out[0].starts_with("SIP/2.0 200 "), "trunk OPTIONS during the flood: {out:?}");
        }
    }
    // Burst 30 plus 15/s for 2 s.
    assert!((30..=62).contains(&answers), "{answers} answers");
    assert!(bytes_out < bytes_in / 50, "{bytes_out} bytes out for {bytes_in} in");
    assert_eq!(ep.stats().rate_dropped, 5_000 - answers as u64);
    assert_eq!(ep.tx.len().0, 10, "only the trunk's OPTIONS made transactions");
    // A trunk's INVITE is served at once (404 here: unknown number).
    ep.handle_input(t0 + Duration::from_secs(2), 0, udp(TRUNK), &request("INVITE", "999", 7_777));
    assert!(sent(&mut ep).iter().any(|m| m.starts_with("SIP/2.0 404 ")));
}

#[test]
fn options_from_strangers_tell_nothing() {
    let mut ep = endpoint("");
    let t0 = Instant::now();
    ep.handle_input(t0, 0, udp(STRANGER), &request("OPTIONS", "1000", 1));
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 200 "), "{out:?}");
    for h in ["Allow:", "Server:", "Supported:", "Accept:"] {
        assert!(!out[0].contains(h), "{h} told to a stranger: {}", out[0]);
    }
    // Methods we do not take are refused without listing ours either.
    ep.handle_input(t0, 0, udp(STRANGER), &request("SUBSCRIBE", "1000", 2));
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 403 ") && !out[0].contains("Allow:"), "{out:?}");
    // A trunk still gets the full answer.
    ep.handle_input(t0, 0, udp(TRUNK), &request("OPTIONS", "1000", 3));
    let out = sent(&mut ep);
    assert!(out[0].contains("Allow: INVITE") && out[0].contains("Server: Clinivox"), "{out:?}");
}

#[test]
fn empty_user_agent_sends_no_server_header() {
    let mut ep = endpoint("");
    ep.cfg.user_agent.clear();
    ep.handle_input(Instant::now(), 0, udp(TRUNK), &request("OPTIONS", "1000", 3));
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 200 ") && !out[0].contains("Server:"), "{out:?}");
}

#[test]
fn phones_register_through_a_stateless_challenge() {
    let mut ep = endpoint("");
    let t0 = Instant::now();
    ep.handle_input(t0, 1_000, udp(STRANGER), &request("REGISTER", "201", 1));
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 401 ") && out[0].contains("WWW-Authenticate: Digest"), "{out:?}");
    assert_eq!(ep.tx.len(), (0, 0));
}

#[test]
fn transactions_capped_with_stateless_503() {
    let mut ep = endpoint("[limits]\nmax_transactions = 3\n");
    let t0 = Instant::now();
    let mut codes = Vec::new();
    for n in 0..5 {
        ep.handle_input(t0, 0, udp(TRUNK), &request("OPTIONS", "1000", n));
        codes.extend(sent(&mut ep).iter().map(|m| m[8..11].to_string()));
    }
    assert_eq!(codes, ["200", "200", "200", "503", "503"]);
    ep.handle_input(t0, 0, udp(TRUNK), &request("OPTIONS", "1000", 9));
    assert!(sent(&mut ep)[0].contains("Retry-After: 10\r\n"));
    assert_eq!(ep.tx.len().0, 3, "503s made no transaction");
    // A retransmission of a live transaction is still absorbed, not refused.
    ep.handle_input(t0, 0, udp(TRUNK), &request("OPTIONS", "1000", 0));
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 200 "));
    // Once Timer J has run out there is room again.
    run_timers(&mut ep, t0, 33);
    ep.handle_input(t0 + Duration::from_secs(33), 0, udp(TRUNK), &request("OPTIONS", "1000", 10));
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 200 "));
}
