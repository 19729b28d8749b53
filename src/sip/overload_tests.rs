use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{is_new_invite, NewInvite};
use crate::sip::dialog::response_for;
use crate::sip::headers::{param, NameAddr, Via};
use crate::sip::message::{self, SipMessage};

const INVITE: &[u8] = b"INVITE sip:1000@clinic.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa1;rport\r\n\
v: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKb2 , SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKc3\r\n\
Max-Forwards: 70\r\n\
f: \"Ana <Ruiz>; x\" <sip:+34600000001@carrier.example>;tag=9fx\r\n\
To:   <sip:1000@clinic.example>  \r\n\
i: a84b4c76e66710@carrier.example\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:+34600000001@192.0.2.9>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

fn request(bytes: &[u8]) -> message::Request {
    match message::parse(bytes, true) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn response(bytes: &[u8]) -> message::Response {
    match message::parse(bytes, true) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn the_raw_refusal_is_the_503_the_full_parser_would_build() {
    let inv = NewInvite::scan(INVITE).expect("a new INVITE");
    assert_eq!(inv.call_id(), b"a84b4c76e66710@carrier.example");
    assert_eq!(inv.from_tag(), Some(&b"9fx"[..]));
    let raw = response(&inv.refusal("t0", 10, "Clinivox", None));
    let mut want = response_for(&request(INVITE), 503, Some("t0"));
    want.headers.push("Retry-After", "10");
    want.headers.push("Server", "Clinivox");
    want.headers.push("Content-Length", "0");
    assert_eq!((raw.status, raw.reason.as_str()), (503, "Service Unavailable"));
    assert_eq!(raw.headers, want.headers);
    assert!(raw.body.is_empty());
    // No Server for an empty agent.
    assert!(response(&inv.refusal("t0", 10, "", None)).headers.get("Server").is_none());
}

#[test]
fn only_new_invites_that_read_plainly_are_taken() {
    let with = |from: &str, to: &str| INVITE.to_vec().replace_all(from, to);
    // In a dialog (a To tag), however it is spelled.
    for to in ["To: <sip:1000@clinic.example>;tag=x", "t: sip:1000@clinic.example ; TAG = y", "To: \"a>b\" <sip:1000@c>;tag=z"] {
        let m = with("To:   <sip:1000@clinic.example>  ", to);
        assert!(NewInvite::scan(&m).is_none(), "{to}");
        assert!(!is_new_invite(&m), "{to}");
    }
    // A `tag=` inside the display name or the URI is no tag.
    for to in ["To: \"tag=x;\" <sip:1000@c>", "To: <sip:1000@c;tag=x>"] {
        let m = with("To:   <sip:1000@clinic.example>  ", to);
        assert!(NewInvite::scan(&m).is_some(), "{to}");
        assert!(is_new_invite(&m), "{to}");
    }
    for (what, from, to) in [
        ("another method", "INVITE sip:", "OPTIONS sip:"),
        ("CSeq of another method", "CSeq: 314159 INVITE", "CSeq: 314159 ACK"),
        ("CSeq without a number", "CSeq: 314159 INVITE", "CSeq: x INVITE"),
        ("no Call-ID", "i: a84b4c76e66710@carrier.example\r\n", ""),
        ("no Via", "Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa1;rport\r\nv: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKb2 , SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKc3\r\n", ""),
        ("a folded line", "Max-Forwards: 70\r\n", "Max-Forwards:\r\n 70\r\n"),
        ("a line without a colon", "Max-Forwards: 70\r\n", "Max-Forwards 70\r\n"),
        ("a stray CR", "Max-Forwards: 70\r\n", "Max-Forwards: 7\r0\r\n"),
        ("a header that never ends", "\r\n\r\nv=0\n", "\r\n"),
    ] {
        assert!(NewInvite::scan(&with(from, to)).is_none(), "{what}");
    }
    assert!(is_new_invite(INVITE));
    assert!(!is_new_invite(b"SIP/2.0 200 OK\r\nTo: <sip:a@b>\r\n\r\n"));
}

/// On the RFC 4475/5118 torture messages and mutations of them: the raw
/// reading never panics, and whenever it takes a message the full path
/// accepts, the full parser reads the same new INVITE, and the refusal is a
/// response it reads back with the request's fields and our tag.
#[test]
fn the_raw_reading_agrees_with_the_full_parser() {
    let corpus = crate::sip::fuzz_tests::corpus();
    let mut rng = StdRng::seed_from_u64(13);
    let (mut taken, mut checked) = (0, 0);
    for i in 0..200_000 {
        let input = if i < corpus.len() { corpus[i].clone() } else { crate::sip::fuzz_tests::mutate(&mut rng, &corpus) };
        let shed = is_new_invite(&input);
        let Some(inv) = NewInvite::scan(&input) else { continue };
        assert!(shed, "scan took what is_new_invite would not: {:?}", String::from_utf8_lossy(&input));
        taken += 1;
        // What the full path refuses as malformed (400) may get the raw 503
        // instead while calls are full; what it accepts must read the same.
        let Ok(SipMessage::Request(req)) = message::parse(&input, true) else { continue };
        if crate::sip::validate::check_request(&req).is_err() {
            continue;
        }
        checked += 1;
        let text = String::from_utf8_lossy(&input);
        assert_eq!(req.method, message::Method::Invite, "{text}");
        let to = req.headers.get("To").expect("To");
        if let Ok(na) = NameAddr::parse(to, "To") {
            assert!(na.tag().is_none(), "{text}");
        }
        if let Some(Ok(from)) = req.headers.get("From").map(|f| NameAddr::parse(f, "From")) {
            assert_eq!(inv.from_tag().map(|t| String::from_utf8_lossy(t).into_owned()).as_deref(), from.tag(), "{text}");
        }
        let resp = response(&inv.refusal("t0", 10, "", None));
        // (The full parser keeps a stray CR at the end of a value; the raw
        // reading trims it.)
        for name in ["From", "Call-ID", "CSeq"] {
            assert_eq!(resp.headers.get(name).map(str::trim), req.headers.get(name).map(str::trim), "{name} in {text}");
        }
        let vias = |h: &message::Headers| h.get_all("Via").map(|v| v.trim().to_string()).collect::<Vec<_>>();
        assert_eq!(vias(&resp.headers), vias(&req.headers), "{text}");
        let rto = NameAddr::parse(resp.headers.get("To").expect("To"), "To");
        assert!(rto.map_or(true, |t| t.tag() == Some("t0")), "{text}");
        // With RFC 7339's answer added to the top Via, it still reads, and
        // says what was added.
        let told = response(&inv.refusal("t0", 10, "", Some(";oc=7;oc-algo=\"loss\"")));
        let top = Via::parse_all(told.headers.get("Via").expect("Via")).map(|v| v.into_iter().next());
        let oc = top.as_ref().ok().and_then(|v| v.as_ref()).and_then(|v| param(&v.params, "oc").map(str::to_string));
        assert_eq!(oc.as_deref(), Some("7"), "{top:?} in {text}");
    }
    assert!(taken > 1000 && checked > 500, "too few new INVITEs in the mutations: {taken} taken, {checked} parsed");
}

trait ReplaceAll {
    fn replace_all(self, from: &str, to: &str) -> Vec<u8>;
}

impl ReplaceAll for Vec<u8> {
    fn replace_all(self, from: &str, to: &str) -> Vec<u8> {
        let s = String::from_utf8(self).expect("utf-8");
        assert!(s.contains(from), "{from}");
        s.replace(from, to).into_bytes()
    }
}
