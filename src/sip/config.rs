//! SIP configuration: plain serde structs (TOML section `[sip]`) plus one
//! validation pass that reports every problem as `(key, message)`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

pub use crate::media::srtp::SrtpPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over TLS (RFC 3261 §26.2; default port 5061).
    Tls,
}

impl Transport {
    /// As written in a Via header.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Connection-oriented: framed by Content-Length, no retransmissions.
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The `transport=` URI parameter for a Contact (none for UDP).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        }
    }

    /// From a URI's scheme and `transport=` parameter (`sips:` is TLS).
    pub fn from_uri(scheme_sips: bool, param: Option<&str>) -> Transport {
        match param.map(str::to_ascii_lowercase).as_deref() {
            _ if scheme_sips => Transport::Tls,
            Some("tls") => Transport::Tls,
            Some("tcp") => Transport::Tcp,
            _ => Transport::Udp,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub transport: Transport,
    /// e.g. `0.0.0.0:5060`, `[::]:5060`, `127.0.0.1:0` (tests).
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtpPorts {
    /// Inclusive range; even ports are used for RTP.
    pub min: u16,
    pub max: u16,
    /// Address RTP sockets bind to; defaults to the SIP local address.
    pub bind_ip: Option<IpAddr>,
}

impl Default for RtpPorts {
    fn default() -> Self {
        RtpPorts { min: 10_000, max: 20_000, bind_ip: None }
    }
}

/// A carrier: who may send us calls (CIDRs) and how we send calls out.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Trunk {
    pub name: String,
    /// Source networks whose INVITEs are accepted as this trunk's.
    pub cidrs: Vec<IpNet>,
    /// Where outbound requests (and our REGISTER) go: `host:port`, `host`
    /// (port 5060) or `[v6]:port`; the host may be a DNS name. None =
    /// inbound only.
    pub proxy: Option<HostPort>,
    /// The proxy's addresses: the literal itself, or what DNS answered
    /// (the driver resolves names at start and every few minutes). Inbound
    /// requests from these addresses count as this trunk's, like `cidrs`.
    #[serde(skip)]
    pub proxy_addrs: Vec<SocketAddr>,
    pub transport: Option<Transport>,
    /// SIP domain for From/Request-URI (defaults to the proxy address).
    pub domain: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Digest credentials the carrier must answer our challenge with on
    /// its INVITEs (for carriers and PBXs that authenticate to us): the
    /// source address alone is then not enough. At least 12 characters.
    pub inbound_username: Option<String>,
    pub inbound_password: Option<String>,
    /// Register Clinivox to the carrier with the credentials above (for
    /// clinics without a static address). Calls the carrier then sends to
    /// our registered contact are accepted like calls to `numbers`.
    pub register: bool,
    /// Expiry asked for in our REGISTER; refreshed at half of what the
    /// carrier grants.
    pub register_expires_s: Option<u32>,
    /// Caller ID (user part of From) on outbound calls.
    pub caller_id: Option<String>,
    /// The carrier's media may come from somewhere else than its SDP says
    /// (it sits behind NAT): latch to where its RTP really comes from.
    /// Off, RTP is accepted only from the address its SDP names.
    pub nat: bool,
    /// SRTP for this trunk's calls (keys only ever go over TLS).
    pub srtp: SrtpPolicy,
    /// With `transport = "tls"`: the CA file that signs the carrier's
    /// certificate (default: the system's roots).
    pub tls_ca: Option<PathBuf>,
    /// With `transport = "tls"`: accept only this certificate (SHA-256 of
    /// its DER, hex; `openssl x509 -noout -fingerprint -sha256` prints it).
    pub tls_pin_sha256: Option<String>,
    /// Name the carrier's certificate must carry (default: the proxy host).
    pub tls_server_name: Option<String>,
    /// Our client certificate, for carriers that ask for mutual TLS.
    pub tls_client_cert: Option<PathBuf>,
    pub tls_client_key: Option<PathBuf>,
}

impl Trunk {
    /// How to check the carrier's certificate.
    pub fn peer_trust(&self) -> crate::tls::PeerTrust {
        crate::tls::PeerTrust {
            ca: self.tls_ca.clone(),
            pin_sha256: self.tls_pin_sha256.clone(),
            client: self.tls_client_cert.clone().zip(self.tls_client_key.clone()).map(|(cert, key)| crate::tls::TlsFiles { cert, key }),
        }
    }

    /// The name to verify the carrier's certificate against.
    pub fn tls_name(&self) -> Option<String> {
        self.tls_server_name.clone().or_else(|| self.proxy.as_ref().map(|p| p.host.clone()))
    }

    /// Whether `ip` is one of this trunk's sources (CIDRs or proxy addresses).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.cidrs.iter().any(|n| n.contains(&ip)) || self.proxy_addrs.iter().any(|a| canonical_ip(a.ip()) == ip)
    }
}

/// `host:port` as written in configuration: an IP literal or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// The address, when the host is an IP literal (no DNS needed).
    pub fn literal(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }

    /// `host:port` for URIs (IPv6 in brackets).
    pub fn to_uri_host(&self) -> String {
        match self.literal() {
            Some(SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

impl std::str::FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not host:port");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(bad)?;
            h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            match after.strip_prefix(':') {
                Some(p) => (format!("[{h}]"), p.parse::<u16>().map_err(|_| bad())?),
                None if after.is_empty() => (format!("[{h}]"), 5060),
                None => return Err(bad()),
            }
        } else if s.parse::<std::net::Ipv6Addr>().is_ok() {
            (format!("[{s}]"), 5060)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| bad())?),
                None => (s.to_string(), 5060),
            }
        };
        let plain = host.starts_with('[')
            || (!host.is_empty() && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')));
        if !plain || port == 0 {
            return Err(bad());
        }
        Ok(HostPort { host, port })
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// Extension number, e.g. "201"; also the digest username.
    pub number: String,
    /// At least [`MIN_PASSWORD_LEN`] characters; or give the HA1s instead.
    #[serde(default)]
    pub password: Option<String>,
    /// Stored HA1 = SHA-256("number:realm:password") in hex (`clinivox ha1`
    /// prints it), so the configuration need not hold the password.
    #[serde(default)]
    pub ha1_sha256: Option<String>,
    /// The same with MD5, for phones that only speak MD5.
    #[serde(default)]
    pub ha1_md5: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// The phone is behind NAT: its RTP is latched to where it comes from
    /// rather than accepted only from the address its SDP names.
    #[serde(default)]
    pub nat: bool,
    /// SRTP with this phone (`required`: a call without it is refused).
    #[serde(default)]
    pub srtp: SrtpPolicy,
}

/// Shortest extension password accepted. A desk phone's password is
/// attacked offline once one digest exchange is captured (RFC 7616 §5.2),
/// so the lockout does not make a short password safe.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Limits on digest authentication (`[sip.auth]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthLimits {
    /// Failures (per source address, and per extension) before a lockout.
    pub max_failures: u32,
    /// First lockout; each further one doubles, up to `max_lockout_s`.
    pub lockout_s: u64,
    pub max_lockout_s: u64,
    /// Failures and strikes are forgotten after this long without one.
    pub forget_after_s: u64,
    /// Source addresses tracked at most (oldest forgotten first).
    pub max_tracked: usize,
    /// Used nonces remembered at most (replay protection; older ones become stale).
    pub max_nonces: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits { max_failures: 5, lockout_s: 60, max_lockout_s: 3_600, forget_after_s: 3_600, max_tracked: 4_096, max_nonces: 8_192 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timers {
    /// RFC 3261 T1/T2/T4.
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    /// Outbound calls: CANCEL after this long without an answer.
    pub no_answer_s: u64,
    /// Hang up after this long without RTP.
    pub rtp_timeout_s: u64,
    pub max_call_s: u64,
    pub register_min_expires_s: u32,
    pub register_max_expires_s: u32,
    pub register_default_expires_s: u32,
    pub nonce_lifetime_s: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
            no_answer_s: 30,
            rtp_timeout_s: 30,
            max_call_s: 3_600,
            register_min_expires_s: 60,
            register_max_expires_s: 3_600,
            register_default_expires_s: 3_600,
            nonce_lifetime_s: 300,
        }
    }
}

impl Timers {
    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.t1_ms)
    }
    pub fn t2(&self) -> Duration {
        Duration::from_millis(self.t2_ms)
    }
    pub fn t4(&self) -> Duration {
        Duration::from_millis(self.t4_ms)
    }
}

/// What one address on the Internet may cost us (`[sip.limits]`). The SIP
/// port of a clinic with a public address is scanned and flooded within
/// hours; these keep an outsider's cost to us below what he spends.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Token bucket per source address (an IPv6 /64 counts as one):
    /// `rate_per_window` messages per `rate_window_s`, burst as large.
    /// Kamailio pike's defaults (`reqs_density_per_unit` 30 per
    /// `sampling_time_unit` 2 s). Trunks are exempt; beyond it, dropped.
    pub rate_per_window: u32,
    pub rate_window_s: u64,
    /// A source not heard from this long is forgotten (pike's
    /// `remove_latency`, 120 s).
    pub rate_forget_s: u64,
    /// Sources tracked at once; beyond it new sources share one bucket.
    pub max_sources: usize,
    /// Server transactions alive at once, and per non-trunk source; over
    /// either, a stateless 503 with `Retry-After: retry_after_s`.
    pub max_transactions: usize,
    pub max_transactions_per_source: usize,
    /// Calls (dialogs, inbound and outbound) carried at once; a new INVITE
    /// beyond it gets a 503 with Retry-After before any call state, port
    /// or task is made for it. Past capacity this is what keeps the calls
    /// already carried completing instead of collapsing (each call costs
    /// work for as long as it lasts). Keep it above `[calls] max_active`:
    /// callers beyond that still need a call to hear "all lines are busy".
    pub max_calls: usize,
    pub retry_after_s: u32,
    /// Inbound TCP connections at once, and per source address.
    pub max_tcp_connections: usize,
    pub max_tcp_per_source: usize,
    /// A TCP connection must deliver its first message within this, and is
    /// closed after this long without a byte (CRLF keep-alives count).
    pub tcp_first_message_s: u64,
    pub tcp_idle_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate_per_window: 30,
            rate_window_s: 2,
            rate_forget_s: 120,
            max_sources: 16_384,
            max_transactions: 4_096,
            max_transactions_per_source: 32,
            max_calls: 128,
            retry_after_s: 10,
            max_tcp_connections: 1_000,
            max_tcp_per_source: 32,
            tcp_first_message_s: 10,
            tcp_idle_s: 900,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    pub listen: Vec<Listen>,
    /// Host written in Via/Contact/SDP when the listen address is a wildcard.
    pub advertised_ip: Option<IpAddr>,
    /// Our SIP domain and digest realm.
    pub domain: String,
    pub realm: String,
    /// `Server`/`User-Agent` sent to trunks and phones (empty: none). No
    /// version by default: it would tell a scanner which flaws to try.
    /// Strangers never get one.
    pub user_agent: String,
    pub rtp: RtpPorts,
    pub trunks: Vec<Trunk>,
    /// Numbers (DIDs) the clinic owns; user parts of inbound Request-URIs.
    pub numbers: Vec<String>,
    pub extensions: Vec<Extension>,
    pub timers: Timers,
    /// JSON file for registrar bindings (absent: in memory only).
    pub bindings_file: Option<PathBuf>,
    /// Secret for stateless digest nonces (random if empty).
    pub nonce_secret: String,
    /// Digest challenges offered to phones, in order of preference. Some
    /// phones (and SIPp) read only the first: put "MD5" first, or alone, for them.
    /// Answers with an algorithm not listed are refused.
    pub digest_algorithms: Vec<String>,
    /// Lockout after failed authentications, nonce table size.
    pub auth: AuthLimits,
    /// Contacts one extension may have registered; a REGISTER beyond it
    /// replaces the least recently refreshed ones.
    pub max_contacts_per_extension: usize,
    /// Bindings of all extensions together; beyond it new ones get 503.
    pub max_bindings: usize,
    pub limits: Limits,
    /// Our certificate for `transport = "tls"` listeners (reloaded when
    /// the files change), and whom we trust when we connect out over TLS.
    pub tls: Option<SipTls>,
    /// Numbers that may be dialled through a trunk, as prefixes of their
    /// international form (`["+34"]`, or `["+346", "+347", "+3491"]`). The
    /// clinic's configuration defaults it to the clinic's own country
    /// (from `[clinic] phone`); unset in a bare `[sip]` (the test apps).
    pub dial_allow: Option<Vec<String>>,
    /// The clinic's country code, for numbers dialled in national form.
    pub home_country_code: Option<String>,
}

/// `[sip.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTls {
    /// Certificate chain (leaf first) and private key, PEM.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA (PEM) that signs the phones and `sips:` URIs we call over TLS
    /// that are not a trunk (trunks have `tls_ca`); default: the system's
    /// roots. A desk phone registered over TLS is called on its own
    /// connection and needs none.
    pub ca: Option<PathBuf>,
}

impl SipTls {
    pub fn files(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles { cert: self.cert.clone(), key: self.key.clone() }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        let any4: IpAddr = [0, 0, 0, 0].into();
        let any6: IpAddr = std::net::Ipv6Addr::UNSPECIFIED.into();
        let listen = [Transport::Udp, Transport::Tcp]
            .into_iter()
            .flat_map(|t| [any4, any6].map(|ip| Listen { transport: t, addr: SocketAddr::new(ip, 5060) }))
            .collect();
        SipConfig {
            listen,
            advertised_ip: None,
            domain: "clinivox.local".into(),
            realm: "clinivox".into(),
            user_agent: "Clinivox".into(),
            rtp: RtpPorts::default(),
            trunks: Vec::new(),
            numbers: Vec::new(),
            extensions: Vec::new(),
            timers: Timers::default(),
            bindings_file: None,
            nonce_secret: String::new(),
            digest_algorithms: vec!["SHA-256".into(), "MD5".into()],
            auth: AuthLimits::default(),
            max_contacts_per_extension: 5,
            max_bindings: 1_000,
            limits: Limits::default(),
            tls: None,
            dial_allow: None,
            home_country_code: None,
        }
    }
}

impl SipConfig {
    /// Every problem at once, as (dotted key, message).
    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut errs = Vec::new();
        let mut e = |k: String, m: &str| errs.push((k, m.to_string()));
        if self.listen.is_empty() {
            e("sip.listen".into(), "at least one listen address is needed");
        }
        if self.rtp.min == 0 || self.rtp.min > self.rtp.max {
            e("sip.rtp".into(), "need 0 < min <= max");
        } else if (self.rtp.max - self.rtp.min) < 2 {
            e("sip.rtp".into(), "range must hold at least one even/odd port pair");
        }
        if self.domain.is_empty() {
            e("sip.domain".into(), "must not be empty");
        }
        for (i, t) in self.trunks.iter().enumerate() {
            let k = |f: &str| format!("sip.trunks[{i}].{f}");
            if t.name.is_empty() {
                e(k("name"), "must not be empty");
            }
            if t.cidrs.is_empty() && t.proxy.is_none() {
                e(k("cidrs"), "a trunk needs cidrs (inbound) or a proxy (outbound)");
            }
            if t.username.is_some() != t.password.is_some() {
                e(k("password"), "username and password go together");
            }
            if t.tls_client_cert.is_some() != t.tls_client_key.is_some() {
                e(k("tls_client_key"), "tls_client_cert and tls_client_key go together");
            }
            if let Some(pin) = &t.tls_pin_sha256 {
                if crate::tls::parse_pin(pin).is_err() {
                    e(k("tls_pin_sha256"), "must be 64 hex digits (colons allowed)");
                }
            }
            if t.srtp == SrtpPolicy::Required && t.proxy.is_some() && t.transport != Some(Transport::Tls) {
                e(k("srtp"), "\"required\" needs transport = \"tls\": SRTP keys must never travel in clear");
            }
            if t.srtp == SrtpPolicy::Required && !t.cidrs.is_empty() && !self.listen.iter().any(|l| l.transport == Transport::Tls) {
                e(k("srtp"), "\"required\" for inbound calls needs a transport = \"tls\" listener: SRTP keys must never travel in clear");
            }
            if t.register && (t.proxy.is_none() || t.username.is_none()) {
                e(k("register"), "registration needs proxy and credentials");
            }
            match (&t.inbound_username, &t.inbound_password) {
                (None, None) => {}
                (Some(u), Some(p)) => {
                    if u.is_empty() || u.chars().any(|c| c.is_control() || c == '"') {
                        e(k("inbound_username"), "must be a plain user name");
                    }
                    if self.extensions.iter().any(|x| &x.number == u)
                        || self.trunks.iter().filter(|o| o.inbound_username.as_ref() == Some(u)).count() > 1
                    {
                        e(k("inbound_username"), "must differ from every extension number and other trunk's");
                    }
                    if p.chars().count() < MIN_PASSWORD_LEN {
                        e(
                            k("inbound_password"),
                            &format!("too short: at least {MIN_PASSWORD_LEN} characters (a short one falls to a dictionary)"),
                        );
                    }
                }
                _ => e(k("inbound_username"), "inbound_username and inbound_password go together"),
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, x) in self.extensions.iter().enumerate() {
            if x.number.is_empty() || !x.number.bytes().all(|b| b.is_ascii_alphanumeric()) {
                e(format!("sip.extensions[{i}].number"), "must be alphanumeric");
            }
            let k = |f: &str| format!("sip.extensions[{i}].{f}");
            let has_ha1 = x.ha1_sha256.is_some() || x.ha1_md5.is_some();
            match &x.password {
                Some(p) if p.chars().count() < MIN_PASSWORD_LEN => {
                    e(k("password"), &format!("too short: at least {MIN_PASSWORD_LEN} characters (a short one falls to a dictionary)"))
                }
                Some(_) if has_ha1 => e(k("password"), "give a password or ha1_sha256/ha1_md5, not both"),
                None if !has_ha1 => e(k("password"), "needed (or ha1_sha256/ha1_md5)"),
                _ => {}
            }
            for (field, value, len, alg) in [("ha1_sha256", &x.ha1_sha256, 64, "SHA-256"), ("ha1_md5", &x.ha1_md5, 32, "MD5")] {
                if let Some(v) = value {
                    if v.len() != len || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                        e(k(field), &format!("must be {len} hex digits (`clinivox ha1` prints it)"));
                    }
                }
                // With HA1s only, an algorithm offered but lacking its HA1
                // would fail for every phone that picks it.
                if has_ha1 && value.is_none() && self.digest_algorithms.iter().any(|a| a.eq_ignore_ascii_case(alg)) {
                    e(k(field), &format!("needed: digest_algorithms offers {alg} (or drop {alg} from it)"));
                }
            }
            if !seen.insert(&x.number) {
                e(format!("sip.extensions[{i}].number"), "duplicate extension");
            }
        }
        if self.digest_algorithms.is_empty()
            || self.digest_algorithms.iter().any(|a| crate::sip::digest::Algorithm::parse(Some(a.as_str())).is_none())
        {
            e("sip.digest_algorithms".into(), "list of \"SHA-256\" and/or \"MD5\"");
        }
        let a = &self.auth;
        if a.max_failures == 0 || a.lockout_s == 0 || a.max_lockout_s < a.lockout_s {
            e("sip.auth".into(), "need max_failures >= 1 and 0 < lockout_s <= max_lockout_s");
        }
        if a.max_tracked == 0 || a.max_nonces == 0 {
            e("sip.auth".into(), "max_tracked and max_nonces must be positive");
        }
        if self.max_contacts_per_extension == 0 || self.max_bindings < self.max_contacts_per_extension {
            e("sip.max_contacts_per_extension".into(), "need 1 <= max_contacts_per_extension <= max_bindings");
        }
        let t = &self.timers;
        if t.t1_ms == 0 || t.t2_ms < t.t1_ms {
            e("sip.timers.t1_ms".into(), "need 0 < t1 <= t2");
        }
        if t.register_min_expires_s > t.register_max_expires_s {
            e("sip.timers.register_min_expires_s".into(), "must be <= max");
        }
        if t.rtp_timeout_s == 0 || t.max_call_s == 0 || t.no_answer_s == 0 {
            e("sip.timers".into(), "timeouts must be positive");
        }
        let l = &self.limits;
        if l.rate_per_window == 0 || l.rate_window_s == 0 || l.rate_forget_s == 0 || l.max_sources == 0 {
            e("sip.limits.rate_per_window".into(), "rate, window, forget time and max_sources must be positive");
        }
        if l.max_calls == 0 {
            e("sip.limits.max_calls".into(), "must be positive");
        }
        if l.max_transactions == 0 || l.max_transactions_per_source == 0 {
            e("sip.limits.max_transactions".into(), "must be positive");
        }
        if l.max_tcp_connections == 0 || l.max_tcp_per_source == 0 || l.tcp_first_message_s == 0 || l.tcp_idle_s == 0 {
            e("sip.limits.max_tcp_connections".into(), "TCP limits and timeouts must be positive");
        }
        let tls_listener = self.listen.iter().any(|l| l.transport == Transport::Tls);
        if tls_listener && self.tls.is_none() {
            e("sip.tls".into(), "a transport = \"tls\" listener needs [sip.tls] cert and key");
        }
        for (i, x) in self.extensions.iter().enumerate() {
            if x.srtp == SrtpPolicy::Required && !tls_listener {
                e(
                    format!("sip.extensions[{i}].srtp"),
                    "\"required\" needs a transport = \"tls\" listener: SRTP keys must never travel in clear",
                );
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// The trunk whose CIDRs, or proxy addresses, contain `ip`, if any.
    pub fn trunk_for_source(&self, ip: IpAddr) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.contains(ip))
    }

    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name == name)
    }

    /// Fills `proxy_addrs` of trunks whose proxy is an IP literal.
    pub fn resolve_literals(&mut self) {
        for t in &mut self.trunks {
            if let Some(a) = t.proxy.as_ref().and_then(HostPort::literal) {
                t.proxy_addrs = vec![a];
            }
        }
    }

    pub fn extension(&self, number: &str) -> Option<&Extension> {
        self.extensions.iter().find(|x| x.number == number)
    }

    /// Whether `user` (a dialled number) is one the clinic owns. A leading
    /// `+` and visual separators are ignored.
    pub fn owns_number(&self, user: &str) -> bool {
        let n = normalize_number(user);
        self.numbers.iter().any(|o| normalize_number(o) == n)
            || self.trunks.iter().any(|t| t.register && t.username.as_deref().is_some_and(|u| normalize_number(u) == n))
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) compares as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn normalize_number(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '+' | '-' | '.' | '(' | ')' | ' ')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: SRTP keys never travel in clear, so `required` where no
    /// TLS carries the signalling is a configuration error, as is a TLS
    /// listener without a certificate or a half-given client certificate.
    #[test]
    fn trunk_inbound_credentials_are_long_paired_and_not_an_extensions() {
        let cfg: SipConfig = toml::from_str(
            r#"
            listen = [{ transport = "udp", addr = "0.0.0.0:5060" }]
            [[extensions]]
            number = "201"
            password = "desk-201-secret"
            [[trunks]]
            name = "short"
            cidrs = ["192.0.2.0/24"]
            inbound_username = "carrier"
            inbound_password = "short"
            [[trunks]]
            name = "half"
            cidrs = ["198.51.100.0/24"]
            inbound_username = "half"
            [[trunks]]
            name = "clash"
            cidrs = ["203.0.113.0/24"]
            inbound_username = "201"
            inbound_password = "long-enough-secret"
            [[trunks]]
            name = "good"
            cidrs = ["203.0.113.128/25"]
            inbound_username = "good-carrier"
            inbound_password = "long-enough-secret"
            "#,
        )
        .unwrap();
        let errs = cfg.validate().unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"sip.trunks[0].inbound_password"), "{errs:?}");
        assert!(keys.contains(&"sip.trunks[1].inbound_username"), "{errs:?}");
        assert!(keys.contains(&"sip.trunks[2].inbound_username"), "{errs:?}");
        assert!(!keys.iter().any(|k| k.starts_with("sip.trunks[3]")), "{errs:?}");
    }

    #[test]
    fn srtp_required_without_tls_and_tls_without_certificates_are_errors() {
        let cfg: SipConfig = toml::from_str(
            r#"
            listen = [{ transport = "udp", addr = "0.0.0.0:5060" }, { transport = "tls", addr = "0.0.0.0:5061" }]
            [[trunks]]
            name = "plain"
            proxy = "192.0.2.1:5060"
            srtp = "required"
            [[trunks]]
            name = "mtls"
            proxy = "192.0.2.2:5061"
            transport = "tls"
            srtp = "required"
            tls_client_cert = "/etc/clinivox/client.pem"
            tls_pin_sha256 = "abc"
            "#,
        )
        .unwrap();
        let errs = cfg.validate().unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"sip.trunks[0].srtp"), "{errs:?}");
        assert!(!keys.contains(&"sip.trunks[1].srtp"), "{errs:?}");
        assert!(keys.contains(&"sip.trunks[1].tls_client_key"), "{errs:?}");
        assert!(keys.contains(&"sip.trunks[1].tls_pin_sha256"), "{errs:?}");
        assert!(keys.contains(&"sip.tls"), "a TLS listener without [sip.tls]: {errs:?}");
        let phones: SipConfig = toml::from_str(
            r#"
            listen = [{ transport = "udp", addr = "0.0.0.0:5060" }]
            [[extensions]]
            number = "201"
            password = "a-long-desk-password"
            srtp = "required"
            "#,
        )
        .unwrap();
        let errs = phones.validate().unwrap_err();
        assert_eq!(errs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["sip.extensions[0].srtp"], "{errs:?}");
    }

    #[test]
    fn defaults_validate_and_errors_are_collected() {
        assert!(SipConfig::default().validate().is_ok());
        let cfg: SipConfig = toml::from_str(
            r#"
            numbers = ["+1 555 0100"]
            [rtp]
            min = 20
            max = 10
            [[trunks]]
            name = ""
            username = "x"
            [[extensions]]
            number = "201"
            password = "pw"
            "#,
        )
        .unwrap();
        let errs = cfg.validate().unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"sip.rtp"));
        assert!(keys.contains(&"sip.trunks[0].name"));
        assert!(keys.contains(&"sip.trunks[0].cidrs"));
        assert!(keys.contains(&"sip.trunks[0].password"));
        assert!(keys.contains(&"sip.extensions[0].password"));
        assert!(cfg.owns_number("15550100"));
    }

    #[test]
    fn trunk_match_by_cidr_including_mapped_v6() {
        let mut cfg = SipConfig::default();
        cfg.trunks.push(Trunk { name: "carrier".into(), cidrs: vec!["192.0.2.0/24".parse().unwrap()], ..Default::default() });
        assert!(cfg.trunk_for_source("192.0.2.7".parse().unwrap()).is_some());
        assert!(cfg.trunk_for_source("::ffff:192.0.2.7".parse().unwrap()).is_some());
        assert!(cfg.trunk_for_source("198.51.100.1".parse().unwrap()).is_none());
        cfg.trunks.push(Trunk { name: "dyn".into(), proxy: Some("198.51.100.1:5070".parse().unwrap()), ..Default::default() });
        cfg.resolve_literals();
        assert_eq!(cfg.trunk_for_source("198.51.100.1".parse().unwrap()).map(|t| t.name.as_str()), Some("dyn"));
    }

    #[test]
    fn proxy_host_port_forms() {
        let hp = |s: &str| s.parse::<HostPort>();
        assert_eq!(hp("sip.carrier.example:5080").unwrap(), HostPort { host: "sip.carrier.example".into(), port: 5080 });
        assert_eq!(hp("sip.carrier.example").unwrap().port, 5060);
        assert_eq!(hp("192.0.2.1:5070").unwrap().literal(), Some("192.0.2.1:5070".parse().unwrap()));
        assert_eq!(hp("[2001:db8::1]:5070").unwrap().literal(), Some("[2001:db8::1]:5070".parse().unwrap()));
        assert_eq!(hp("2001:db8::1").unwrap().to_uri_host(), "[2001:db8::1]:5060");
        assert!(hp("sip.carrier.example").unwrap().literal().is_none());
        for bad in ["", "host:", "host:0", "host:99999", "a b:5060", "[zz]:5060", "bad..name", "sip:x@y"] {
            assert!(hp(bad).is_err(), "{bad} accepted");
        }
    }
}
