//! Webhooks (issue 20): the clinic's other systems are told when an
//! appointment is booked, confirmed, cancelled or moved, a call ends, a
//! callback is asked for, an escalation finishes or a freed slot is filled.
//!
//! Events are written by the store into an outbox in the transaction of the
//! change (`store/outbox.rs`); [`sender`] delivers them. Each request is
//! signed as the Standard Webhooks specification says, so that receivers
//! can use its libraries: headers `webhook-id` (the event id, for
//! de-duplication: delivery is at-least-once), `webhook-timestamp` (Unix
//! seconds) and `webhook-signature` (`v1,` and the base64 of HMAC-SHA256
//! over `id.timestamp.body` keyed with the secret's bytes).

pub mod sender;

use std::path::PathBuf;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::raw::RawWebhook;
use crate::store::{EventType, Subscription};

/// Bytes of key a secret must carry (192 bits).
const MIN_SECRET_BYTES: usize = 24;

/// One `[[webhooks]]` entry, validated.
#[derive(Clone)]
pub struct Webhook {
    pub name: String,
    pub url: hyper::Uri,
    /// The secret's bytes (after `whsec_`, base64-decoded).
    key: Vec<u8>,
    pub events: Vec<EventType>,
    /// A CA to trust for this receiver instead of the system's roots.
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("name", &self.name).field("url", &self.url).field("events", &self.events).finish_non_exhaustive()
    }
}

impl Webhook {
    /// Validates every entry, reporting each problem through `err(field, message)`.
    pub fn validate_all(raw: &[RawWebhook], err: &mut dyn FnMut(String, String)) -> Vec<Webhook> {
        let mut out: Vec<Webhook> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (i, w) in raw.iter().enumerate() {
            let field = |f: &str| format!("webhooks[{i}].{f}");
            let name = w.name.clone().unwrap_or_default();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                err(field("name"), "is required: letters, digits, - and _".into());
            } else if names.contains(&name) {
                err(field("name"), format!("{name:?} is used twice"));
            }
            names.push(name.clone());
            let url = match w.url.as_deref().map(str::parse::<hyper::Uri>) {
                Some(Ok(u)) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Some(u),
                Some(_) => {
                    err(field("url"), "must be an http:// or https:// URL with a host".into());
                    None
                }
                None => {
                    err(field("url"), "is required".into());
                    None
                }
            };
            if let Some(u) = &url {
                if u.scheme_str() == Some("http") && !is_loopback(u) && !w.allow_plain_http.unwrap_or(false) {
                    err(
                        field("url"),
                        "must be https:// unless the receiver is on this machine (or set allow_plain_http = true): \
                         the events say which patient sees which doctor when"
                            .into(),
                    );
                }
            }
            let key = match w.secret.as_deref().map(parse_secret) {
                Some(Ok(k)) => k,
                Some(Err(m)) => {
                    err(field("secret"), m);
                    Vec::new()
                }
                None => {
                    err(field("secret"), "is required (whsec_ and the base64 of at least 24 random bytes)".into());
                    Vec::new()
                }
            };
            let events = match &w.events {
                None => EventType::ALL.to_vec(),
                Some(list) => {
                    let mut events = Vec::new();
                    for e in list {
                        match EventType::parse(e) {
                            Some(t) if !events.contains(&t) => events.push(t),
                            Some(_) => {}
                            None => err(
                                field("events"),
                                format!("{e:?} is not one of {}", EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")),
                            ),
                        }
                    }
                    if list.is_empty() {
                        err(field("events"), "is empty (leave it out for every event)".into());
                    }
                    events
                }
            };
            if let Some(url) = url {
                out.push(Webhook { name, url, key, events, ca: w.ca.clone() });
            }
        }
        out
    }

    /// What the store needs to know: which events to write for whom.
    pub fn subscription(&self) -> Subscription {
        Subscription { name: self.name.clone(), events: self.events.clone() }
    }

    /// `webhook-signature` for one request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        sign(&self.key, id, timestamp, body)
    }
}

/// Standard Webhooks' signature: `v1,` + base64(HMAC-SHA256(key, "id.timestamp.body")).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether `signature` (a `webhook-signature` value: space-separated
/// `v1,…` entries) holds a valid signature of this request: what a
/// receiver does, here for the tests and the README's example.
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &str, signature: &str) -> bool {
    let Ok(key) = parse_secret(secret) else { return false };
    let expected = sign(&key, id, timestamp, body);
    signature.split(' ').any(|s| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), expected.as_bytes()).into())
}

/// The key bytes of a `whsec_…` secret.
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, String> {
    let Some(b64) = secret.strip_prefix("whsec_") else {
        return Err("must start with whsec_ (then the base64 of at least 24 random bytes: `head -c 32 /dev/urandom | base64`)".into());
    };
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(k) if k.len() >= MIN_SECRET_BYTES => Ok(k),
        Ok(k) => Err(format!("carries {} bytes of key; at least {MIN_SECRET_BYTES} are needed", k.len())),
        Err(_) => Err("is not valid base64 after whsec_".into()),
    }
}

fn is_loopback(u: &hyper::Uri) -> bool {
    let host = u.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str, secret: &str) -> RawWebhook {
        RawWebhook { name: Some("practice".into()), url: Some(url.into()), secret: Some(secret.into()), ..Default::default() }
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn errors(r: &[RawWebhook]) -> (Vec<Webhook>, Vec<(String, String)>) {
        let mut e = Vec::new();
        let w = Webhook::validate_all(r, &mut |f, m| e.push((f, m)));
        (w, e)
    }

    #[test]
    fn the_standard_webhooks_example_signature() {
        // The specification's own test vector.
        let body = r#"{"test": 2432232314}"#;
        let key = parse_secret(SECRET).unwrap();
        assert_eq!(sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, "v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
        assert!(!verify(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    }

    #[test]
    fn configuration_is_checked() {
        let (w, e) = errors(&[raw("https://pms.example/hooks", SECRET)]);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(w[0].events.len(), EventType::ALL.len(), "every event when none is named");
        let (_, e) = errors(&[raw("http://127.0.0.1:9000/h", SECRET)]);
        assert!(e.is_empty(), "plain HTTP on this machine: {e:?}");
        let (_, e) = errors(&[raw("http://pms.example/hooks", SECRET)]);
        assert_eq!(e[0].0, "webhooks[0].url", "plain HTTP to another host");
        let (_, e) = errors(&[raw("https://pms.example/hooks", "whsec_c2hvcnQ=")]);
        assert!(e[0].1.contains("at least 24"), "{e:?}");
        let (_, e) = errors(&[raw("https://pms.example/hooks", "hunter2")]);
        assert_eq!(e[0].0, "webhooks[0].secret");
        let mut r = raw("ftp://pms.example", SECRET);
        r.events = Some(vec!["appointment.booked".into(), "appointment.teleported".into()]);
        let (_, e) = errors(&[r, raw("https://x.example", SECRET)]);
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["webhooks[0].url", "webhooks[0].events", "webhooks[1].name"], "{e:?}");
    }
}
