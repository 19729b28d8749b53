//! Request validation (RFC 3261 §8.2, §16.3; RFC 4475 verdicts): turns a
//! parsed `Request` into the fields the UAS acts on, or the error response
//! code it deserves. Pure; the table-driven test in `tests/torture.rs` feeds
//! every RFC 4475/5118 message through the running endpoint.

use super::headers::{CSeq, NameAddr, Via};
use super::message::{Method, Request};
use super::uri::{Uri, UriError};

/// Option tags we support in Require (none mandatory for a UAS like us).
pub const SUPPORTED: &[&str] = &["replaces", "norefersub"];

/// The parsed core of a valid request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub uri: Uri,
    pub vias: Vec<Via>,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: CSeq,
    pub max_forwards: Option<u8>,
    pub expires: Option<u32>,
}

/// Why a request is refused, with any header the RFC asks the answer to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    pub why: String,
    pub extra: Vec<(&'static str, String)>,
}

impl Rejection {
    pub fn new(code: u16, why: impl Into<String>) -> Self {
        Rejection { code, why: why.into(), extra: Vec::new() }
    }
}

/// Single-valued headers that may not repeat (RFC 4475 multi01).
const SINGLE: &[&str] = &["To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Type", "Expires"];

pub fn check_request(req: &Request) -> Result<RequestInfo, Rejection> {
    if req.version != "SIP/2.0" {
        return Err(Rejection::new(505, "SIP version not supported"));
    }
    let h = &req.headers;
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if h.get(name).is_none() {
            return Err(Rejection::new(400, format!("Missing {name}")));
        }
    }
    for name in SINGLE {
        if h.count(name) > 1 {
            return Err(Rejection::new(400, format!("Multiple {name}")));
        }
    }
    let bad = |e: &dyn std::fmt::Display| Rejection::new(400, e.to_string());
    let mut vias = Vec::new();
    for v in h.get_all("Via") {
        vias.extend(Via::parse_all(v).map_err(|e| bad(&e))?);
    }
    let from = NameAddr::parse(h.get("From").unwrap_or(""), "From").map_err(|e| bad(&e))?;
    let to = NameAddr::parse(h.get("To").unwrap_or(""), "To").map_err(|e| bad(&e))?;
    for c in h.get_all("Contact") {
        if c.trim() != "*" {
            for part in super::headers::split_commas(c) {
                NameAddr::parse(part, "Contact").map_err(|e| bad(&e))?;
            }
        }
    }
    let call_id = h.get("Call-ID").unwrap_or("").trim().to_string();
    if call_id.is_empty() || call_id.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(Rejection::new(400, "Bad Call-ID"));
    }
    let cseq = CSeq::parse(h.get("CSeq").unwrap_or("")).map_err(|e| bad(&e))?;
    // CANCEL and ACK carry the INVITE's number but their own method.
    if cseq.method != req.method.as_str() {
        return Err(Rejection::new(400, "CSeq method does not match"));
    }
    let max_forwards = match h.get("Max-Forwards") {
        Some(v) => Some(small_int(v, 255).ok_or_else(|| Rejection::new(400, "Bad Max-Forwards"))? as u8),
        None => None,
    };
    let expires = match h.get("Expires") {
        Some(v) => Some(small_int(v, u32::MAX as u64).ok_or_else(|| Rejection::new(400, "Bad Expires"))? as u32),
        None => None,
    };
    let uri = match Uri::parse(&req.uri) {
        Ok(Uri::Sip(u)) if u.headers.is_some() => return Err(Rejection::new(400, "Headers in Request-URI")),
        Ok(u) => u,
        Err(UriError::UnsupportedScheme) => return Err(Rejection::new(416, "Unsupported URI Scheme")),
        Err(e) => return Err(bad(&e)),
    };
    Ok(RequestInfo { uri, vias, from, to, call_id, cseq, max_forwards, expires })
}

/// Extension and content checks that come after syntax (RFC 3261 §8.2.2–8.2.3).
pub fn check_extensions(req: &Request) -> Result<(), Rejection> {
    // A UAS ignores Proxy-Require; Require must be understood (never on ACK/CANCEL).
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return Ok(());
    }
    let unsupported: Vec<String> = req
        .headers
        .get_all("Require")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .map(str::to_string)
        .collect();
    if !unsupported.is_empty() {
        let mut r = Rejection::new(420, "Bad Extension");
        r.extra.push(("Unsupported", unsupported.join(", ")));
        return Err(r);
    }
    Ok(())
}

/// For requests whose body we interpret as SDP: 415 for other types, 406
/// when the peer says it cannot accept SDP in our answer (RFC 4475 sdp01).
pub fn check_sdp_content(req: &Request) -> Result<(), Rejection> {
    let ct = req.headers.get("Content-Type").map(media_type);
    if !req.body.is_empty() {
        match ct.as_deref() {
            Some("application/sdp") => {}
            _ => {
                let mut r = Rejection::new(415, "Unsupported Media Type");
                r.extra.push(("Accept", "application/sdp".into()));
                return Err(r);
            }
        }
        if req.headers.get("Content-Encoding").is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            let mut r = Rejection::new(415, "Unsupported Content-Encoding");
            r.extra.push(("Accept-Encoding", "identity".into()));
            return Err(r);
        }
    }
    if let Some(accept) = req.headers.get("Accept") {
        let ok = accept.split(',').map(media_type).any(|t| t == "application/sdp" || t == "application/*" || t == "*/*");
        if !ok {
            let mut r = Rejection::new(406, "Not Acceptable");
            r.extra.push(("Accept", "application/sdp".into()));
            return Err(r);
        }
    }
    Ok(())
}

/// `type/subtype`, lower-cased, without parameters.
pub fn media_type(v: &str) -> String {
    v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn small_int(v: &str, max: u64) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().filter(|n| *n <= max)
}
