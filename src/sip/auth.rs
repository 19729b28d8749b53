//! Server-side digest authentication of staff extensions (RFC 3261 §22.4,
//! RFC 7616, RFC 8760): challenges, verification, and what the public
//! address needs on top of them — nonces bound to the client's address and
//! usable once per `nc` ([`Nonces`]), the `uri` checked against the
//! Request-URI, only the configured algorithms accepted, constant-time
//! comparison, and a lockout after failures ([`Lockout`]).
//!
//! Sans-IO: time (Unix seconds) is passed in. Every refusal is logged at
//! `warn` as one line in a fixed shape for fail2ban (see the README):
//! `SIP auth failure: source=<ip> extension=<user> reason=<reason>`.

use std::collections::HashMap;
use std::net::IpAddr;

use super::config::SipConfig;
use super::digest::{self, Algorithm};
use super::headers::AuthParams;
use super::lockout::Lockout;
use super::message::Request;
use super::nonce::{parse_nc, NonceError, Nonces};
use super::uri::SipUri;

/// What to answer a request that did not authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401 with these `WWW-Authenticate` values.
    Challenge(Vec<String>),
    /// 403: wrong credentials for a valid nonce, or locked out.
    Forbidden,
}

/// Why an attempt failed, as logged (a fixed word, for fail2ban).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    WrongPassword,
    UnknownUser,
    /// `algorithm=` not among `digest_algorithms`.
    Algorithm,
    /// `uri=` is not the Request-URI.
    UriMismatch,
    /// Realm, qop, nc or cnonce missing or malformed.
    Malformed,
    /// A right response over a nonce issued to another address.
    ForeignNonce,
    /// A right response whose (nonce, nc) was already used.
    Replay,
    LockedOut,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::WrongPassword => "wrong-password",
            Failure::UnknownUser => "unknown-user",
            Failure::Algorithm => "algorithm-not-allowed",
            Failure::UriMismatch => "uri-mismatch",
            Failure::Malformed => "malformed",
            Failure::ForeignNonce => "nonce-from-other-address",
            Failure::Replay => "replay",
            Failure::LockedOut => "locked-out",
        }
    }
}

/// One extension's secret: the password, or HA1s per algorithm.
#[derive(Clone)]
enum Secret {
    Password(String),
    Ha1 { sha256: Option<String>, md5: Option<String> },
}

pub struct Authenticator {
    realm: String,
    /// Offered, in order, and the only ones accepted (`[sip] digest_algorithms`).
    algorithms: Vec<Algorithm>,
    secrets: HashMap<String, Secret>,
    /// The user names among `secrets` that are trunks' inbound credentials:
    /// they authenticate a carrier's INVITEs, never a phone.
    trunk_users: std::collections::HashSet<String>,
    nonces: Nonces,
    lockout: Lockout,
}

impl Authenticator {
    /// `now`: start time (nonces from an earlier process are stale).
    pub fn new(cfg: &SipConfig, nonce_secret: &str, now: u64) -> Self {
        let mut secrets: HashMap<String, Secret> = cfg
            .extensions
            .iter()
            .map(|x| {
                let s = match &x.password {
                    Some(p) => Secret::Password(p.clone()),
                    None => Secret::Ha1 {
                        sha256: x.ha1_sha256.as_ref().map(|h| h.to_ascii_lowercase()),
                        md5: x.ha1_md5.as_ref().map(|h| h.to_ascii_lowercase()),
                    },
                };
                (x.number.clone(), s)
            })
            .collect();
        let mut trunk_users = std::collections::HashSet::new();
        for t in &cfg.trunks {
            if let (Some(u), Some(p)) = (&t.inbound_username, &t.inbound_password) {
                secrets.insert(u.clone(), Secret::Password(p.clone()));
                trunk_users.insert(u.clone());
            }
        }
        Authenticator {
            realm: cfg.realm.clone(),
            algorithms: cfg.digest_algorithms.iter().filter_map(|a| Algorithm::parse(Some(a.as_str()))).collect(),
            secrets,
            trunk_users,
            nonces: Nonces::new(nonce_secret, cfg.timers.nonce_lifetime_s, cfg.auth.max_nonces, now),
            lockout: Lockout::new(cfg.auth.clone()),
        }
    }

    /// A 401 challenge for a client at `ip`; `stale=true` tells it to retry
    /// with the same password (RFC 7616 §3.3).
    pub fn challenge(&mut self, now: u64, ip: IpAddr, stale: bool) -> Refusal {
        let nonce = self.nonces.issue(now, ip);
        Refusal::Challenge(digest::challenges(&self.realm, &nonce, stale, &self.algorithms))
    }

    /// Check the `Authorization` of `req` from `ip`: the extension on success.
    pub fn authenticate(&mut self, now: u64, req: &Request, ip: IpAddr) -> Result<String, Refusal> {
        // No Digest credentials (none, or another scheme): a plain challenge,
        // not a failure — every phone's first REGISTER looks like this.
        let Some(creds) = req.headers.get("Authorization").and_then(|v| AuthParams::parse(v).ok()) else {
            return Err(self.challenge(now, ip, false));
        };
        if !creds.scheme.eq_ignore_ascii_case("Digest") {
            return Err(self.challenge(now, ip, false));
        }
        let user = creds.get("username").unwrap_or("");
        // Only configured extensions get a lockout entry of their own, so the
        // extension table is bounded by the configuration.
        let known = self.secrets.contains_key(user).then_some(user);
        if let Some(l) = self.lockout.handle_attempt(now, ip, known) {
            if l.log {
                tracing::warn!(
                    "SIP auth failure: source={ip} extension={} reason={} locked_until={} refused_unlogged={}",
                    loggable(user),
                    Failure::LockedOut.as_str(),
                    l.until,
                    l.suppressed
                );
            }
            return Err(Refusal::Forbidden);
        }
        match self.verify(&creds, req.method.as_str(), &req.uri, now, ip) {
            Ok(()) => {
                self.lockout.handle_success(ip);
                Ok(user.to_string())
            }
            // Expired: the normal end of a nonce's life, not an attack.
            Err(Verdict::Stale) => Err(self.challenge(now, ip, true)),
            Err(Verdict::Failed { failure, nonce_valid }) => {
                let locked = self.lockout.handle_failure(now, ip, known);
                tracing::warn!(
                    "SIP auth failure: source={ip} extension={} reason={}{}",
                    loggable(user),
                    failure.as_str(),
                    locked.map(|t| format!(" locked_until={t}")).unwrap_or_default()
                );
                match failure {
                    // A right response over a nonce that cannot be used:
                    // RFC 7616 §3.3 stale=true, with a fresh nonce for this
                    // address. Only someone with the password can answer it.
                    Failure::ForeignNonce | Failure::Replay => Err(self.challenge(now, ip, true)),
                    // Wrong credentials over one of our live nonces: refused
                    // outright rather than re-challenged forever.
                    _ if nonce_valid => Err(Refusal::Forbidden),
                    _ => Err(self.challenge(now, ip, false)),
                }
            }
        }
    }

    /// Whether `user` is a trunk's inbound user name (not a phone's).
    pub fn is_trunk_user(&self, user: &str) -> bool {
        self.trunk_users.contains(user)
    }

    /// Forget lockout entries that went quiet (call now and then).
    pub fn handle_timeout(&mut self, now: u64) {
        self.lockout.handle_timeout(now);
    }

    fn verify(&mut self, creds: &AuthParams, method: &str, request_uri: &str, now: u64, ip: IpAddr) -> Result<(), Verdict> {
        let (Some(user), Some(nonce), Some(uri), Some(resp)) =
            (creds.get("username"), creds.get("nonce"), creds.get("uri"), creds.get("response"))
        else {
            return Err(Verdict::failed(Failure::Malformed, false));
        };
        let nonce_valid = self.nonces.check(nonce, now, ip).is_ok();
        let failed = |f| Err(Verdict::failed(f, nonce_valid));
        // Answering with an algorithm we did not offer (MD5 when only
        // SHA-256 is configured) is refused: a downgrade (RFC 8760 §3).
        let Some(algorithm) = Algorithm::parse(creds.get("algorithm")).filter(|a| self.algorithms.contains(a)) else {
            return failed(Failure::Algorithm);
        };
        if creds.get("realm") != Some(self.realm.as_str()) {
            return failed(Failure::Malformed);
        }
        // RFC 7616 §3.4.6 / RFC 2617 §3.2.2.5: the server checks that `uri`
        // names the resource of the Request-URI; otherwise a response
        // captured for one request could authorize another.
        if !same_uri(uri, request_uri) {
            return failed(Failure::UriMismatch);
        }
        let (qop, nc) = match creds.get("qop") {
            // No qop (RFC 2069 style): the nonce is good for one request.
            None => (None, 1),
            Some(q) if q.eq_ignore_ascii_case("auth") => match (creds.get("nc"), creds.get("cnonce")) {
                (Some(nc), Some(c)) => match parse_nc(nc) {
                    Some(n) => (Some((nc, c)), n),
                    None => return failed(Failure::Malformed),
                },
                _ => return failed(Failure::Malformed),
            },
            Some(_) => return failed(Failure::Malformed),
        };
        // An unknown user costs the same hashing as a known one, against a
        // throwaway HA1, so timing does not tell which extensions exist.
        let ha1 = match self.secrets.get(user) {
            Some(Secret::Password(p)) => Some(digest::ha1(algorithm, user, &self.realm, p)),
            Some(Secret::Ha1 { sha256, md5 }) => match algorithm {
                Algorithm::Sha256 => sha256.clone(),
                Algorithm::Md5 => md5.clone(),
            },
            None => None,
        };
        let known = ha1.is_some();
        let ha1 = ha1.unwrap_or_else(|| digest::ha1(algorithm, user, &self.realm, "\u{0}no such user"));
        let expected = digest::response_from_ha1(algorithm, &ha1, method, uri, nonce, qop);
        let right = digest::responses_match(&expected, resp);
        if !known {
            return failed(Failure::UnknownUser);
        }
        if !right {
            return failed(Failure::WrongPassword);
        }
        // Only a right response is recorded against its nonce, so nobody
        // without the password can fill the nonce table.
        match self.nonces.accept(nonce, nc, now, ip) {
            Ok(()) => Ok(()),
            Err(NonceError::Stale) => Err(Verdict::Stale),
            Err(NonceError::Foreign) => failed(Failure::ForeignNonce),
            Err(NonceError::Replayed) => failed(Failure::Replay),
        }
    }
}

enum Verdict {
    Stale,
    Failed { failure: Failure, nonce_valid: bool },
}

impl Verdict {
    fn failed(failure: Failure, nonce_valid: bool) -> Verdict {
        Verdict::Failed { failure, nonce_valid }
    }
}

/// `uri=` against the Request-URI: equal as text, or as SIP URIs (RFC 3261
/// §19.1.4 leaves room for case and escaping differences).
fn same_uri(uri: &str, request_uri: &str) -> bool {
    if uri == request_uri {
        return true;
    }
    match (SipUri::parse(uri), SipUri::parse(request_uri)) {
        (Ok(a), Ok(b)) => {
            a.scheme == b.scheme
                && a.user_unescaped() == b.user_unescaped()
                && a.host.to_string().eq_ignore_ascii_case(&b.host.to_string())
                && a.port == b.port
        }
        _ => false,
    }
}

/// The username as it may appear in a log line: it comes from the network,
/// so only a short run of plain characters, never a space or newline that
/// could forge another field or line for fail2ban.
fn loggable(user: &str) -> String {
    let s: String = user.chars().take(32).map(|c| if c.is_ascii_alphanumeric() || "._-+".contains(c) { c } else { '?' }).collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
