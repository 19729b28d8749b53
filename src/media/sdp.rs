//! SDP (RFC 4566) parsing and writing for the telephony audio subset, plus
//! RFC 3264 offer/answer (see [`SdpSession`], in `sdp_negotiate.rs`).
//!
//! Hand-written rather than webrtc-rs `sdp`: that crate targets WebRTC and
//! rejects or loses things real SIP devices send (bare LF line endings,
//! lines out of the strict RFC order, hostnames or `/ttl` in `c=`), while
//! what we need is small: c=, m=, rtpmap, fmtp, ptime, direction and
//! (RFC 4568) crypto.
//! Parsing is lenient on ordering and unknown lines, strict on the syntax of
//! the lines we use, and never panics.

use std::fmt;
use std::net::IpAddr;

use thiserror::Error;

pub use super::g711::Codec;
use super::srtp::CryptoAttribute;

#[path = "sdp_negotiate.rs"]
mod negotiate;
pub use negotiate::{Negotiated, SdpConfig, SdpSession};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SdpError {
    #[error("malformed SDP line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
    #[error("unsupported SDP version")]
    BadVersion,
    #[error("no connection address for the audio stream")]
    MissingConnection,
    #[error("no acceptable audio stream / common codec")]
    NotAcceptable,
    #[error("answer does not match our offer: {0}")]
    AnswerMismatch(&'static str),
}

impl SdpError {
    /// Errors the SIP layer should answer with 488 Not Acceptable Here.
    pub fn is_not_acceptable(&self) -> bool {
        matches!(self, SdpError::NotAcceptable)
    }
}

/// Media direction attribute (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction the other side must use to mirror this one.
    pub fn reverse(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// Combine send/receive permissions.
    pub fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Both sides' wishes combined: only what both allow.
    pub fn intersect(self, other: Direction) -> Self {
        Self::from_flags(self.sends() && other.sends(), self.receives() && other.receives())
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    pub session_version: u64,
    pub address: IpAddr,
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub pt: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    pub proto: String,
    /// Format list as written (payload types for RTP profiles).
    pub formats: Vec<String>,
    /// Media-level `c=`; falls back to the session-level one.
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<(u8, String)>,
    pub ptime: Option<u32>,
    pub direction: Option<Direction>,
    /// Other attributes, kept for callers that need them (`rtcp`, `ssrc`, ...).
    pub other_attributes: Vec<String>,
}

impl MediaDescription {
    /// Numeric payload types in offer order; non-numeric formats are skipped.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse::<u8>().ok()).filter(|pt| *pt < 128)
    }

    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|r| r.pt == pt)
    }

    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps.iter().find(|(p, _)| *p == pt).map(|(_, s)| s.as_str())
    }

    /// Whether this is plain RTP audio we can handle (no SRTP, no DTLS).
    pub fn is_rtp_audio(&self) -> bool {
        self.media.eq_ignore_ascii_case("audio")
            && (self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF"))
    }

    /// Whether this is SRTP audio keyed in SDP: RTP/SAVP (RFC 3711) or
    /// RTP/SAVPF (RFC 5124, which we run as SAVP). DTLS-SRTP
    /// (`UDP/TLS/RTP/SAVP`) is not.
    pub fn is_srtp_audio(&self) -> bool {
        self.media.eq_ignore_ascii_case("audio")
            && (self.proto.eq_ignore_ascii_case("RTP/SAVP") || self.proto.eq_ignore_ascii_case("RTP/SAVPF"))
    }

    /// The `a=crypto` lines we can use, in the order written; the others
    /// (unknown suites, MKI, session parameters, bad keys) are skipped.
    pub fn crypto(&self) -> impl Iterator<Item = CryptoAttribute> + '_ {
        self.other_attributes.iter().filter_map(|a| a.strip_prefix("crypto:")).filter_map(|v| CryptoAttribute::parse(v).ok())
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    /// Session-level `c=`.
    pub connection: Option<IpAddr>,
    /// Session-level direction attribute (applies to media without one).
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parse SDP text. Accepts CRLF or LF, ignores unknown lines.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut origin = None;
        let mut session_name = String::from("-");
        let mut connection = None;
        let mut direction = None;
        let mut media: Vec<MediaDescription> = Vec::new();
        let mut saw_version = false;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim_end_matches('\r').trim_start();
            if line.is_empty() {
                continue;
            }
            let bad = |reason| SdpError::Malformed { line: line_no, reason };
            let (kind, value) = match line.as_bytes() {
                [k, b'=', ..] => (*k, &line[2..]),
                _ => return Err(bad("expected <type>=<value>")),
            };
            match kind {
                b'v' => {
                    if value.trim() != "0" {
                        return Err(SdpError::BadVersion);
                    }
                    saw_version = true;
                }
                b'o' => origin = Some(parse_origin(value).ok_or_else(|| bad("bad o= line"))?),
                b's' => session_name = value.to_string(),
                b'c' => {
                    let addr = parse_connection(value).ok_or_else(|| bad("bad c= line"))?;
                    match media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => connection = Some(addr),
                    }
                }
                b'm' => media.push(parse_media(value).ok_or_else(|| bad("bad m= line"))?),
                b'a' => {
                    let (name, val) = match value.split_once(':') {
                        Some((n, v)) => (n, Some(v.trim())),
                        None => (value.trim(), None),
                    };
                    match media.last_mut() {
                        Some(m) => parse_media_attribute(m, name, val).ok_or_else(|| bad("bad attribute"))?,
                        None => {
                            if let Some(d) = Direction::parse(name) {
                                direction = Some(d);
                            }
                        }
                    }
                }
                // t=, b=, i=, u=, e=, p=, k=, r=, z=: not needed for audio setup.
                _ => {}
            }
        }
        if !saw_version {
            return Err(SdpError::Malformed { line: 1, reason: "missing v= line" });
        }
        let origin = origin.ok_or(SdpError::Malformed { line: 1, reason: "missing o= line" })?;
        Ok(SessionDescription { origin, session_name, connection, direction, media })
    }

    /// Effective connection address of a media section.
    pub fn media_connection(&self, m: &MediaDescription) -> Option<IpAddr> {
        m.connection.or(self.connection)
    }

    /// Effective direction of a media section (RFC 3264: default sendrecv).
    pub fn media_direction(&self, m: &MediaDescription) -> Direction {
        m.direction.or(self.direction).unwrap_or_default()
    }
}

impl fmt::Display for SessionDescription {
    /// Serialise with CRLF line endings in RFC 4566 order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(f, "v=0\r\n")?;
        write!(f, "o={} {} {} IN {} {}\r\n", o.username, o.session_id, o.session_version, addr_type(o.address), o.address)?;
        write!(f, "s={}\r\n", self.session_name)?;
        if let Some(c) = self.connection {
            write!(f, "c=IN {} {}\r\n", addr_type(c), c)?;
        }
        write!(f, "t=0 0\r\n")?;
        if let Some(d) = self.direction {
            write!(f, "a={}\r\n", d.as_str())?;
        }
        for m in &self.media {
            write!(f, "m={} {} {} {}\r\n", m.media, m.port, m.proto, m.formats.join(" "))?;
            if let Some(c) = m.connection {
                write!(f, "c=IN {} {}\r\n", addr_type(c), c)?;
            }
            for r in &m.rtpmaps {
                write!(f, "a=rtpmap:{} {}/{}", r.pt, r.encoding, r.clock_rate)?;
                if let Some(ch) = r.channels {
                    write!(f, "/{ch}")?;
                }
                write!(f, "\r\n")?;
            }
            for (pt, p) in &m.fmtps {
                write!(f, "a=fmtp:{pt} {p}\r\n")?;
            }
            if let Some(p) = m.ptime {
                write!(f, "a=ptime:{p}\r\n")?;
            }
            for a in &m.other_attributes {
                write!(f, "a={a}\r\n")?;
            }
            if let Some(d) = m.direction {
                write!(f, "a={}\r\n", d.as_str())?;
            }
        }
        Ok(())
    }
}

fn addr_type(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

/// `<user> <sess-id> <sess-version> IN IP4|IP6 <address>`.
fn parse_origin(v: &str) -> Option<Origin> {
    let f: Vec<&str> = v.split_whitespace().collect();
    if f.len() != 6 || f[3] != "IN" {
        return None;
    }
    // Some devices put non-IP hostnames here; the origin address is only
    // informational, so fall back to unspecified rather than failing.
    let address = f[5].parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    Some(Origin { username: f[0].to_string(), session_id: f[1].parse().ok()?, session_version: f[2].parse().ok()?, address })
}

/// `IN IP4|IP6 <address>[/ttl[/count]]`; hostnames are not resolved (→ error).
fn parse_connection(v: &str) -> Option<IpAddr> {
    let mut f = v.split_whitespace();
    if f.next()? != "IN" {
        return None;
    }
    let ty = f.next()?;
    let addr = f.next()?.split('/').next()?;
    let ip: IpAddr = addr.parse().ok()?;
    match (ty, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Some(ip),
        _ => None,
    }
}

/// `<media> <port>[/<count>] <proto> <fmt> ...`.
fn parse_media(v: &str) -> Option<MediaDescription> {
    let mut f = v.split_whitespace();
    let media = f.next()?.to_string();
    let port = f.next()?.split('/').next()?.parse().ok()?;
    let proto = f.next()?.to_string();
    Some(MediaDescription { media, port, proto, formats: f.map(str::to_string).collect(), ..Default::default() })
}

/// Returns `None` only for malformed values of attributes we interpret.
fn parse_media_attribute(m: &mut MediaDescription, name: &str, val: Option<&str>) -> Option<()> {
    if let Some(d) = Direction::parse(name) {
        m.direction = Some(d);
        return Some(());
    }
    match (name, val) {
        ("rtpmap", Some(v)) => {
            let (pt, rest) = v.split_once(char::is_whitespace)?;
            let mut parts = rest.trim().split('/');
            let encoding = parts.next()?.to_string();
            let clock_rate = parts.next()?.parse().ok()?;
            let channels = match parts.next() {
                Some(c) => Some(c.parse().ok()?),
                None => None,
            };
            m.rtpmaps.push(RtpMap { pt: pt.parse().ok()?, encoding, clock_rate, channels });
        }
        ("fmtp", Some(v)) => {
            let (pt, rest) = v.split_once(char::is_whitespace).unwrap_or((v, ""));
            // Non-numeric formats (non-RTP media) are kept verbatim instead.
            match pt.parse() {
                Ok(pt) => m.fmtps.push((pt, rest.trim().to_string())),
                Err(_) => m.other_attributes.push(format!("fmtp:{v}")),
            }
        }
        // Some stacks write "20.0" or garbage; ignore what isn't a number.
        ("ptime", Some(v)) => m.ptime = v.split('.').next()?.parse().ok().filter(|p| *p > 0),
        (n, Some(v)) => m.other_attributes.push(format!("{n}:{v}")),
        (n, None) => m.other_attributes.push(n.to_string()),
    }
    Some(())
}

#[cfg(test)]
#[path = "sdp_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sdp_srtp_tests.rs"]
mod srtp_tests;
