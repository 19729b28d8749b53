//! Dialog state (RFC 3261 §12) and builders for the requests and responses
//! we create. Pure data; the endpoint decides when to use them.

use std::net::SocketAddr;

use rand::Rng;

use super::headers::{split_commas, NameAddr};
use super::message::{reason_phrase, Method, Request, Response};
use super::transaction::{Peer, MAGIC_COOKIE};

/// Our side's address for one transport, as written in Via/Contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub addr: SocketAddr,
}

impl Local {
    pub fn hostport(&self) -> String {
        match self.addr {
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        }
    }
}

/// A confirmed or early dialog, from our point of view.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Full From/To values for requests we send (with tags).
    pub local_uri: String,
    pub remote_uri: String,
    /// Remote Contact URI: the Request-URI of in-dialog requests.
    pub remote_target: String,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
    pub route_set: Vec<String>,
    /// Where in-dialog requests go (the peer we talk to: symmetric signalling).
    pub peer: Peer,
}

impl Dialog {
    /// UAS side, from the INVITE (§12.1.1).
    pub fn from_invite(req: &Request, from: &NameAddr, local_tag: String, peer: Peer, cseq: u32) -> Dialog {
        let h = &req.headers;
        let remote_target = h
            .get("Contact")
            .and_then(|c| split_commas(c).first().and_then(|c| NameAddr::parse(c, "Contact").ok()))
            .map(|c| c.uri)
            .unwrap_or_else(|| from.uri.clone());
        let to = h.get("To").unwrap_or("").to_string();
        Dialog {
            call_id: h.get("Call-ID").unwrap_or("").trim().to_string(),
            local_uri: with_tag(&to, &local_tag),
            local_tag,
            remote_tag: from.tag().map(str::to_string),
            remote_uri: h.get("From").unwrap_or("").to_string(),
            remote_target,
            local_cseq: 0,
            remote_cseq: Some(cseq),
            route_set: h.get_all("Record-Route").flat_map(split_commas).map(str::to_string).collect(),
            peer,
        }
    }

    /// A new in-dialog request with the next CSeq (§12.2.1.1).
    pub fn request(&mut self, method: Method, local: Local, branch: &str) -> Request {
        if method != Method::Ack {
            self.local_cseq += 1;
        }
        let mut r = Request::new(method.clone(), self.remote_target.clone());
        r.headers.push("Via", via_value(local, self.peer, branch));
        for route in &self.route_set {
            r.headers.push("Route", route.clone());
        }
        r.headers.push("Max-Forwards", "70");
        r.headers.push("From", self.local_uri.clone());
        r.headers.push("To", self.remote_uri.clone());
        r.headers.push("Call-ID", self.call_id.clone());
        r.headers.push("CSeq", format!("{} {}", self.local_cseq, method));
        r
    }
}

pub fn via_value(local: Local, peer: Peer, branch: &str) -> String {
    format!("SIP/2.0/{} {};branch={branch};rport", peer.transport.as_str(), local.hostport())
}

/// Append `;tag=` to a From/To value that has none.
pub fn with_tag(value: &str, tag: &str) -> String {
    match NameAddr::parse(value, "To") {
        Ok(na) if na.tag().is_some() => value.to_string(),
        _ => format!("{value};tag={tag}"),
    }
}

pub fn new_tag(rng: &mut impl Rng) -> String {
    format!("{:016x}", rng.gen::<u64>())
}

pub fn new_branch(rng: &mut impl Rng) -> String {
    format!("{MAGIC_COOKIE}{:016x}", rng.gen::<u64>())
}

/// A response that establishes a dialog (18x, 2xx to an INVITE) carries
/// the request's Record-Route values, in order (§12.1.1): without them a
/// proxy in front of us (Kamailio spreading calls over nodes) is left out
/// of the caller's ACK and BYE, which then cannot find the node.
pub fn copy_record_route(req: &Request, resp: &mut Response) {
    for v in req.headers.get_all("Record-Route") {
        resp.headers.push("Record-Route", v);
    }
}

/// Response to `req` (§8.2.6): Via, From, To, Call-ID, CSeq copied; a To
/// tag added on anything but 100. Works on partially valid requests too.
pub fn response_for(req: &Request, code: u16, to_tag: Option<&str>) -> Response {
    let mut resp = Response { status: code, reason: reason_phrase(code).to_string(), headers: Default::default(), body: Vec::new() };
    let h = &req.headers;
    for v in h.get_all("Via") {
        resp.headers.push("Via", v);
    }
    if let Some(f) = h.get("From") {
        resp.headers.push("From", f);
    }
    if let Some(t) = h.get("To") {
        let t = match to_tag {
            Some(tag) if code > 100 => with_tag(t, tag),
            _ => t.to_string(),
        };
        resp.headers.push("To", t);
    }
    for name in ["Call-ID", "CSeq"] {
        if let Some(v) = h.get(name) {
            resp.headers.push(name, v);
        }
    }
    resp
}
