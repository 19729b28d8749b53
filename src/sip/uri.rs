//! SIP/SIPS/tel URIs (RFC 3261 §19.1, RFC 3966, RFC 5118 for IPv6).
//!
//! Parsed into parts but kept close to the wire: the user part stays
//! %-escaped (comparisons unescape). Strict where RFC 4475 asks for
//! rejection (whitespace, bad ports, unbracketed IPv6), lenient elsewhere.

use std::fmt;
use std::net::IpAddr;

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UriError {
    #[error("unsupported URI scheme")]
    UnsupportedScheme,
    #[error("malformed URI: {0}")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
}

/// `host` of a SIP URI: a name or an address (IPv6 written without brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: Scheme,
    /// User part, still %-escaped.
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
    /// `?headers` part, raw (only legal outside the Request-URI).
    pub headers: Option<String>,
}

impl SipUri {
    pub fn parse(s: &str) -> Result<SipUri, UriError> {
        if s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(UriError::Malformed("whitespace in URI"));
        }
        let (scheme, rest) = s.split_once(':').ok_or(UriError::Malformed("no scheme"))?;
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(UriError::UnsupportedScheme);
        } else {
            return Err(UriError::Malformed("bad scheme"));
        };
        // userinfo never contains an unescaped '@', so the first one ends
        // it; '?' may appear in a user part (RFC 4475 intmeth), so headers
        // are looked for after the host only.
        let (userinfo, hostpart) = match rest.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (hostpart, headers) = match hostpart.split_once('?') {
            Some((r, h)) => (r, Some(h.to_string())),
            None => (hostpart, None),
        };
        let (user, password) = match userinfo {
            Some("") => return Err(UriError::Malformed("empty user")),
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(u.to_string()), None),
            },
            None => (None, None),
        };
        let (hostport, params) = match hostpart.split_once(';') {
            Some((hp, p)) => (hp, parse_uri_params(p)?),
            None => (hostpart, Vec::new()),
        };
        let (host, port) = parse_hostport(hostport)?;
        Ok(SipUri { scheme, user, password, host, port, params, headers })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// User part with %-escapes decoded (lossy on invalid UTF-8).
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(unescape)
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.scheme {
            Scheme::Sip => "sip:",
            Scheme::Sips => "sips:",
        })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// Request-URI or header URI: we route on SIP and tel only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    /// `tel:` number (RFC 3966), without parameters.
    Tel(String),
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        match s.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("tel") => {
                let number = rest.split(';').next().unwrap_or("");
                if number.is_empty() || s.bytes().any(|b| b.is_ascii_whitespace()) {
                    return Err(UriError::Malformed("bad tel URI"));
                }
                Ok(Uri::Tel(number.to_string()))
            }
            _ => SipUri::parse(s).map(Uri::Sip),
        }
    }

    /// The dialled user/number, unescaped.
    pub fn user(&self) -> Option<String> {
        match self {
            Uri::Sip(u) => u.user_unescaped(),
            Uri::Tel(n) => Some(n.clone()),
        }
    }
}

/// `host [":" port]` with bracketed IPv6 references (RFC 5118 §4.1–4.3).
pub fn parse_hostport(s: &str) -> Result<(Host, Option<u16>), UriError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(UriError::Malformed("unclosed ["))?;
        // RFC 5118 §4.4: RFC 3261's ABNF let "2001:db8:::192.0.2.1" (three
        // colons before an embedded IPv4) through; accept it as the 2-colon form.
        let ip: std::net::Ipv6Addr = addr
            .parse()
            .or_else(|_| match addr.split_once(":::") {
                Some((a, b)) if b.contains('.') => format!("{a}::{b}").parse(),
                _ => addr.parse(),
            })
            .map_err(|_| UriError::Malformed("bad IPv6 reference"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UriError::Malformed("junk after ]"))?),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
            return Err(UriError::Malformed("bad host"));
        }
        let host = match h.parse::<std::net::Ipv4Addr>() {
            Ok(a) => Host::Ip(IpAddr::V4(a)),
            Err(_) => Host::Name(h.to_ascii_lowercase()),
        };
        (host, p)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().map_err(|_| UriError::Malformed("bad port"))?)
        }
        Some(_) => return Err(UriError::Malformed("bad port")),
    };
    Ok((host, port))
}

fn parse_uri_params(s: &str) -> Result<Vec<(String, Option<String>)>, UriError> {
    s.split(';')
        .map(|p| {
            let (n, v) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (p, None),
            };
            if n.is_empty() {
                return Err(UriError::Malformed("empty URI parameter"));
            }
            Ok((n.to_ascii_lowercase(), v))
        })
        .collect()
}

/// Decode %XX escapes; invalid escapes are kept literally.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_forms_from_rfc5118() {
        let u = SipUri::parse("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.port, Some(5070));
        // Port-ambiguous: the whole bracket is the address.
        let u = SipUri::parse("sip:[2001:db8::10:5070]").unwrap();
        assert_eq!(u.port, None);
        assert!(SipUri::parse("sip:2001:db8::10").is_err());
        assert!(SipUri::parse("sip:user@[::1];transport=tcp").is_ok());
    }

    #[test]
    fn users_and_errors() {
        let u = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        let u = SipUri::parse("sip:%75se%72@example.com").unwrap();
        assert_eq!(u.user_unescaped().as_deref(), Some("user"));
        assert_eq!(SipUri::parse("nobodyknowsthisscheme:x"), Err(UriError::UnsupportedScheme));
        assert!(SipUri::parse("sip:user@example.com; lr").is_err());
        assert!(SipUri::parse("<sip:user@example.com>").is_err());
        assert_eq!(Uri::parse("tel:+15551234").unwrap().user().as_deref(), Some("+15551234"));
        assert_eq!(unescape("a%2"), "a%2");
    }
}
