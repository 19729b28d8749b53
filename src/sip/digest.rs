//! HTTP Digest for SIP (RFC 3261 §22, RFC 7616, RFC 8760: SHA-256 and MD5).
//!
//! The computations both sides share: HA1, `response`, challenges, and
//! answering a 401/407 challenge with trunk credentials (client side). The
//! server's checks (nonces, replay, lockout) are in `auth`.
//! `qop=auth` only (auth-int is never offered); `-sess` variants rejected.

use md5::{Digest as _, Md5};
use sha2::Sha256;

use super::headers::AuthParams;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// Absent `algorithm=` means MD5 (RFC 7616 §3.3).
    pub fn parse(s: Option<&str>) -> Option<Algorithm> {
        match s {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

/// Inputs to one digest response computation.
#[derive(Debug, Clone)]
pub struct DigestInput<'a> {
    pub algorithm: Algorithm,
    pub username: &'a str,
    pub realm: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub nonce: &'a str,
    /// `(nc, cnonce)` when qop=auth.
    pub qop_auth: Option<(&'a str, &'a str)>,
}

/// `response` value (RFC 7616 §3.4.1).
pub fn response(i: &DigestInput<'_>) -> String {
    let ha1 = ha1(i.algorithm, i.username, i.realm, i.password);
    response_from_ha1(i.algorithm, &ha1, i.method, i.uri, i.nonce, i.qop_auth)
}

/// `WWW-Authenticate` values, one per algorithm in order of preference
/// (RFC 8760 §2.4: SHA-256 first, then MD5, by default).
pub fn challenges(realm: &str, nonce: &str, stale: bool, algorithms: &[Algorithm]) -> Vec<String> {
    algorithms
        .iter()
        .map(|a| {
            format!(
                "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
                a.as_str(),
                if stale { ", stale=true" } else { "" }
            )
        })
        .collect()
}

/// HA1 = H(username:realm:password) (RFC 7616 §3.4.2), what a server may
/// store instead of the password.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash(&format!("{username}:{realm}:{password}"))
}

/// `response` from a stored HA1 (server side: no password needed).
pub fn response_from_ha1(algorithm: Algorithm, ha1: &str, method: &str, uri: &str, nonce: &str, qop_auth: Option<(&str, &str)>) -> String {
    let ha2 = algorithm.hash(&format!("{method}:{uri}"));
    match qop_auth {
        Some((nc, cnonce)) => algorithm.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
        None => algorithm.hash(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// Whether a received hex `response` equals the expected one, in time that
/// does not depend on where they differ (RFC 7616 §5.13 asks servers not to
/// leak through timing). Case-insensitive: some clients send upper-case hex.
pub fn responses_match(expected: &str, received: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    // Lengths are public (they follow from the algorithm), so an early
    // return on them leaks nothing.
    if expected.len() != received.len() {
        return false;
    }
    let received = received.to_ascii_lowercase();
    expected.as_bytes().ct_eq(received.as_bytes()).into()
}

/// Build an Authorization value answering `challenge` (client side).
pub fn authorize(challenge: &AuthParams, username: &str, password: &str, method: &str, uri: &str, cnonce: &str) -> Option<String> {
    let algorithm = Algorithm::parse(challenge.get("algorithm"))?;
    let realm = challenge.get("realm")?;
    let nonce = challenge.get("nonce")?;
    let qop_auth = challenge.get("qop").is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
    let nc = "00000001";
    let resp =
        response(&DigestInput { algorithm, username, realm, password, method, uri, nonce, qop_auth: qop_auth.then_some((nc, cnonce)) });
    let mut v = format!(
        "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}",
        algorithm.as_str()
    );
    if qop_auth {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(o) = challenge.get("opaque") {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    Some(v)
}

/// Pick the strongest challenge we can answer from several headers.
pub fn best_challenge<'a>(values: impl Iterator<Item = &'a str>) -> Option<AuthParams> {
    let mut best: Option<AuthParams> = None;
    for v in values {
        let Ok(c) = AuthParams::parse(v) else { continue };
        if !c.scheme.eq_ignore_ascii_case("Digest") {
            continue;
        }
        match Algorithm::parse(c.get("algorithm")) {
            Some(Algorithm::Sha256) => return Some(c),
            Some(Algorithm::Md5) if best.is_none() => best = Some(c),
            _ => {}
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1 example: same inputs, MD5 and SHA-256 responses.
    fn rfc7616(algorithm: Algorithm) -> String {
        response(&DigestInput {
            algorithm,
            username: "Mufasa",
            realm: "http-auth@example.org",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop_auth: Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        })
    }

    #[test]
    fn rfc7616_vectors() {
        assert_eq!(rfc7616(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(rfc7616(Algorithm::Sha256), "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
    }

    /// RFC 2617 §3.5 (MD5, qop=auth) still holds.
    #[test]
    fn rfc2617_vector() {
        let r = response(&DigestInput {
            algorithm: Algorithm::Md5,
            username: "Mufasa",
            realm: "testrealm@host.com",
            password: "Circle Of Life",
            method: "GET",
            uri: "/dir/index.html",
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop_auth: Some(("00000001", "0a4f113b")),
        });
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn response_from_stored_ha1_matches_and_comparison_ignores_case() {
        let h = ha1(Algorithm::Sha256, "201", "clinic", "pw");
        let direct = response(&DigestInput {
            algorithm: Algorithm::Sha256,
            username: "201",
            realm: "clinic",
            password: "pw",
            method: "REGISTER",
            uri: "sip:clinic",
            nonce: "n",
            qop_auth: Some(("00000001", "c")),
        });
        assert_eq!(response_from_ha1(Algorithm::Sha256, &h, "REGISTER", "sip:clinic", "n", Some(("00000001", "c"))), direct);
        assert!(responses_match(&direct, &direct.to_ascii_uppercase()));
        assert!(!responses_match(&direct, &direct[1..]));
        assert!(!responses_match(&direct, &format!("0{}", &direct[1..])) || direct.starts_with('0'));
    }

    #[test]
    fn prefers_sha256() {
        let c =
            best_challenge(["Digest realm=\"a\", nonce=\"n\"", "Digest realm=\"a\", nonce=\"n\", algorithm=SHA-256"].into_iter()).unwrap();
        assert_eq!(c.get("algorithm"), Some("SHA-256"));
    }
}
