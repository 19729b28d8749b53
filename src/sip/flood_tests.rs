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
fn work_in_progress_capped_with_stateless_503() {
    let mut ep = endpoint("[limits]\nmax_transactions = 3\n");
    let t0 = Instant::now();
    // Three calls the application has not answered yet: three requests at work.
    let mut calls = Vec::new();
    for n in 0..3 {
        ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", n));
        assert!(sent(&mut ep)[0].starts_with("SIP/2.0 100 "));
        let Some(EndpointEvent::Incoming { call, .. }) = ep.poll_event() else { panic!("an incoming call") };
        calls.push(call);
    }
    let mut codes = Vec::new();
    for n in 3..5 {
        ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", n));
        codes.extend(sent(&mut ep).iter().map(|m| m[8..11].to_string()));
    }
    assert_eq!(codes, ["503", "503"]);
    ep.handle_input(t0, 0, udp(TRUNK), &request("OPTIONS", "1000", 9));
    assert!(sent(&mut ep)[0].contains("Retry-After: 10\r\n"));
    assert_eq!(ep.tx.len().0, 3, "503s made no transaction");
    assert!(ep.poll_event().is_none(), "and no call");
    // A retransmission of a live transaction is still absorbed, not refused.
    ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", 0));
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 100 "));
    // Once one is answered finally there is room again, though its
    // transaction lingers to absorb retransmissions.
    ep.reject(t0, calls[0], 486).unwrap();
    sent(&mut ep);
    ep.handle_input(t0, 0, udp(TRUNK), &request("OPTIONS", "1000", 10));
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 200 "));
}

#[test]
fn answered_transactions_linger_within_their_own_bound() {
    // At a trunk's steady rate, transactions that answered (kept 32 s for
    // retransmissions) must not fill the cap and refuse every call.
    let mut ep = endpoint("[limits]\nmax_transactions = 3\n");
    let t0 = Instant::now();
    for n in 0..100 {
        ep.handle_input(t0 + Duration::from_millis(n.into()), 0, udp(TRUNK), &request("OPTIONS", "1000", n));
        let out = sent(&mut ep);
        assert!(out[0].starts_with("SIP/2.0 200 "), "request {n}: {out:?}");
    }
    // Bounded at eight times the cap, the oldest given up first.
    assert_eq!(ep.tx.len().0, 24);
    ep.handle_input(t0, 0, udp(TRUNK), &request("OPTIONS", "1000", 99));
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 200 "), "the newest still absorbs its retransmission");
    run_timers(&mut ep, t0, 33);
    assert_eq!(ep.tx.len().0, 0, "Timer J lets them all go");
}

#[test]
fn an_invite_repeated_after_its_transaction_was_given_up_makes_no_second_call() {
    let mut ep = endpoint("[limits]\nmax_transactions = 1\n");
    let t0 = Instant::now();
    ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", 1));
    sent(&mut ep);
    let Some(EndpointEvent::Incoming { call, .. }) = ep.poll_event() else { panic!("an incoming call") };
    ep.answer(t0, call, "198.51.100.7:20000".parse().unwrap()).unwrap();
    sent(&mut ep);
    // Eight other answered requests push the INVITE's lingering transaction out.
    for n in 100..109 {
        ep.handle_input(t0, 0, udp(TRUNK), &request("OPTIONS", "1000", n));
        sent(&mut ep);
    }
    while ep.poll_event().is_some() {}
    ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", 1));
    let out = sent(&mut ep);
    assert!(out.iter().all(|m| !m.starts_with("SIP/2.0 100 ")), "{out:?}");
    assert!(!std::iter::from_fn(|| ep.poll_event()).any(|e| matches!(e, EndpointEvent::Incoming { .. })), "no second call");
    assert_eq!(ep.tx.server_pending(), 0);
}

#[test]
fn call_timers_are_queued_not_scanned_and_the_queue_stays_bounded() {
    let mut ep = endpoint("[limits]\nmax_transactions = 100000\nmax_calls = 5000\n");
    let t0 = Instant::now();
    // Calls answered and never ACKed: each retransmits its 2xx on its own timer.
    let calls = 3000;
    for n in 0..calls {
        ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", n));
        let Some(EndpointEvent::Incoming { call, .. }) = ep.poll_event() else { panic!("an incoming call") };
        ep.answer(t0, call, "198.51.100.7:20000".parse().unwrap()).unwrap();
    }
    sent(&mut ep);
    assert_eq!(ep.active_calls(), calls as usize);
    assert!(ep.call_timers.len() <= 1024 + 4 * calls as usize, "{}", ep.call_timers.len());
    // The first 2xx retransmissions are due at T1, and found without a scan.
    let first = ep.poll_timeout().expect("timers");
    assert!(first <= t0 + Duration::from_millis(500), "{:?}", first - t0);
    let out = run_timers(&mut ep, t0, 200);
    assert!(out.iter().filter(|m| m.starts_with("SIP/2.0 200 ")).count() >= calls as usize * 6, "2xx retransmitted on schedule");
    assert_eq!(ep.active_calls(), 0, "calls never ACKed end");
    assert!(ep.call_timers.is_empty(), "and leave nothing queued: {}", ep.call_timers.len());
}

#[test]
fn a_bye_is_never_refused_for_overload() {
    let mut ep = endpoint("[limits]\nmax_transactions = 1\n");
    let t0 = Instant::now();
    ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", 1));
    let Some(EndpointEvent::Incoming { call, .. }) = ep.poll_event() else { panic!("an incoming call") };
    ep.answer(t0, call, "198.51.100.7:20000".parse().unwrap()).unwrap();
    let ok = sent(&mut ep).into_iter().find(|m| m.starts_with("SIP/2.0 200 ")).expect("answered");
    let to = ok.lines().find(|l| l.starts_with("To:")).unwrap().to_string();
    // A second call the application has not answered: the cap is reached.
    ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", 2));
    assert!(matches!(ep.poll_event(), Some(EndpointEvent::Incoming { .. })));
    sent(&mut ep);
    ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", 3));
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 503 "), "a new call is refused");
    // The first call's BYE still ends it.
    let bye =
        String::from_utf8(request("BYE", "1000", 1)).unwrap().replace("z9hG4bK1", "z9hG4bKbye1").replace("CSeq: 1 BYE", "CSeq: 2 BYE");
    let bye = bye.lines().map(|l| if l.starts_with("To:") { to.as_str() } else { l }).collect::<Vec<_>>().join("\r\n");
    ep.handle_input(t0, 0, udp(TRUNK), bye.as_bytes());
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 200 "), "{out:?}");
    assert!(std::iter::from_fn(|| ep.poll_event()).any(|e| matches!(e, EndpointEvent::Ended { call: c, .. } if c == call)));
}

#[test]
fn calls_beyond_max_calls_are_refused_statelessly_before_any_state() {
    let mut ep = endpoint("[limits]\nmax_calls = 2\nmax_transactions = 2\n");
    let t0 = Instant::now();
    let mut answers = Vec::new();
    for n in 0..2 {
        ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", n));
        let Some(EndpointEvent::Incoming { call, .. }) = ep.poll_event() else { panic!("an incoming call") };
        ep.answer(t0, call, "198.51.100.7:20000".parse().unwrap()).unwrap();
        answers.extend(sent(&mut ep));
    }
    let before = ep.tx.len().0;
    let invite = request("INVITE", "1000", 7);
    ep.handle_input(t0, 0, udp(TRUNK), &invite);
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 503 ") && out[0].contains("Retry-After: 10\r\n"), "{out:?}");
    assert_eq!(ep.tx.len().0, before, "no transaction for the refused call");
    assert!(ep.poll_event().is_none(), "and no call");
    assert_eq!(ep.active_calls(), 2);
    // Read from the raw lines: the same fields as the request, and a To tag
    // that marks it as ours, so that the driver drops its ACK unread.
    let resp = String::from_utf8_lossy(&invite).into_owned();
    for field in ["Via: ", "From: ", "Call-ID: ", "CSeq: "] {
        let line = |m: &str| m.lines().find(|l| l.starts_with(field)).map(str::to_string);
        assert_eq!(line(&out[0]), line(&resp), "{field}");
    }
    let to = out[0].lines().find(|l| l.starts_with("To: ")).expect("To");
    assert!(to.contains(";tag=x"), "{to}");
    let ack = resp.replace("INVITE sip:", "ACK sip:").replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    let ack = ack.replace(resp.lines().find(|l| l.starts_with("To: ")).expect("To"), to);
    assert!(crate::sip::overload::acks_a_refusal(ack.as_bytes()), "{ack}");
    // A retransmission of a call we took is no new call: not refused.
    ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", 0));
    assert!(!sent(&mut ep).iter().any(|m| m.starts_with("SIP/2.0 503 ")));
    // Requests that are not new calls still get through.
    ep.handle_input(t0, 0, udp(TRUNK), &request("OPTIONS", "1000", 8));
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 200 "));
    // In-dialog requests are never refused, and what they leave behind to
    // absorb retransmissions stays within eight times max_transactions.
    let ok = answers.iter().find(|m| m.starts_with("SIP/2.0 200 ") && m.contains("Call-ID: c0@x")).expect("the 200 of call 0");
    let our_to = ok.lines().find(|l| l.starts_with("To: ")).expect("To");
    for k in 0..100 {
        let info = format!(
            "INFO sip:1000@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bKi{k}\r\nMax-Forwards: 70\r\n\
             From: <sip:x@203.0.113.66>;tag=f0\r\n{our_to}\r\nCall-ID: c0@x\r\nCSeq: {} INFO\r\nContent-Length: 0\r\n\r\n",
            k + 2
        );
        ep.handle_input(t0, 0, udp(TRUNK), info.as_bytes());
        assert!(sent(&mut ep).iter().any(|m| m.starts_with("SIP/2.0 200 ")), "INFO {k} answered");
    }
    assert!(ep.tx.len().0 <= 2 * 8 + 1, "{} server transactions kept", ep.tx.len().0);
}

/// The endpoint of these tests with one trunk that must authenticate.
fn authenticating_trunk() -> Endpoint {
    Endpoint::for_test(
        r#"
listen = [{ transport = "udp", addr = "198.51.100.7:5060" }]
numbers = ["1000"]
[[trunks]]
name = "carrier"
cidrs = ["192.0.2.0/24"]
inbound_username = "carrier-in"
inbound_password = "carrier-secret-123"
"#,
    )
}

/// The SHA-256 digest challenge in a 401.
fn sha256_challenge(response: &str) -> crate::sip::headers::AuthParams {
    response
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .map(|v| crate::sip::headers::AuthParams::parse(v).unwrap())
        .find(|c| c.get("algorithm") == Some("SHA-256"))
        .expect("a SHA-256 challenge")
}

/// A trunk with `inbound_username`/`inbound_password`: its address alone no
/// longer places calls; its INVITEs must answer our digest challenge.
#[test]
fn a_trunk_with_inbound_credentials_must_answer_the_challenge() {
    let mut ep = authenticating_trunk();
    let t0 = Instant::now();
    let with_auth = |n: u32, auth: &str| {
        let m = String::from_utf8(request("INVITE", "1000", n)).unwrap().replace("203.0.113.66:5060;branch", "192.0.2.10:5060;branch");
        m.replacen("Content-Type:", &format!("Authorization: {auth}\r\nContent-Type:"), 1).into_bytes()
    };
    ep.handle_input(t0, 1_000, udp(TRUNK), &request("INVITE", "1000", 1));
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 401 "), "{out:?}");
    assert!(ep.poll_event().is_none(), "no call without credentials");
    let challenge = sha256_challenge(&out[0]);
    let uri = "sip:1000@198.51.100.7";
    // Wrong password over our live nonce: refused outright.
    let wrong = crate::sip::digest::authorize(&challenge, "carrier-in", "not-the-secret-at-all", "INVITE", uri, "c0ffee").unwrap();
    ep.handle_input(t0, 1_001, udp(TRUNK), &with_auth(2, &wrong));
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 403 "));
    assert!(ep.poll_event().is_none());
    // The right answer places the call.
    let right = crate::sip::digest::authorize(&challenge, "carrier-in", "carrier-secret-123", "INVITE", uri, "c0ffee").unwrap();
    ep.handle_input(t0, 1_002, udp(TRUNK), &with_auth(3, &right));
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 100 "), "{out:?}");
    assert!(matches!(ep.poll_event(), Some(EndpointEvent::Incoming { source: CallSource::Trunk(t), .. }) if t == "carrier"));
}

#[test]
fn a_trunks_inbound_credentials_register_no_phone() {
    let mut ep = authenticating_trunk();
    let register = |n: u32, auth: Option<&str>| {
        let m = String::from_utf8(request("REGISTER", "carrier-in", n)).unwrap();
        match auth {
            Some(a) => m.replacen("Content-Length:", &format!("Authorization: {a}\r\nContent-Length:"), 1),
            None => m,
        }
        .into_bytes()
    };
    let t0 = Instant::now();
    ep.handle_input(t0, 1_000, udp(STRANGER), &register(1, None));
    let out = sent(&mut ep);
    let challenge = sha256_challenge(&out[0]);
    let right =
        crate::sip::digest::authorize(&challenge, "carrier-in", "carrier-secret-123", "REGISTER", "sip:carrier-in@198.51.100.7", "c0ffee")
            .unwrap();
    ep.handle_input(t0, 1_001, udp(STRANGER), &register(2, Some(&right)));
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 403 "), "{out:?}");
    assert_eq!(ep.registrar().binding_count(), 0);
}

/// RFC 7339: a carrier that puts `oc` in its Via is told in every answer's
/// Via how much of its new traffic to hold back; past `max_calls` the
/// refusals raise it, and a carrier that did not ask is told nothing.
#[test]
fn a_carrier_that_asks_is_told_how_many_new_calls_to_hold_back() {
    let mut ep = endpoint("[limits]\nmax_calls = 2\n");
    let asking = |n: u32| String::from_utf8(request("INVITE", "1000", n)).unwrap().replace(";branch=", ";oc;oc-algo=\"loss,A\";branch=");
    let top_via = |m: &str| m.lines().find(|l| l.starts_with("Via: ")).unwrap_or_default().to_string();
    let t0 = Instant::now();
    ep.handle_input(t0, 1_700_000_000, udp(TRUNK), asking(0).as_bytes());
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 100 "), "{out:?}");
    let via = top_via(&out[0]);
    assert!(via.ends_with(";oc=0;oc-algo=\"loss\";oc-validity=500;oc-seq=1700000000.00000"), "{via}");
    ep.handle_input(t0, 1_700_000_000, udp(TRUNK), &request("INVITE", "1000", 1));
    assert!(sent(&mut ep).iter().all(|m| !m.contains("oc=")), "not asked, not told");
    // Both lines taken: thirty more in the same window are refused.
    for n in 2..32 {
        ep.handle_input(t0, 1_700_000_000, udp(TRUNK), asking(n).as_bytes());
        let out = sent(&mut ep);
        assert!(out[0].starts_with("SIP/2.0 503 ") && top_via(&out[0]).contains(";oc=0;"), "{out:?}");
    }
    // In the next window the carrier is told to drop most of its new calls.
    let later = t0 + crate::sip::oc::WINDOW;
    ep.handle_input(later, 1_700_000_001, udp(TRUNK), asking(40).as_bytes());
    let out = sent(&mut ep);
    let via = top_via(&out[0]);
    let oc: u32 = via.split(";oc=").nth(1).and_then(|v| v.split(';').next()).and_then(|v| v.parse().ok()).expect("oc");
    assert!(out[0].starts_with("SIP/2.0 503 ") && (80..=95).contains(&oc), "{via}");
    assert!(via.contains(";oc-seq=1700000001.00001") && via.matches("oc-algo").count() == 1, "{via}");
}

/// A trunk's new INVITE that waited too long for the driver is refused
/// statelessly at once, with lines free; a retransmission of a call
/// already taken is not, and neither is what cannot be read plainly.
#[test]
fn a_new_call_that_waited_too_long_is_refused_with_lines_free() {
    let mut ep = endpoint("");
    let t0 = Instant::now();
    ep.handle_new_call_late(t0, 0, udp(TRUNK), &request("INVITE", "1000", 1));
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 503 ") && out[0].contains("Retry-After: 10\r\n"), "{out:?}");
    assert!(ep.poll_event().is_none(), "no call");
    assert_eq!(ep.tx.len().0, 0, "no transaction");
    // A call taken, then its INVITE again, late: the call's answer, no 503.
    ep.handle_input(t0, 0, udp(TRUNK), &request("INVITE", "1000", 2));
    let Some(EndpointEvent::Incoming { call, .. }) = ep.poll_event() else { panic!("an incoming call") };
    ep.answer(t0, call, "198.51.100.7:20000".parse().unwrap()).unwrap();
    sent(&mut ep);
    ep.handle_new_call_late(t0, 0, udp(TRUNK), &request("INVITE", "1000", 2));
    assert!(!sent(&mut ep).iter().any(|m| m.starts_with("SIP/2.0 503 ")));
    // Folded header lines are the full parser's: it takes the call.
    let folded = String::from_utf8(request("INVITE", "1000", 3)).unwrap().replace("Max-Forwards: 70", "Max-Forwards:\r\n 70");
    ep.handle_new_call_late(t0, 0, udp(TRUNK), folded.as_bytes());
    assert!(matches!(ep.poll_event(), Some(EndpointEvent::Incoming { .. })));
}
