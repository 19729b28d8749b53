//! Digest authentication with fake time: replay, another address, `uri`
//! mismatch, algorithm downgrade, lockout, stored HA1.

use super::*;
use crate::sip::config::{AuthLimits, Extension};
use crate::sip::message::{parse, SipMessage};

const PW: &str = "desk-201-secret";
const A: &str = "192.0.2.10";
const B: &str = "192.0.2.99";

fn cfg(algorithms: &[&str]) -> SipConfig {
    let mut c = SipConfig::default();
    c.extensions.push(Extension { number: "201".into(), password: Some(PW.into()), ..Default::default() });
    c.extensions.push(Extension { number: "202".into(), password: Some("another-long-one".into()), ..Default::default() });
    c.digest_algorithms = algorithms.iter().map(|a| a.to_string()).collect();
    c.auth = AuthLimits { max_failures: 3, lockout_s: 60, max_lockout_s: 600, ..AuthLimits::default() };
    c
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn request(request_uri: &str, auth: Option<&str>) -> Request {
    let mut s = format!(
        "REGISTER {request_uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
         From: <sip:201@clinivox.local>;tag=a\r\nTo: <sip:201@clinivox.local>\r\n\
         Call-ID: c1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"
    );
    if let Some(a) = auth {
        s.push_str(&format!("Authorization: {a}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    match parse(s.as_bytes(), true) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("test REGISTER must parse: {other:?}"),
    }
}

/// The challenge for `alg` from a fresh 401 to `from`.
fn challenge(a: &mut Authenticator, now: u64, from: &str, alg: &str) -> AuthParams {
    let Err(Refusal::Challenge(values)) = a.authenticate(now, &request("sip:clinivox.local", None), ip(from)) else {
        panic!("no credentials must be challenged");
    };
    values.iter().map(|v| AuthParams::parse(v).unwrap()).find(|c| c.get("algorithm") == Some(alg)).expect("algorithm offered")
}

/// An Authorization answering `ch` for user 201 with `password` over `uri`.
fn answer(ch: &AuthParams, password: &str, uri: &str) -> String {
    digest::authorize(ch, "201", password, "REGISTER", uri, "c0ffee").unwrap()
}

fn stale(r: &Result<String, Refusal>) -> bool {
    matches!(r, Err(Refusal::Challenge(v)) if v.iter().all(|c| c.contains("stale=true")))
}

#[test]
fn right_password_accepted_with_both_algorithms() {
    let mut a = Authenticator::new(&cfg(&["SHA-256", "MD5"]), "k", 1_000);
    for alg in ["SHA-256", "MD5"] {
        let ch = challenge(&mut a, 1_000, A, alg);
        let auth = answer(&ch, PW, "sip:clinivox.local");
        assert_eq!(a.authenticate(1_001, &request("sip:clinivox.local", Some(&auth)), ip(A)), Ok("201".into()));
    }
}

#[test]
fn replayed_nonce_and_nc_is_refused_with_stale() {
    let mut a = Authenticator::new(&cfg(&["SHA-256"]), "k", 1_000);
    let ch = challenge(&mut a, 1_000, A, "SHA-256");
    let req = request("sip:clinivox.local", Some(&answer(&ch, PW, "sip:clinivox.local")));
    assert!(a.authenticate(1_001, &req, ip(A)).is_ok());
    // The same (nonce, nc) again, even from the same address.
    let again = a.authenticate(1_002, &req, ip(A));
    assert!(stale(&again), "a replay must be re-challenged, got {again:?}");
}

#[test]
fn nonce_used_from_another_address_is_refused() {
    let mut a = Authenticator::new(&cfg(&["SHA-256"]), "k", 1_000);
    let ch = challenge(&mut a, 1_000, A, "SHA-256");
    let req = request("sip:clinivox.local", Some(&answer(&ch, PW, "sip:clinivox.local")));
    // Captured on the way and sent first from B: refused, and the real
    // phone at A is still accepted.
    let r = a.authenticate(1_001, &req, ip(B));
    assert!(stale(&r), "{r:?}");
    assert_eq!(a.authenticate(1_001, &req, ip(A)), Ok("201".into()));
}

#[test]
fn uri_other_than_the_request_uri_is_refused() {
    let mut a = Authenticator::new(&cfg(&["SHA-256"]), "k", 1_000);
    let ch = challenge(&mut a, 1_000, A, "SHA-256");
    let auth = answer(&ch, PW, "sip:elsewhere.example");
    assert_eq!(a.authenticate(1_001, &request("sip:clinivox.local", Some(&auth)), ip(A)), Err(Refusal::Forbidden));
    // Case of the host does not matter (RFC 3261 §19.1.4).
    let ch = challenge(&mut a, 1_002, A, "SHA-256");
    let auth = answer(&ch, PW, "sip:CLINIVOX.local");
    assert!(a.authenticate(1_003, &request("sip:clinivox.local", Some(&auth)), ip(A)).is_ok());
}

#[test]
fn md5_refused_when_only_sha256_is_configured() {
    let mut a = Authenticator::new(&cfg(&["SHA-256"]), "k", 1_000);
    let mut ch = challenge(&mut a, 1_000, A, "SHA-256");
    // A client (or attacker) answering with MD5 over our nonce anyway.
    ch.params.retain(|(k, _)| !k.eq_ignore_ascii_case("algorithm"));
    ch.params.push(("algorithm".into(), "MD5".into()));
    let auth = answer(&ch, PW, "sip:clinivox.local");
    assert!(auth.contains("algorithm=MD5"));
    assert_eq!(a.authenticate(1_001, &request("sip:clinivox.local", Some(&auth)), ip(A)), Err(Refusal::Forbidden));
}

#[test]
fn lockout_refuses_even_the_right_password_until_it_ends() {
    let mut a = Authenticator::new(&cfg(&["SHA-256"]), "k", 1_000);
    for i in 0..3 {
        let ch = challenge(&mut a, 1_000 + i, A, "SHA-256");
        let auth = answer(&ch, &format!("guess{i}"), "sip:clinivox.local");
        assert_eq!(a.authenticate(1_000 + i, &request("sip:clinivox.local", Some(&auth)), ip(A)), Err(Refusal::Forbidden));
    }
    // Locked for 60 s from t=1002: the right password is refused, from A…
    let ch = challenge(&mut a, 1_010, A, "SHA-256");
    let right = request("sip:clinivox.local", Some(&answer(&ch, PW, "sip:clinivox.local")));
    assert_eq!(a.authenticate(1_010, &right, ip(A)), Err(Refusal::Forbidden));
    // …and, the extension being locked too, from any other address.
    let ch = challenge(&mut a, 1_011, B, "SHA-256");
    let from_b = request("sip:clinivox.local", Some(&answer(&ch, PW, "sip:clinivox.local")));
    assert_eq!(a.authenticate(1_011, &from_b, ip(B)), Err(Refusal::Forbidden));
    // After the lockout the same request (its nonce still fresh) passes.
    assert_eq!(a.authenticate(1_062, &right, ip(A)), Ok("201".into()));
}

#[test]
fn lockout_grows_and_unknown_users_lock_the_address() {
    let mut a = Authenticator::new(&cfg(&["SHA-256"]), "k", 0);
    let guess = |a: &mut Authenticator, t: u64, user: &str| {
        let ch = challenge(a, t, A, "SHA-256");
        let auth = digest::authorize(&ch, user, "nope", "REGISTER", "sip:clinivox.local", "c").unwrap();
        a.authenticate(t, &request("sip:clinivox.local", Some(&auth)), ip(A))
    };
    // Scanning usernames that do not exist: the address still locks.
    for (t, user) in [(0, "900"), (1, "901"), (2, "902")] {
        assert_eq!(guess(&mut a, t, user), Err(Refusal::Forbidden));
    }
    let ch = challenge(&mut a, 30, A, "SHA-256");
    let right = request("sip:clinivox.local", Some(&answer(&ch, PW, "sip:clinivox.local")));
    assert_eq!(a.authenticate(30, &right, ip(A)), Err(Refusal::Forbidden));
    // Three more failures after the first lockout: locked twice as long.
    for t in 62..65 {
        guess(&mut a, t, "903").ok();
    }
    let ch = challenge(&mut a, 64 + 100, A, "SHA-256");
    let right = request("sip:clinivox.local", Some(&answer(&ch, PW, "sip:clinivox.local")));
    assert_eq!(a.authenticate(64 + 100, &right, ip(A)), Err(Refusal::Forbidden));
    assert_eq!(a.authenticate(64 + 121, &right, ip(A)), Ok("201".into()));
}

#[test]
fn stored_ha1_instead_of_the_password() {
    let mut c = cfg(&["SHA-256"]);
    c.extensions[0].password = None;
    c.extensions[0].ha1_sha256 = Some(digest::ha1(Algorithm::Sha256, "201", "clinivox", PW).to_ascii_uppercase());
    assert!(c.validate().is_ok(), "{:?}", c.validate());
    let mut a = Authenticator::new(&c, "k", 1_000);
    let ch = challenge(&mut a, 1_000, A, "SHA-256");
    let auth = answer(&ch, PW, "sip:clinivox.local");
    assert_eq!(a.authenticate(1_001, &request("sip:clinivox.local", Some(&auth)), ip(A)), Ok("201".into()));
    // MD5 offered without an MD5 HA1 is a configuration error.
    c.digest_algorithms.push("MD5".into());
    let errs = c.validate().unwrap_err();
    assert!(errs.iter().any(|(k, _)| k == "sip.extensions[0].ha1_md5"), "{errs:?}");
}

#[test]
fn log_field_cannot_be_forged() {
    assert_eq!(loggable("201"), "201");
    assert_eq!(loggable("x reason=ok\nsource=1.2.3.4"), "x?reason?ok?source?1.2.3.4");
    assert_eq!(loggable(""), "-");
    assert_eq!(loggable(&"9".repeat(100)).len(), 32);
}
