//! Built-in registrar for staff extensions (RFC 3261 §10.3) with digest
//! authentication (RFC 8760, see `auth`). Sans-IO: wall-clock time (Unix
//! seconds) is passed in, bindings are persisted through a small
//! [`BindingStore`] trait (a JSON file here; the integrator may back it with
//! the SQL store). Bindings are bounded: per extension
//! (`max_contacts_per_extension`) and overall (`max_bindings`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::auth::{Authenticator, Refusal};
use super::config::{SipConfig, Transport};
use super::headers::{param, split_commas, NameAddr};
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
    /// Unix seconds of the last REGISTER that added or refreshed it (the
    /// least recent goes first when an extension has too many).
    #[serde(default)]
    pub registered_at: u64,
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

impl From<Refusal> for RegisterOutcome {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Challenge(values) => {
                RegisterOutcome { code: 401, headers: values.into_iter().map(|c| ("WWW-Authenticate", c)).collect() }
            }
            Refusal::Forbidden => RegisterOutcome::code(403),
        }
    }
}

pub struct Registrar {
    bindings: HashMap<String, Vec<Binding>>,
    store: Box<dyn BindingStore>,
    auth: Authenticator,
    max_contacts: usize,
    max_bindings: usize,
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
            auth: Authenticator::new(cfg, nonce_secret, now),
            max_contacts: cfg.max_contacts_per_extension.max(1),
            max_bindings: cfg.max_bindings.max(1),
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
    /// from an extension) from `source`. Returns the extension on success.
    pub fn authenticate(&mut self, req: &Request, source: SocketAddr, now: u64) -> Result<String, RegisterOutcome> {
        self.auth.authenticate(now, req, source.ip()).map_err(RegisterOutcome::from)
    }

    /// Whether `user` is a trunk's inbound user name (it may not register
    /// or call as a phone).
    pub fn is_trunk_user(&self, user: &str) -> bool {
        self.auth.is_trunk_user(user)
    }

    /// Bindings of all extensions together.
    pub fn binding_count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
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
        match self.authenticate(req, source, now) {
            Ok(user) if user == ext && !self.is_trunk_user(&user) => {}
            Ok(_) => return RegisterOutcome::code(403),
            Err(o) => return o,
        }
        let contacts: Vec<&str> = req.headers.get_all("Contact").flat_map(split_commas).filter(|c| !c.is_empty()).collect();
        // More contacts in one REGISTER than an extension may hold: refused
        // whole, since §10.3 commits a REGISTER's bindings all or none, and
        // no phone needs more than a couple.
        if contacts.len() > self.max_contacts {
            return RegisterOutcome::code(403);
        }
        let header_expires = info.expires;
        let mut changed = false;
        if contacts.contains(&"*") {
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
            let total_elsewhere = self.binding_count() - self.bindings.get(&ext).map_or(0, Vec::len);
            let list = self.bindings.entry(ext.clone()).or_default();
            let before = list.clone();
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
                        registered_at: now,
                        call_id: info.call_id.clone(),
                        cseq: info.cseq.seq,
                        source: Some(source),
                        transport,
                    });
                    changed = true;
                }
            }
            // Over the per-extension limit: the least recently refreshed
            // bindings go (RFC 3261 §10.3 lets the registrar decide how long
            // a binding lives). Refusing instead would lock a phone out after
            // a few reboots, each leaving a stale Contact (a new port) behind
            // until it expires.
            list.retain(|b| b.expires_at > now);
            while list.len() > self.max_contacts {
                let Some(i) = list.iter().enumerate().min_by_key(|(_, b)| (b.registered_at, b.expires_at)).map(|(i, _)| i) else {
                    break;
                };
                list.remove(i);
                changed = true;
            }
            // Overall limit, only when this REGISTER adds bindings: nothing
            // is committed (§10.3: all or none) and the phone retries later.
            if list.len() > before.len() && total_elsewhere + list.len() > self.max_bindings {
                *list = before;
                if list.is_empty() {
                    self.bindings.remove(&ext);
                }
                return RegisterOutcome { code: 503, headers: vec![("Retry-After", "300".to_string())] };
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
    /// Also forgets quiet lockout entries.
    pub fn expire(&mut self, now: u64) {
        self.auth.handle_timeout(now);
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
