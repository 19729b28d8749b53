//! Clinivox registering itself to a carrier (`[[sip.trunks]] register =
//! true`), for clinics without a static address: REGISTER with the trunk's
//! digest credentials (401/407 answered once per request), refreshed at half
//! the expiry the carrier grants, retried with a growing back-off after a
//! failure or a timeout. Part of the sans-IO [`Endpoint`]: the driver only
//! sees transmits and a `Registration` event per change.

use std::time::{Duration, Instant};

use super::{Endpoint, EndpointEvent};
use crate::sip::config::{Transport, Trunk};
use crate::sip::dialog::{new_branch, new_tag, via_value};
use crate::sip::digest;
use crate::sip::headers::{param, split_commas, NameAddr};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::{Peer, TxKey};

/// Expiry asked for when the trunk does not say.
const DEFAULT_EXPIRES: u32 = 600;
/// Never refresh more often than this, whatever the carrier grants.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Back-off after failures: 30 s, 60 s, 120 s … at most 10 min.
const RETRY_BASE_S: u64 = 30;
const RETRY_MAX_S: u64 = 600;
/// DNS has no address for the proxy yet: look again this soon.
const UNRESOLVED_RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationStatus {
    /// Registered; the carrier granted this many seconds.
    Registered { expires_s: u32 },
    /// Refused with this final status (408: no answer; 0: proxy unresolved).
    Failed { code: u16 },
}

/// One trunk's registration.
#[derive(Debug)]
pub(super) struct Registration {
    trunk: String,
    call_id: String,
    from_tag: String,
    cseq: u32,
    expires: u32,
    /// When the next REGISTER goes out (None: at the next timeout).
    next_at: Option<Instant>,
    /// The REGISTER in flight, and whether it carried credentials.
    pending: Option<(TxKey, bool)>,
    failures: u32,
    status: Option<RegistrationStatus>,
}

impl Registration {
    pub(super) fn for_trunks(trunks: &[Trunk], rng: &mut impl rand::Rng) -> Vec<Registration> {
        trunks
            .iter()
            .filter(|t| t.register)
            .map(|t| Registration {
                trunk: t.name.clone(),
                call_id: format!("{:016x}@clinivox", rng.gen::<u64>()),
                from_tag: new_tag(rng),
                cseq: 0,
                expires: t.register_expires_s.unwrap_or(DEFAULT_EXPIRES),
                next_at: None,
                pending: None,
                failures: 0,
                status: None,
            })
            .collect()
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        // Not yet scheduled: the first `handle_timeout` sends it (the driver
        // calls it once at start).
        if self.pending.is_some() {
            None
        } else {
            self.next_at
        }
    }
}

impl Endpoint {
    /// Where each trunk registration stands (for logs and tests).
    pub fn registrations(&self) -> Vec<(String, Option<RegistrationStatus>)> {
        self.registrations.iter().map(|r| (r.trunk.clone(), r.status.clone())).collect()
    }

    pub(super) fn drive_registrations(&mut self, now: Instant) {
        for i in 0..self.registrations.len() {
            let r = &self.registrations[i];
            if r.pending.is_none() && r.next_at.is_none_or(|t| t <= now) {
                self.send_register(now, i, None);
            }
        }
    }

    fn send_register(&mut self, now: Instant, i: usize, auth: Option<(&'static str, String)>) {
        let Some(t) = self.cfg.trunks.iter().find(|t| t.name == self.registrations[i].trunk).cloned() else { return };
        let (Some(proxy), Some(user)) = (t.proxy.as_ref(), t.username.as_ref()) else { return };
        let Some(&addr) = t.proxy_addrs.first() else {
            self.registrations[i].next_at = Some(now + UNRESOLVED_RETRY);
            return self.set_registration_status(i, RegistrationStatus::Failed { code: 0 });
        };
        let peer = Peer { transport: t.transport.unwrap_or(Transport::Udp), addr };
        let domain = t.domain.clone().unwrap_or_else(|| proxy.to_uri_host());
        let local = self.local_for(peer);
        let branch = new_branch(&mut self.rng);
        let r = &mut self.registrations[i];
        r.cseq += 1;
        let tp = peer.transport.uri_param();
        let mut req = Request::new(Method::Register, format!("sip:{domain}"));
        req.headers.push("Via", via_value(local, peer, &branch));
        req.headers.push("Max-Forwards", "70");
        req.headers.push("From", format!("<sip:{user}@{domain}>;tag={}", r.from_tag));
        req.headers.push("To", format!("<sip:{user}@{domain}>"));
        req.headers.push("Call-ID", r.call_id.clone());
        req.headers.push("CSeq", format!("{} REGISTER", r.cseq));
        req.headers.push("Contact", format!("<sip:{user}@{}{tp}>", local.hostport()));
        req.headers.push("Expires", r.expires.to_string());
        req.headers.push("Allow", super::ALLOW);
        self.push_agent(&mut req.headers, "User-Agent");
        let authed = auth.is_some();
        if let Some((name, value)) = auth {
            req.headers.push(name, value);
        }
        let key = self.tx.client_send(now, &branch, req, peer);
        self.registrations[i].pending = Some((key.clone(), authed));
        self.reg_tx.insert(key, i);
    }

    /// A final response to one of our REGISTERs.
    pub(super) fn on_register_response(&mut self, now: Instant, i: usize, resp: &Response) {
        let Some((key, authed)) = self.registrations[i].pending.take() else { return };
        self.reg_tx.remove(&key);
        match resp.status {
            401 | 407 if !authed => {
                let (hdr_in, hdr_out) =
                    if resp.status == 407 { ("Proxy-Authenticate", "Proxy-Authorization") } else { ("WWW-Authenticate", "Authorization") };
                let Some(t) = self.cfg.trunks.iter().find(|t| t.name == self.registrations[i].trunk) else { return };
                let (user, pass) = (t.username.clone().unwrap_or_default(), t.password.clone().unwrap_or_default());
                let domain = t.domain.clone().unwrap_or_else(|| t.proxy.as_ref().map(|p| p.to_uri_host()).unwrap_or_default());
                let cnonce = format!("{:016x}", rand::Rng::gen::<u64>(&mut self.rng));
                let answer = digest::best_challenge(resp.headers.get_all(hdr_in))
                    .and_then(|ch| digest::authorize(&ch, &user, &pass, "REGISTER", &format!("sip:{domain}"), &cnonce));
                match answer {
                    Some(a) => self.send_register(now, i, Some((hdr_out, a))),
                    None => self.registration_failed(now, i, resp.status),
                }
            }
            423 => {
                let min = resp.headers.get("Min-Expires").and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > self.registrations[i].expires => {
                        self.registrations[i].expires = m;
                        self.send_register(now, i, None);
                    }
                    _ => self.registration_failed(now, i, 423),
                }
            }
            200..=299 => {
                let granted = granted_expires(resp, self.registrations[i].expires);
                let r = &mut self.registrations[i];
                r.failures = 0;
                r.next_at = Some(now + (Duration::from_secs(u64::from(granted)) / 2).max(MIN_REFRESH));
                self.set_registration_status(i, RegistrationStatus::Registered { expires_s: granted });
            }
            code => self.registration_failed(now, i, code),
        }
    }

    /// Our REGISTER got no final answer (transaction timeout).
    pub(super) fn on_register_timeout(&mut self, now: Instant, i: usize) {
        self.registrations[i].pending = None;
        self.registration_failed(now, i, 408);
    }

    fn registration_failed(&mut self, now: Instant, i: usize, code: u16) {
        let r = &mut self.registrations[i];
        let backoff = (RETRY_BASE_S << r.failures.min(5)).min(RETRY_MAX_S);
        r.failures += 1;
        r.next_at = Some(now + Duration::from_secs(backoff));
        self.set_registration_status(i, RegistrationStatus::Failed { code });
    }

    fn set_registration_status(&mut self, i: usize, status: RegistrationStatus) {
        let r = &mut self.registrations[i];
        if r.status.as_ref() != Some(&status) {
            r.status = Some(status.clone());
            self.events.push_back(EndpointEvent::Registration { trunk: r.trunk.clone(), status });
        }
    }
}

/// The expiry the registrar granted: our Contact's `expires` parameter in
/// the 2xx, else its Expires header, else what we asked for.
fn granted_expires(resp: &Response, asked: u32) -> u32 {
    let from_contact = resp
        .headers
        .get_all("Contact")
        .flat_map(split_commas)
        .filter_map(|c| NameAddr::parse(c, "Contact").ok())
        .find_map(|na| param(&na.params, "expires").and_then(|v| v.parse::<u32>().ok()));
    from_contact.or_else(|| resp.headers.get("Expires").and_then(|v| v.trim().parse().ok())).unwrap_or(asked)
}
