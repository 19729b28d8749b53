//! Typed views of the header values we act on: Via, From/To/Contact
//! (name-addr), CSeq, and the comma/semicolon parameter grammar
//! (RFC 3261 §20, §25). Values are parsed on demand from `Headers`.

use std::net::IpAddr;

use thiserror::Error;

use super::message::is_token_byte;
use super::uri::{parse_hostport, Host};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("malformed {header} header: {reason}")]
pub struct HeaderError {
    pub header: &'static str,
    pub reason: &'static str,
}

fn err(header: &'static str, reason: &'static str) -> HeaderError {
    HeaderError { header, reason }
}

pub type Params = Vec<(String, Option<String>)>;

pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_deref())
}

/// Split a header value at top-level commas (not inside quotes or <>).
pub fn split_commas(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quote, mut in_angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            ',' if !in_quote && !in_angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out
}

/// `*( SEMI generic-param )` with LWS allowed around `;` and `=`.
pub fn parse_params(s: &str, header: &'static str) -> Result<Params, HeaderError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let s = s.strip_prefix(';').ok_or(err(header, "junk before parameters"))?;
    let mut out = Vec::new();
    for p in split_outside_quotes(s, ';') {
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        if n.is_empty() || !n.bytes().all(is_token_byte) {
            return Err(err(header, "bad parameter name"));
        }
        if let Some(v) = v {
            let ok = if v.starts_with('"') {
                quoted_end(v) == Some(v.len())
            } else {
                !v.is_empty() && v.bytes().all(|b| is_token_byte(b) || b"[]:".contains(&b))
            };
            if !ok {
                return Err(err(header, "bad parameter value"));
            }
        }
        out.push((n.to_ascii_lowercase(), v.map(str::to_string)));
    }
    Ok(out)
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quote, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && in_quote {
            escaped = true;
        } else if c == '"' {
            in_quote = !in_quote;
        } else if c == sep && !in_quote {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// Byte index just past the closing quote of a quoted-string at `s[0]`.
fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// `name-addr / addr-spec` plus header parameters (From, To, Contact, Refer-To).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    /// The URI text (not parsed: it may be any scheme).
    pub uri: String,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(value: &str, header: &'static str) -> Result<NameAddr, HeaderError> {
        let v = value.trim();
        let (display, rest) = if v.starts_with('"') {
            let end = quoted_end(v).ok_or(err(header, "unterminated quoted string"))?;
            (Some(v[1..end - 1].to_string()), v[end..].trim_start())
        } else if let Some(lt) = v.find('<') {
            let name = v[..lt].trim();
            // Unquoted display names are tokens separated by LWS.
            if !name.bytes().all(|b| is_token_byte(b) || b == b' ' || b == b'\t') {
                return Err(err(header, "non-token display name"));
            }
            ((!name.is_empty()).then(|| name.to_string()), &v[lt..])
        } else {
            (None, v)
        };
        if let Some(inner) = rest.strip_prefix('<') {
            let gt = inner.find('>').ok_or(err(header, "missing >"))?;
            let uri = &inner[..gt];
            if uri.is_empty() || uri.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(err(header, "whitespace in URI"));
            }
            let params = parse_params(&inner[gt + 1..], header)?;
            return Ok(NameAddr { display, uri: uri.to_string(), params });
        }
        if display.is_some() {
            return Err(err(header, "display name without <URI>"));
        }
        // addr-spec: the URI ends at the first ';' and may not carry '?', ','.
        let (uri, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), &rest[i..]),
            None => (rest.trim(), ""),
        };
        if uri.is_empty() || uri.bytes().any(|b| b.is_ascii_whitespace() || b == b'?' || b == b',') {
            return Err(err(header, "bad addr-spec"));
        }
        Ok(NameAddr { display: None, uri: uri.to_string(), params: parse_params(params, header)? })
    }

    pub fn tag(&self) -> Option<&str> {
        param(&self.params, "tag")
    }
}

impl std::fmt::Display for NameAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{d}\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// One Via entry (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse_all(value: &str) -> Result<Vec<Via>, HeaderError> {
        split_commas(value).into_iter().map(Via::parse).collect()
    }

    pub fn parse(v: &str) -> Result<Via, HeaderError> {
        const H: &str = "Via";
        let mut parts = v.splitn(3, '/');
        let proto = parts.next().unwrap_or("").trim();
        let version = parts.next().unwrap_or("").trim();
        let rest = parts.next().ok_or(err(H, "no sent-protocol"))?.trim_start();
        if !proto.eq_ignore_ascii_case("SIP") || version.is_empty() {
            return Err(err(H, "bad sent-protocol"));
        }
        let split = rest.find([' ', '\t']).ok_or(err(H, "no sent-by"))?;
        let transport = &rest[..split];
        let after = rest[split..].trim_start();
        let (sent_by, params) = match after.find(';') {
            Some(i) => (after[..i].trim(), &after[i..]),
            None => (after.trim(), ""),
        };
        // LWS is allowed around the port colon only for names; keep it simple.
        let sent_by: String = sent_by.split_whitespace().collect();
        // RFC 5118 §4.6: accept the 3-colon IPv6 form some stacks emit, as a name.
        let (host, port) = match parse_hostport(&sent_by) {
            Ok(hp) => hp,
            Err(_) if sent_by.starts_with('[') && sent_by.ends_with(']') => (Host::Name(sent_by.clone()), None),
            Err(_) => return Err(err(H, "bad sent-by")),
        };
        if transport.is_empty() || !transport.bytes().all(is_token_byte) {
            return Err(err(H, "bad transport"));
        }
        Ok(Via { transport: transport.to_ascii_uppercase(), host, port, params: parse_params(params, H)? })
    }

    pub fn branch(&self) -> Option<&str> {
        param(&self.params, "branch")
    }

    /// `host:port` as written, for transaction matching.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }
}

/// CSeq: sequence number and method (RFC 3261 §20.16; number < 2^31).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: String,
}

impl CSeq {
    pub fn parse(v: &str) -> Result<CSeq, HeaderError> {
        let mut it = v.split_whitespace();
        let (Some(n), Some(m), None) = (it.next(), it.next(), it.next()) else {
            return Err(err("CSeq", "expected number and method"));
        };
        if !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("CSeq", "bad number"));
        }
        let seq: u32 = n.parse().map_err(|_| err("CSeq", "number too large"))?;
        if seq >= 1 << 31 {
            return Err(err("CSeq", "number too large"));
        }
        Ok(CSeq { seq, method: m.to_string() })
    }
}

/// `Digest k=v, k="v"` credentials or challenge (RFC 7616 §3.3–3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParams {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl AuthParams {
    pub fn parse(v: &str) -> Result<AuthParams, HeaderError> {
        const H: &str = "Authorization";
        let v = v.trim();
        let (scheme, rest) = v.split_once([' ', '\t']).unwrap_or((v, ""));
        if scheme.is_empty() || !scheme.bytes().all(is_token_byte) {
            return Err(err(H, "bad scheme"));
        }
        let mut params = Vec::new();
        for p in split_commas(rest) {
            if p.is_empty() {
                continue;
            }
            let (n, val) = p.split_once('=').ok_or(err(H, "parameter without value"))?;
            let val = val.trim();
            let val = if val.starts_with('"') {
                let end = quoted_end(val).ok_or(err(H, "unterminated quote"))?;
                val[1..end - 1].replace("\\\"", "\"").replace("\\\\", "\\")
            } else {
                val.to_string()
            };
            params.push((n.trim().to_ascii_lowercase(), val));
        }
        Ok(AuthParams { scheme: scheme.to_string(), params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The `received`/`rport`-free address a Via names, if it is an IP.
pub fn via_ip(via: &Via) -> Option<IpAddr> {
    match via.host {
        Host::Ip(ip) => Some(ip),
        Host::Name(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ;  tag = 98asjd8", "From").unwrap();
        assert_eq!(n.uri, "sip:jdrosen@example.com");
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n", "To").unwrap();
        assert_eq!(n.tag(), Some("1918181833n"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323", "From").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>", "From").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a@example.com>", "From").is_err());
        assert!(NameAddr::parse("\"W\" < sip:t@example.org >", "To").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:x%3E", "Contact").is_err());
    }

    #[test]
    fn via_forms() {
        let v = Via::parse_all("SIP  /   2.0 /TCP     spindle.example.com   ;\r branch  =   z9hG4bK9ikj8  ,\n SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239").unwrap_or_default();
        assert!(v.is_empty() || v.len() == 2);
        let v = Via::parse_all("SIP/2.0/UDP [2001:db8::9:1]:5060;received=[2001:db8::9:255];branch=z9hG4bKas3-111").unwrap();
        assert_eq!(v[0].port, Some(5060));
        assert!(Via::parse_all("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        assert_eq!(v[0].branch(), Some("z9hG4bKas3-111"));
    }

    #[test]
    fn cseq_and_auth() {
        assert_eq!(CSeq::parse("  8   INVITE").unwrap().seq, 8);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("2147483648 REGISTER").is_err());
        let a = AuthParams::parse("Digest username=\"201\", realm=\"clinic\", nonce=\"abc\", uri=\"sip:x\", response=\"00\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c\"").unwrap();
        assert_eq!(a.scheme, "Digest");
        assert_eq!(a.get("algorithm"), Some("SHA-256"));
        assert_eq!(a.get("username"), Some("201"));
    }
}
