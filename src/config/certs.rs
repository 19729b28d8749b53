//! What `clinivox check-config` says about the certificates a
//! configuration names: ours for SIP over TLS and HTTPS, each TLS trunk's
//! CA file and client certificate. Missing or unreadable files, a key that
//! is not the certificate's, and expired or not-yet-valid certificates are
//! errors; one that expires within [`EXPIRY_WARNING_DAYS`] is reported.

use std::time::SystemTime;

use super::Config;
use crate::sip::config::Transport;
use crate::tls::{self, CertReport, TlsError, TlsFiles};

/// A certificate expiring sooner than this is worth a line in the report.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// One certificate (or CA file) and what was found.
#[derive(Debug)]
pub struct CertCheck {
    /// The configuration key, e.g. `sip.tls` or `sip.trunks[0].tls_ca`.
    pub key: String,
    pub result: Result<Option<CertReport>, TlsError>,
}

impl CertCheck {
    /// The line check-config prints.
    pub fn line(&self) -> String {
        match &self.result {
            Ok(Some(r)) if r.days_left < EXPIRY_WARNING_DAYS => {
                format!("{}: WARNING expires in {} days ({}), {}", self.key, r.days_left, r.not_after, r.subject)
            }
            Ok(Some(r)) => format!("{}: OK {} (expires {}, {} days)", self.key, r.subject, r.not_after, r.days_left),
            Ok(None) => format!("{}: OK", self.key),
            Err(e) => format!("{}: ERROR {e}", self.key),
        }
    }
}

/// Every certificate `c` names, checked at `now`.
pub fn check_certificates(c: &Config, now: SystemTime) -> Vec<CertCheck> {
    let mut out = Vec::new();
    let pair = |key: String, files: &TlsFiles| CertCheck { key, result: tls::check(files, now).map(Some) };
    if let Some(files) = &c.http.tls {
        out.push(pair("http.tls_cert".into(), files));
    }
    let Some(sip) = &c.sip else { return out };
    if let Some(t) = &sip.tls {
        out.push(pair("sip.tls".into(), &t.files()));
        if t.ca.is_some() {
            let trust = tls::PeerTrust { ca: t.ca.clone(), ..Default::default() };
            out.push(CertCheck { key: "sip.tls.ca".into(), result: tls::client_config(&trust).map(|_| None) });
        }
    }
    for (i, t) in sip.trunks.iter().enumerate() {
        if let Some(files) = t.peer_trust().client {
            out.push(pair(format!("sip.trunks[{i}].tls_client_cert"), &files));
        }
    }
    for (i, t) in sip.trunks.iter().enumerate().filter(|(_, t)| t.transport == Some(Transport::Tls)) {
        // The CA file (or the system's roots) must hold a usable certificate.
        let key = format!("sip.trunks[{i}].tls_ca");
        let trust = tls::PeerTrust { client: None, ..t.peer_trust() };
        out.push(CertCheck { key, result: tls::client_config(&trust).map(|_| None) });
    }
    out
}
