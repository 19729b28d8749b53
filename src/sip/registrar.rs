//! Built-in registrar for staff extensions (RFC 3261 §10.3) with digest
//! authentication (RFC 8760). Sans-IO: wall-clock time (Unix seconds) is
//! passed in, bindings are persisted through a small [`BindingStore`] trait
//! (a JSON file here; the integrator may back it with the SQL store).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::config::{SipConfig, Transport};
use super::digest::{self, NonceSource, Verdict};
use super::headers::{param, split_commas, AuthParams, NameAddr};
use super::message::Request;
use super::uri::Uri;
use super::validate::RequestInfo;

/// One contact registered for an extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub extension: String,
    /// Contact URI, where calls to the extension go.
    pub contact: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub call_id: String,
    pub cseq: u32,
    /// Where the REGISTER came from (used instead of the Contact host when
    /// the phone is behind NAT or wrote an unreachable address).
    pub source: Option<SocketAddr>,
    pub transport: Transport,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("binding store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("binding store format: {0}")]
    Format(#[from] serde_json::Error),
}

/// Persistence for bindings; `save` gets the full current set.
pub trait BindingStore: Send {
    fn load(&mut self) -> Result<Vec<Binding>, StoreError>;
    fn save(&mut self, all: &[Binding]) -> Result<(), StoreError>;
}

#[derive(Debug, Default)]
pub struct MemoryStore(pub Vec<Binding>);

impl BindingStore for MemoryStore {
    fn load(&mut self) -> Result<Vec<Binding>, StoreError> {
        Ok(self.0.clone())
    }
    fn save(&mut self, all: &[Binding]) -> Result<(), StoreError> {
        self.0 = all.to_vec();
        Ok(())
    }
}

/// Bindings in one JSON file, replaced atomically (write temp + rename).
#[derive(Debug)]
pub struct JsonFileStore {
    pub path: PathBuf,
}

impl BindingStore for JsonFileStore {
    fn load(&mut self) -> Result<Vec<Binding>, StoreError> {
        match std::fs::read(&self.path) {
            Ok(b) => Ok(serde_json::from_slice(&b)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
    fn save(&mut self, all: &[Binding]) -> Result<(), StoreError> {
        let tmp = self.path.with_extension("tmp");
        // Phones' addresses and the staff extensions behind them: owner-only.
        std::io::Write::write_all(&mut crate::private_files::create(&tmp)?, &serde_json::to_vec_pretty(all)?)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}

/// What to answer a REGISTER with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOutcome {
    pub code: u16,
    pub headers: Vec<(&'static str, String)>,
}

impl RegisterOutcome {
    fn code(code: u16) -> Self {
        RegisterOutcome { code, headers: Vec::new() }
    }
}

pub struct Registrar {
    bindings: HashMap<String, Vec<Binding>>,
    store: Box<dyn BindingStore>,
    nonces: NonceSource,
    realm: String,
    /// Challenges offered, in order (`[sip] digest_algorithms`).
    algorithms: Vec<digest::Algorithm>,
    passwords: HashMap<String, String>,
    min_expires: u32,
    max_expires: u32,
    default_expires: u32,
    /// Last persistence error, for the driver to log.
    pub store_error: Option<String>,
}

impl Registrar {
    /// Loads persisted bindings; ones already expired at `now` are dropped.
    pub fn new(cfg: &SipConfig, mut store: Box<dyn BindingStore>, nonce_secret: &str, now: u64) -> Result<Self, StoreError> {
        let mut bindings: HashMap<String, Vec<Binding>> = HashMap::new();
        for b in store.load()? {
            if b.expires_at > now && cfg.extension(&b.extension).is_some() {
                bindings.entry(b.extension.clone()).or_default().push(b);
            }
        }
        let t = &cfg.timers;
        Ok(Registrar {
            bindings,
            store,
            nonces: NonceSource::new(nonce_secret, t.nonce_lifetime_s),
            realm: cfg.realm.clone(),
            algorithms: cfg.digest_algorithms.iter().filter_map(|a| digest::Algorithm::parse(Some(a.as_str()))).collect(),
            passwords: cfg.extensions.iter().map(|x| (x.number.clone(), x.password.clone())).collect(),
            min_expires: t.register_min_expires_s,
            max_expires: t.register_max_expires_s,
            default_expires: t.register_default_expires_s,
            store_error: None,
        })
    }

    /// Live contacts of an extension, most recent first.
    pub fn contacts(&self, extension: &str, now: u64) -> Vec<Binding> {
        let mut v: Vec<Binding> =
            self.bindings.get(extension).map(|bs| bs.iter().filter(|b| b.expires_at > now).cloned().collect()).unwrap_or_default();
        v.sort_by(|a, b| b.expires_at.cmp(&a.expires_at));
        v
    }

    /// Whether `source` is the address of a live registration (calls from
    /// registered phones are allowed in).
    pub fn is_registered_source(&self, source: SocketAddr, now: u64) -> Option<&str> {
        self.bindings
            .values()
            .flatten()
            .find_map(|b| (b.expires_at > now && b.source.is_some_and(|s| s.ip() == source.ip())).then_some(b.extension.as_str()))
    }

    /// Check digest credentials on a non-REGISTER request (e.g. an INVITE
    /// from an extension). Returns the extension on success.
    pub fn authenticate(&self, req: &Request, now: u64) -> Result<String, RegisterOutcome> {
        let creds = req.headers.get("Authorization").and_then(|v| AuthParams::parse(v).ok());
        let Some(creds) = creds else {
            return Err(self.challenge(now, false));
        };
        let pw = |u: &str| self.passwords.get(u).cloned();
        match digest::verify(&creds, req.method.as_str(), &self.realm, &self.nonces, now, pw) {
            Verdict::Ok => Ok(creds.get("username").unwrap_or("").to_string()),
            Verdict::Stale => Err(self.challenge(now, true)),
            // A response computed over one of our nonces but wrong: a bad
            // password, refused outright rather than re-challenged forever.
            Verdict::Bad if creds.get("nonce").is_some_and(|n| self.nonces.check(n, now).is_ok()) => Err(RegisterOutcome::code(403)),
            Verdict::Bad => Err(self.challenge(now, false)),
        }
    }

    fn challenge(&self, now: u64, stale: bool) -> RegisterOutcome {
        let nonce = self.nonces.issue(now);
        RegisterOutcome {
            code: 401,
            headers: digest::challenges(&self.realm, &nonce, stale, &self.algorithms)
                .into_iter()
                .map(|c| ("WWW-Authenticate", c))
                .collect(),
        }
    }

    /// Process one REGISTER (already validated) at Unix time `now`.
    pub fn handle_register(
        &mut self,
        now: u64,
        req: &Request,
        info: &RequestInfo,
        source: SocketAddr,
        transport: Transport,
    ) -> RegisterOutcome {
        let Some(ext) = Uri::parse(&info.to.uri).ok().and_then(|u| u.user()) else {
            return RegisterOutcome::code(404);
        };
        // An unknown extension is challenged like a known one and then
        // refused 403, never answered 404 up front: the answer must not tell
        // a scanner which extensions exist.
        match self.authenticate(req, now) {
            Ok(user) if user == ext => {}
            Ok(_) => return RegisterOutcome::code(403),
            Err(o) => return o,
        }
        let contacts: Vec<&str> = req.headers.get_all("Contact").flat_map(split_commas).filter(|c| !c.is_empty()).collect();
        let header_expires = info.expires;
        let mut changed = false;
        if contacts.iter().any(|c| *c == "*") {
            // Un-register everything: only legal alone and with Expires: 0.
            if contacts.len() != 1 || header_expires != Some(0) {
                return RegisterOutcome::code(400);
            }
            changed = self.bindings.remove(&ext).is_some();
        } else {
            let mut parsed = Vec::new();
            for c in &contacts {
                let Ok(na) = NameAddr::parse(c, "Contact") else {
                    return RegisterOutcome::code(400);
                };
                let expires = match param(&na.params, "expires") {
                    Some(v) => v.parse::<u64>().unwrap_or(self.default_expires as u64),
                    None => header_expires.map(u64::from).unwrap_or(self.default_expires as u64),
                };
                if expires != 0 && expires < self.min_expires as u64 {
                    return RegisterOutcome { code: 423, headers: vec![("Min-Expires", self.min_expires.to_string())] };
                }
                parsed.push((na.uri, expires.min(self.max_expires as u64)));
            }
            let list = self.bindings.entry(ext.clone()).or_default();
            for (uri, expires) in parsed {
                let existing = list.iter().position(|b| b.contact == uri);
                if let Some(i) = existing {
                    let b = &list[i];
                    // Out-of-order REGISTER on the same Call-ID (RFC 3261 §10.3 step 7).
                    if b.call_id == info.call_id && info.cseq.seq <= b.cseq {
                        continue;
                    }
                    list.remove(i);
                    changed = true;
                }
                if expires > 0 {
                    list.push(Binding {
                        extension: ext.clone(),
                        contact: uri,
                        expires_at: now + expires,
                        call_id: info.call_id.clone(),
                        cseq: info.cseq.seq,
                        source: Some(source),
                        transport,
                    });
                    changed = true;
                }
            }
            if list.is_empty() {
                self.bindings.remove(&ext);
            }
        }
        if changed {
            self.persist();
        }
        let headers =
            self.contacts(&ext, now).into_iter().map(|b| ("Contact", format!("<{}>;expires={}", b.contact, b.expires_at - now))).collect();
        RegisterOutcome { code: 200, headers }
    }

    /// Drop expired bindings (call now and then); persists if any went.
    pub fn expire(&mut self, now: u64) {
        let before: usize = self.bindings.values().map(Vec::len).sum();
        for list in self.bindings.values_mut() {
            list.retain(|b| b.expires_at > now);
        }
        self.bindings.retain(|_, l| !l.is_empty());
        let after: usize = self.bindings.values().map(Vec::len).sum();
        if after != before {
            self.persist();
        }
    }

    fn persist(&mut self) {
        let all: Vec<Binding> = self.bindings.values().flatten().cloned().collect();
        self.store_error = self.store.save(&all).err().map(|e| e.to_string());
    }
}

#[cfg(test)]
#[path = "registrar_tests.rs"]
mod tests;
