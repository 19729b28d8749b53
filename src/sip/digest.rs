//! HTTP Digest for SIP (RFC 3261 §22, RFC 7616, RFC 8760: SHA-256 and MD5).
//!
//! Server side: stateless nonces (`timestamp.mac`) so a restart or a second
//! worker still verifies them, with a freshness window instead of a nonce
//! table. Client side: answering a 401/407 challenge with trunk credentials.
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
    let a = i.algorithm;
    let ha1 = a.hash(&format!("{}:{}:{}", i.username, i.realm, i.password));
    let ha2 = a.hash(&format!("{}:{}", i.method, i.uri));
    match i.qop_auth {
        Some((nc, cnonce)) => a.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", i.nonce)),
        None => a.hash(&format!("{ha1}:{}:{ha2}", i.nonce)),
    }
}

/// Issues and checks nonces. `secret` should be random per installation.
#[derive(Debug, Clone)]
pub struct NonceSource {
    secret: String,
    /// Seconds a nonce stays fresh.
    pub lifetime: u64,
}

impl NonceSource {
    pub fn new(secret: impl Into<String>, lifetime: u64) -> Self {
        NonceSource { secret: secret.into(), lifetime }
    }

    /// `now` is Unix seconds (passed in: sans-IO).
    pub fn issue(&self, now: u64) -> String {
        format!("{now:x}.{}", self.mac(now))
    }

    /// `Ok(())`, or `Err(stale)`: stale=true means well-formed but expired.
    pub fn check(&self, nonce: &str, now: u64) -> Result<(), bool> {
        let (ts, mac) = nonce.split_once('.').ok_or(false)?;
        let ts = u64::from_str_radix(ts, 16).map_err(|_| false)?;
        if mac != self.mac(ts) {
            return Err(false);
        }
        if now > ts.saturating_add(self.lifetime) || ts > now.saturating_add(60) {
            return Err(true);
        }
        Ok(())
    }

    fn mac(&self, ts: u64) -> String {
        let full = Algorithm::Sha256.hash(&format!("{}:{ts:x}", self.secret));
        full[..32].to_string()
    }
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

/// Outcome of checking an Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Wrong password or unknown user: challenge again (or 403).
    Bad,
    /// Nonce expired but the response was right for it: re-challenge stale=true.
    Stale,
}

/// Verify credentials for `method`; `password_of(user)` looks up the secret.
pub fn verify(
    creds: &AuthParams,
    method: &str,
    realm: &str,
    nonces: &NonceSource,
    now: u64,
    password_of: impl Fn(&str) -> Option<String>,
) -> Verdict {
    if !creds.scheme.eq_ignore_ascii_case("Digest") {
        return Verdict::Bad;
    }
    let (Some(user), Some(nonce), Some(uri), Some(resp)) =
        (creds.get("username"), creds.get("nonce"), creds.get("uri"), creds.get("response"))
    else {
        return Verdict::Bad;
    };
    let Some(algorithm) = Algorithm::parse(creds.get("algorithm")) else {
        return Verdict::Bad;
    };
    if creds.get("realm") != Some(realm) {
        return Verdict::Bad;
    }
    let qop = match creds.get("qop") {
        None => None,
        Some(q) if q.eq_ignore_ascii_case("auth") => match (creds.get("nc"), creds.get("cnonce")) {
            (Some(nc), Some(c)) => Some((nc, c)),
            _ => return Verdict::Bad,
        },
        Some(_) => return Verdict::Bad,
    };
    let Some(password) = password_of(user) else {
        return Verdict::Bad;
    };
    let expected = response(&DigestInput { algorithm, username: user, realm, password: &password, method, uri, nonce, qop_auth: qop });
    // Length-independent comparison is unnecessary for hex of fixed length,
    // but compare case-insensitively: some clients send upper-case hex.
    if !expected.eq_ignore_ascii_case(resp) {
        return Verdict::Bad;
    }
    match nonces.check(nonce, now) {
        Ok(()) => Verdict::Ok,
        Err(true) => Verdict::Stale,
        Err(false) => Verdict::Bad,
    }
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
    fn round_trip_both_algorithms_and_staleness() {
        let nonces = NonceSource::new("s3cret", 300);
        let nonce = nonces.issue(1_000);
        for ch in challenges("clinic", &nonce, false, &[Algorithm::Sha256, Algorithm::Md5]) {
            let ch = AuthParams::parse(&ch).unwrap();
            let auth = authorize(&ch, "201", "pw", "REGISTER", "sip:clinic", "cn").unwrap();
            let creds = AuthParams::parse(&auth).unwrap();
            let pw = |u: &str| (u == "201").then(|| "pw".to_string());
            assert_eq!(verify(&creds, "REGISTER", "clinic", &nonces, 1_100, pw), Verdict::Ok);
            assert_eq!(verify(&creds, "REGISTER", "clinic", &nonces, 1_400, pw), Verdict::Stale);
            let wrong = |_: &str| Some("nope".to_string());
            assert_eq!(verify(&creds, "REGISTER", "clinic", &nonces, 1_100, wrong), Verdict::Bad);
        }
        assert_eq!(nonces.check("12.deadbeef", 13), Err(false));
    }

    #[test]
    fn prefers_sha256() {
        let c =
            best_challenge(["Digest realm=\"a\", nonce=\"n\"", "Digest realm=\"a\", nonce=\"n\", algorithm=SHA-256"].into_iter()).unwrap();
        assert_eq!(c.get("algorithm"), Some("SHA-256"));
    }
}
