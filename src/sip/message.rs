//! SIP message model, parser and writer (RFC 3261 §7, §25).
//!
//! Our own rather than `rsip`: rsip 0.4 rejects valid RFC 4475 / RFC 5118
//! messages (IPv6 Request-URIs, unknown methods, folded headers), and an
//! unknown method must still be parsed to be answered 501. This module only
//! frames and tokenises; header *values* are interpreted lazily by
//! `crate::sip::headers`, and request validity (400/505/416…) is decided by
//! `crate::sip::validate`. Parsing never panics and never allocates more than
//! the input size.

use std::fmt;

use thiserror::Error;

/// Largest message we accept (UDP datagram or TCP-framed message).
pub const MAX_MESSAGE_LEN: usize = 65_535;

/// Request methods (RFC 3261, 3262, 3265, 3428, 3515, 6086, 3311, 3903).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Refer,
    Notify,
    Info,
    Subscribe,
    Message,
    Update,
    Prack,
    Publish,
    /// Any other token: answered 501 Not Implemented.
    Other(String),
}

impl Method {
    pub fn parse(s: &str) -> Method {
        // Method names are case-sensitive (RFC 3261 §7.1).
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "INFO" => Method::Info,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Info => "INFO",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field. `name` is the canonical long form for known compact
/// names (`v` → `Via`), otherwise as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Ordered header list; lookups are case-insensitive on the name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }

    pub fn count(&self, name: &str) -> usize {
        self.0.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count()
    }

    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push(Header { name: name.to_string(), value: value.into() });
    }

    /// Replace every occurrence of `name` by one header (appended if absent).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name.eq_ignore_ascii_case(name)) {
            Some(i) => {
                self.0[i].value = value;
                let mut n = 0;
                self.0.retain(|h| {
                    let dup = h.name.eq_ignore_ascii_case(name);
                    n += dup as usize;
                    !dup || n == 1
                });
            }
            None => self.push(name, value),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Request-URI as received; interpreted by `crate::sip::uri`.
    pub uri: String,
    /// `SIP/2.0` normally; anything else is answered 505 by validation.
    pub version: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipMessage {
    Request(Request),
    Response(Response),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but CRLFs: a keep-alive (RFC 5626 §3.5.1), not an error to answer.
    #[error("keep-alive")]
    KeepAlive,
    #[error("message too large")]
    TooLarge,
    #[error("bad start line")]
    BadStartLine,
    /// Headers unreadable or framing impossible. If the start line was a
    /// request, `partial` holds what was read so a 400 can still be built.
    #[error("malformed message: {reason}")]
    Malformed { reason: &'static str, partial: Option<Box<Request>> },
}

/// Length of a stream message whose header block is `head` (up to, not
/// including, the blank line) and whose body starts at `body_start`
/// (RFC 3261 §18.3: Content-Length is mandatory on streams; absent means
/// 0). `None`: framing impossible (bad Content-Length), the stream cannot
/// be resynchronised. Incremental framing is in `stream.rs`.
pub fn stream_message_len(head: &[u8], body_start: usize) -> Option<usize> {
    let head = String::from_utf8_lossy(head);
    let Ok(lines) = unfold(&head) else {
        // Unreadable headers: deliver the header block alone, for a 400.
        return Some(body_start);
    };
    let len = content_length(lines.iter().skip(1).filter_map(|l| split_header(l).ok())).ok()?;
    Some(body_start.saturating_add(len.unwrap_or(0)))
}

/// Parse one message. With `datagram`, a body longer than Content-Length is
/// truncated (RFC 3261 §18.3) and a shorter one is an error; without it the
/// input must be exactly one framed message.
pub fn parse(bytes: &[u8], datagram: bool) -> Result<SipMessage, ParseError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(ParseError::TooLarge);
    }
    let lead = bytes.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
    let bytes = &bytes[lead..];
    if bytes.is_empty() {
        return Err(ParseError::KeepAlive);
    }
    // A missing blank line in a datagram means the headers run to the end.
    let (head_len, body_start) = find_head_end(bytes).unwrap_or((bytes.len(), bytes.len()));
    let head = String::from_utf8_lossy(&bytes[..head_len]);
    let lines = unfold(&head).map_err(|_| ParseError::BadStartLine)?;
    let start = parse_start_line(&lines[0])?;
    let mut headers = Headers::default();
    let mut bad_header = false;
    for line in &lines[1..] {
        match split_header(line) {
            Ok((name, value)) => headers.push(canonical_name(name), value),
            Err(()) => bad_header = true,
        }
    }
    let rest = &bytes[body_start..];
    let body = match content_length(
        headers.0.iter().filter_map(|h| h.name.eq_ignore_ascii_case("Content-Length").then_some((h.name.as_str(), h.value.as_str()))),
    ) {
        Ok(Some(n)) if n <= rest.len() => Ok(rest[..n].to_vec()),
        Ok(Some(_)) => Err("Content-Length larger than the message"),
        Ok(None) => Ok(rest.to_vec()),
        Err(reason) => Err(reason),
    };
    let malformed = |reason, start: StartLine, headers: Headers| {
        let partial = match start {
            StartLine::Request { method, uri, version } => Some(Box::new(Request { method, uri, version, headers, body: Vec::new() })),
            StartLine::Response { .. } => None,
        };
        ParseError::Malformed { reason, partial }
    };
    if bad_header {
        return Err(malformed("header line without a name", start, headers));
    }
    if !datagram && body.is_err() {
        return Err(malformed("Content-Length does not match", start, headers));
    }
    let body = match body {
        Ok(b) => b,
        Err(reason) => return Err(malformed(reason, start, headers)),
    };
    Ok(match start {
        StartLine::Request { method, uri, version } => SipMessage::Request(Request { method, uri, version, headers, body }),
        StartLine::Response { status, reason } => SipMessage::Response(Response { status, reason, headers, body }),
    })
}

enum StartLine {
    Request { method: Method, uri: String, version: String },
    Response { status: u16, reason: String },
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // Status-Line: SIP-Version SP Status-Code SP Reason-Phrase.
        let (version, rest) = rest.split_once(' ').ok_or(ParseError::BadStartLine)?;
        if version != "2.0" {
            // Responses of another version are dropped (nothing to answer).
            return Err(ParseError::BadStartLine);
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadStartLine);
        }
        let status: u16 = code.parse().map_err(|_| ParseError::BadStartLine)?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::BadStartLine);
        }
        return Ok(StartLine::Response { status, reason: reason.to_string() });
    }
    // Request-Line: exactly single SPs (RFC 4475 lwsstart/trws are invalid),
    // but we still read it leniently so the 400 can be built.
    let parts: Vec<&str> = line.split(' ').collect();
    let method = parts.first().copied().unwrap_or("");
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(ParseError::BadStartLine);
    }
    let fields: Vec<&str> = parts[1..].iter().copied().filter(|p| !p.is_empty()).collect();
    if fields.len() < 2 || !fields.last().is_some_and(|v| v.starts_with("SIP/")) {
        return Err(ParseError::BadStartLine);
    }
    let version = fields[fields.len() - 1].to_string();
    // Extra spaces (or spaces inside the URI) make the URI "a b", which URI
    // validation rejects with 400.
    let uri = if parts.len() == 3 { parts[1].to_string() } else { format!(" {}", fields[..fields.len() - 1].join(" ")) };
    Ok(StartLine::Request { method: Method::parse(method), uri, version })
}

/// Token characters (RFC 3261 §25.1).
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// End of the header block: (length of head, offset of body). Accepts bare LF.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// Split the head into logical lines, joining folded continuation lines
/// (RFC 3261 §7.3.1) with a single space.
fn unfold(head: &str) -> Result<Vec<String>, ()> {
    let mut lines: Vec<String> = Vec::new();
    for raw in head.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.starts_with(' ') || raw.starts_with('\t') {
            // A continuation of the start line is not allowed.
            if lines.len() < 2 {
                return Err(());
            }
            let last = lines.last_mut().ok_or(())?;
            last.push(' ');
            last.push_str(raw.trim());
        } else {
            lines.push(raw.to_string());
        }
    }
    // A datagram may end right after the last header's CRLF.
    while lines.len() > 1 && lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.is_empty() || lines[0].is_empty() {
        return Err(());
    }
    Ok(lines)
}

/// `name HCOLON value`, allowing whitespace before the colon.
fn split_header(line: &str) -> Result<(&str, &str), ()> {
    let (name, value) = line.split_once(':').ok_or(())?;
    let name = name.trim_end_matches([' ', '\t']);
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(());
    }
    Ok((name, value.trim_matches([' ', '\t'])))
}

/// Content-Length from all its occurrences: they must agree and be a
/// non-negative integer.
fn content_length<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Option<usize>, &'static str> {
    let mut found: Option<usize> = None;
    for (name, value) in headers {
        if !(name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l")) {
            continue;
        }
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err("Content-Length is not a non-negative integer");
        }
        let n: usize = value.parse().map_err(|_| "Content-Length too large")?;
        if found.is_some_and(|f| f != n) {
            return Err("conflicting Content-Length values");
        }
        found = Some(n);
    }
    Ok(found)
}

/// Expand compact header names (RFC 3261 §7.3.3 and later RFCs).
pub fn canonical_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'r' => "Refer-To",
        b'b' => "Referred-By",
        b'o' => "Event",
        b'u' => "Allow-Events",
        _ => name,
    }
}

impl Request {
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        Request { method, uri: uri.into(), version: "SIP/2.0".into(), headers: Headers::default(), body: Vec::new() }
    }

    /// Serialise with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        write_message(start, &self.headers, &self.body)
    }
}

impl Response {
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("SIP/2.0 {} {}\r\n", self.status, self.reason);
        write_message(start, &self.headers, &self.body)
    }

    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }
}

fn write_message(start: String, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = start.into_bytes();
    for h in &headers.0 {
        if h.name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

impl SipMessage {
    pub fn headers(&self) -> &Headers {
        match self {
            SipMessage::Request(r) => &r.headers,
            SipMessage::Response(r) => &r.headers,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }
}

/// Default reason phrases for the codes we send.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        603 => "Decline",
        _ => "Unknown",
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
