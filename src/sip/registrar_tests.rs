//! Registrar with fake wall-clock time: digest (SHA-256 and MD5), expiry,
//! refresh, several contacts, un-register, wrong password, persistence.

use super::*;
use crate::sip::config::Extension;
use crate::sip::headers::AuthParams;
use crate::sip::message::{parse, SipMessage};
use crate::sip::validate::check_request;

const SRC: &str = "127.0.0.1:5070";

fn cfg() -> SipConfig {
    let mut c = SipConfig::default();
    c.extensions.push(Extension { number: "201".into(), password: "secret201".into(), display_name: None, nat: false });
    c
}

fn register(cseq: u32, contacts: &[&str], expires: Option<u32>, auth: Option<String>) -> Request {
    let mut s = format!(
        "REGISTER sip:clinivox.local SIP/2.0\r\nVia: SIP/2.0/UDP {SRC};branch=z9hG4bK{cseq}\r\n\
         From: <sip:201@clinivox.local>;tag=a\r\nTo: <sip:201@clinivox.local>\r\n\
         Call-ID: reg1\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n"
    );
    for c in contacts {
        s.push_str(&format!("Contact: {c}\r\n"));
    }
    if let Some(e) = expires {
        s.push_str(&format!("Expires: {e}\r\n"));
    }
    if let Some(a) = auth {
        s.push_str(&format!("Authorization: {a}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    match parse(s.as_bytes(), true) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("test REGISTER must parse: {other:?}"),
    }
}

/// Send a REGISTER, answering the challenge with `password` using `alg`.
fn do_register(
    r: &mut Registrar,
    now: u64,
    cseq: u32,
    contacts: &[&str],
    expires: Option<u32>,
    password: &str,
    alg: &str,
) -> RegisterOutcome {
    let req = register(cseq, contacts, expires, None);
    let info = check_request(&req).unwrap();
    let out = r.handle_register(now, &req, &info, SRC.parse().unwrap(), Transport::Udp);
    assert_eq!(out.code, 401);
    let ch = out
        .headers
        .iter()
        .map(|(_, v)| AuthParams::parse(v).unwrap())
        .find(|c| c.get("algorithm") == Some(alg))
        .expect("both algorithms are offered");
    let auth = digest::authorize(&ch, "201", password, "REGISTER", "sip:clinivox.local", "c0ffee").unwrap();
    let req = register(cseq + 1, contacts, expires, Some(auth));
    let info = check_request(&req).unwrap();
    r.handle_register(now, &req, &info, SRC.parse().unwrap(), Transport::Udp)
}

fn registrar(store: Box<dyn BindingStore>, now: u64) -> Registrar {
    Registrar::new(&cfg(), store, "k", now).unwrap()
}

#[test]
fn sha256_and_md5_register_expire_and_refresh() {
    let mut r = registrar(Box::new(MemoryStore::default()), 1_000);
    let out = do_register(&mut r, 1_000, 1, &["<sip:201@127.0.0.1:5070>"], Some(120), "secret201", "SHA-256");
    assert_eq!(out.code, 200);
    assert_eq!(out.headers, vec![("Contact", "<sip:201@127.0.0.1:5070>;expires=120".to_string())]);
    assert_eq!(r.contacts("201", 1_119).len(), 1);
    assert!(r.contacts("201", 1_120).is_empty(), "expired at 120 s");
    // Refresh with MD5 before expiry extends it.
    let out = do_register(&mut r, 1_100, 3, &["<sip:201@127.0.0.1:5070>"], Some(300), "secret201", "MD5");
    assert_eq!(out.code, 200);
    assert_eq!(r.contacts("201", 1_399).len(), 1);
}

#[test]
fn several_contacts_min_expires_and_unregister() {
    let mut r = registrar(Box::new(MemoryStore::default()), 0);
    let out = do_register(&mut r, 0, 1, &["<sip:201@10.0.0.1>", "<sip:201@10.0.0.2>;expires=600"], None, "secret201", "SHA-256");
    assert_eq!(out.code, 200);
    assert_eq!(r.contacts("201", 10).len(), 2);
    let out = do_register(&mut r, 10, 3, &["<sip:201@10.0.0.3>"], Some(5), "secret201", "SHA-256");
    assert_eq!(out.code, 423);
    assert!(out.headers.contains(&("Min-Expires", "60".into())));
    // One contact removed by expires=0, then all by "*".
    let out = do_register(&mut r, 20, 5, &["<sip:201@10.0.0.1>;expires=0"], None, "secret201", "SHA-256");
    assert_eq!(out.code, 200);
    assert_eq!(r.contacts("201", 21).len(), 1);
    let out = do_register(&mut r, 30, 7, &["*"], Some(0), "secret201", "SHA-256");
    assert_eq!(out.code, 200);
    assert!(r.contacts("201", 31).is_empty());
}

#[test]
fn wrong_password_and_unknown_extension_are_answered_alike() {
    let mut r = registrar(Box::new(MemoryStore::default()), 0);
    let out = do_register(&mut r, 0, 1, &["<sip:201@10.0.0.1>"], None, "wrong", "SHA-256");
    assert_eq!(out.code, 403);
    assert!(r.contacts("201", 1).is_empty());
    let mut req = register(1, &["<sip:202@10.0.0.1>"], None, None);
    req.headers.set("To", "<sip:202@clinivox.local>");
    let info = check_request(&req).unwrap();
    // Unknown extension: challenged first (no hint that 202 does not exist)…
    let out = r.handle_register(0, &req, &info, SRC.parse().unwrap(), Transport::Udp);
    assert_eq!(out.code, 401);
    // …then refused like a wrong password, whatever the password.
    let ch = AuthParams::parse(&out.headers[0].1).unwrap();
    let auth = digest::authorize(&ch, "202", "anything", "REGISTER", "sip:clinivox.local", "c").unwrap();
    let mut req = register(2, &["<sip:202@10.0.0.1>"], None, Some(auth));
    req.headers.set("To", "<sip:202@clinivox.local>");
    let info = check_request(&req).unwrap();
    let out = r.handle_register(1, &req, &info, SRC.parse().unwrap(), Transport::Udp);
    assert_eq!(out.code, 403);
    assert!(r.contacts("202", 1).is_empty());
}

#[test]
fn stale_nonce_is_rechallenged_with_stale_flag() {
    let mut r = registrar(Box::new(MemoryStore::default()), 0);
    let req = register(1, &["<sip:201@10.0.0.1>"], None, None);
    let info = check_request(&req).unwrap();
    let out = r.handle_register(0, &req, &info, SRC.parse().unwrap(), Transport::Udp);
    let ch = AuthParams::parse(&out.headers[0].1).unwrap();
    let auth = digest::authorize(&ch, "201", "secret201", "REGISTER", "sip:clinivox.local", "c").unwrap();
    let req = register(2, &["<sip:201@10.0.0.1>"], None, Some(auth));
    let info = check_request(&req).unwrap();
    // 10 minutes later the nonce (lifetime 300 s) is stale.
    let out = r.handle_register(600, &req, &info, SRC.parse().unwrap(), Transport::Udp);
    assert_eq!(out.code, 401);
    assert!(out.headers[0].1.contains("stale=true"));
}

#[test]
fn bindings_survive_a_restart_in_a_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bindings.json");
    let mut r = registrar(Box::new(JsonFileStore { path: path.clone() }), 0);
    assert_eq!(do_register(&mut r, 0, 1, &["<sip:201@10.0.0.9:5062>"], Some(3600), "secret201", "SHA-256").code, 200);
    drop(r);
    let r = registrar(Box::new(JsonFileStore { path: path.clone() }), 100);
    let c = r.contacts("201", 100);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].contact, "sip:201@10.0.0.9:5062");
    // Loaded after expiry: dropped.
    let r = registrar(Box::new(JsonFileStore { path }), 4_000);
    assert!(r.contacts("201", 4_000).is_empty());
}
