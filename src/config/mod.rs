//! Clinic configuration, in two stages (ripgrep's habit): [`raw::RawConfig`]
//! is the TOML as written plus `CLINIVOX_SECTION__KEY` environment overrides;
//! [`validate`] turns it into a typed [`Config`] and reports every problem at
//! once, each with its key.
//!
//! With no configuration file at the default path the service runs the
//! built-in demo clinic (`clinivox.demo.toml`, compiled in).

pub mod certs;
mod env;
pub mod raw;
mod validate;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use chrono::{NaiveDate, NaiveTime, Weekday};
use chrono_tz::Tz;

pub use validate::{validate, LANGUAGES};

/// The demo clinic a newcomer gets when no configuration file exists.
pub const DEMO_TOML: &str = include_str!("../../clinivox.demo.toml");

/// Default configuration path, relative to the working directory.
pub const DEFAULT_PATH: &str = "clinivox.toml";

#[derive(Debug, Clone)]
pub struct Config {
    pub clinic: Clinic,
    pub specialties: Vec<Specialty>,
    pub providers: Vec<Provider>,
    pub staff: Vec<Extension>,
    /// Ring groups by name; "reception" is always there when there is staff.
    pub groups: Vec<RingGroup>,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub escalation: EscalationConfig,
    /// The SIP endpoint; `None` when the configuration has no `[sip]`.
    pub sip: Option<crate::sip::config::SipConfig>,
    /// The application that answers calls.
    pub calls_app: CallsApp,
    /// Admission limits for assistant calls (`[calls]`).
    pub calls: CallsConfig,
    /// Local speech; `None` when the configuration has no `[speech]`.
    pub speech: Option<SpeechConfig>,
    /// What the log may hold (`[logging]`).
    pub logging: LoggingConfig,
    /// How long patients' data is kept (`[privacy]`).
    pub retention: crate::store::Retention,
    /// Failed phone identity checks before a caller is handed to staff
    /// whatever they say (`[privacy]`).
    pub verification: Verification,
    /// Providers' iCalendar feeds (`[calendar]`); `None` without a key.
    pub calendar: Option<CalendarConfig>,
    /// Where events are sent (`[[webhooks]]`).
    pub webhooks: Vec<crate::webhooks::Webhook>,
    /// This node among several on one database (`[node]`).
    pub node: NodeConfig,
    /// True when this is the built-in demo clinic.
    pub demo: bool,
}

/// `[node]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// 1–64 letters, digits, `.`, `_` or `-`: it labels this node's live
    /// series in `/metrics` and names it in job leases. Default: the host
    /// name (unique per container or machine), else `clinivox`.
    pub id: String,
}

impl NodeConfig {
    /// Whether `id` may name a node.
    pub fn valid_id(id: &str) -> bool {
        (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    }

    /// The host name when it may name a node, else `clinivox`.
    pub fn from_host() -> NodeConfig {
        let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok());
        NodeConfig { id: host.filter(|h| NodeConfig::valid_id(h)).unwrap_or_else(|| "clinivox".into()) }
    }
}

/// `[calendar]`, validated.
#[derive(Debug, Clone)]
pub struct CalendarConfig {
    /// Secret from which each provider's feed URL is derived.
    pub key: String,
    /// Events name the patient (off by default: a calendar app is outside
    /// the clinic's control).
    pub patient_names: bool,
    /// Days of past appointments in a feed.
    pub days_back: i64,
    /// Days of future appointments in a feed.
    pub days_ahead: i64,
}

/// `[logging]`. By default the log holds call ids, timings, outcomes and
/// counts, never what a caller said, whom they named or their number
/// (masked): it is health data (GDPR Art. 9) and logs are copied, shipped
/// and kept far beyond the clinic's retention periods.
#[derive(Debug, Clone, Default)]
pub struct LoggingConfig {
    /// Transcripts, replies, transfer summaries and staff briefings at info
    /// (default off; a warning at start when on).
    pub transcripts: bool,
}

/// `[privacy] verify_max_failures`, `verify_window_hours`: once a patient,
/// or a calling number, has this many failed identity checks within the
/// window (across calls), the assistant discloses nothing more to a caller
/// claiming them and hands the call to reception, until the failures age out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub max_failures: u32,
    pub window: chrono::Duration,
}

impl Default for Verification {
    fn default() -> Self {
        Verification { max_failures: 3, window: chrono::Duration::hours(24) }
    }
}

#[derive(Debug, Clone)]
pub struct Clinic {
    pub name: String,
    pub address: String,
    pub phone: String,
    pub timezone: Tz,
    /// Languages the assistant speaks; the first is the default.
    pub languages: Vec<String>,
    pub emergency_number: String,
    pub opening_hours: WeeklyHours,
    pub holidays: BTreeSet<NaiveDate>,
    /// "next Friday" is the Friday of next week (`[clinic] next_weekday =
    /// "following_week"`), not the coming one.
    pub next_weekday_following_week: bool,
}

/// Ranges of wall-clock time per weekday, Monday first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeeklyHours(pub [Vec<TimeRange>; 7]);

impl WeeklyHours {
    pub fn on(&self, day: Weekday) -> &[TimeRange] {
        &self.0[day.num_days_from_monday() as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

#[derive(Debug, Clone)]
pub struct Specialty {
    pub id: String,
    /// language → spoken names; the first is what the assistant says.
    pub names: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub specialty: String,
    pub slot_minutes: i64,
    pub schedule: WeeklyHours,
}

#[derive(Debug, Clone)]
pub struct Extension {
    pub extension: String,
    pub name: String,
    pub uri: Option<String>,
    pub password: Option<String>,
    /// Digest HA1s stored instead of the password (`[sip]` checks them).
    pub ha1_sha256: Option<String>,
    pub ha1_md5: Option<String>,
    pub srtp: crate::media::srtp::SrtpPolicy,
    pub nat: bool,
}

/// Who is called when the conversation hands a caller over
/// (`[[groups]]`), and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingGroup {
    /// "reception", "emergency", or a name of the clinic's own.
    pub name: String,
    pub members: Vec<GroupMember>,
    pub strategy: RingStrategy,
    /// How long the group rings (with `Order`: each member).
    pub ring_timeout: std::time::Duration,
    /// How the caller reaches the group.
    pub transfer: GroupTransfer,
}

/// How a hand-over to a group is carried out (`[[groups]] transfer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupTransfer {
    /// Clinivox rings the members, briefs whoever answers, then joins the
    /// two legs (the default).
    Bridge,
    /// A blind transfer: REFER on the caller's leg to this SIP URI (for
    /// trunks and PBXs that take it); Clinivox leaves the call once the
    /// transfer target answers.
    Refer(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupMember {
    /// A `[[staff]]` extension: its registered phone, or its static `uri`.
    Extension(String),
    /// A SIP URI (a phone on the clinic's PBX).
    Uri(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingStrategy {
    /// Every member at once; the first to answer takes the call.
    All,
    /// One member after another, each for the ring timeout.
    Order,
}

/// When new callers are turned away with "all our lines are busy", and
/// whether calls are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallsConfig {
    /// Most assistant calls at once (default: twice the machine's cores, at least 2).
    pub max_active: usize,
    /// Utterances waiting for recognition, across calls, above which new
    /// callers are turned away (default 16).
    pub max_recognition_queue: usize,
    /// Assistant calls at once from one caller ID, and within an hour:
    /// one number (real or spoofed) cannot take every line. Calls without
    /// a caller ID are bounded by `max_active` alone.
    pub max_per_caller: usize,
    pub max_per_caller_per_hour: usize,
    /// Longest conversation with the assistant (not counting a bridged
    /// staff leg): then it says so and ends the call, so a caller (or a
    /// recording played at it) cannot hold a line and recognition forever.
    pub max_assistant: std::time::Duration,
    /// Record the audio of inbound assistant calls (default off). Callers hear a
    /// notice first (`recording_notice`).
    pub record_audio: bool,
    /// Where recordings go, one WAV per call named by its record's id.
    pub recordings_dir: std::path::PathBuf,
}

impl Config {
    /// The ring group a conversation's hand-over goes to.
    pub fn group(&self, group: crate::conversation::TransferGroup) -> Option<&RingGroup> {
        self.groups.iter().find(|g| g.name == group.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// A client that has not sent a request's headers by then is cut off.
    pub header_read_timeout: std::time::Duration,
    /// A request not answered by then gets a 408.
    pub request_timeout: std::time::Duration,
    /// Connections served at once; past it the listener stops accepting.
    pub max_connections: usize,
    /// HTTPS with this certificate (reloaded when it changes on disk).
    pub tls: Option<crate::tls::TlsFiles>,
}

#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    pub tokens: Vec<ApiToken>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Only `/metrics` (a Prometheus scraper).
    Metrics,
    Read,
    Write,
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    /// SHA-256 of the bearer token.
    pub sha256: [u8; 32],
    pub scope: Scope,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// How long a slot offered on the phone stays reserved for that caller.
    pub hold_seconds: i64,
}

/// Local speech recognition and synthesis.
#[derive(Debug, Clone)]
pub struct SpeechConfig {
    /// Catalogue name of the Whisper model (`clinivox models list`).
    pub model: String,
    pub models_dir: std::path::PathBuf,
    /// Where downloaded packages are kept while converting.
    pub cache_dir: std::path::PathBuf,
    pub workers: usize,
    pub threads_per_worker: i32,
    /// language → espeak-ng voice.
    pub voices: std::collections::BTreeMap<String, (String, u32)>,
}

/// Which application answers inbound calls (`[calls] app`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallsApp {
    /// Plays the caller's audio back: proves audio both ways.
    Echo,
    /// Plays a known tone sequence and reports the keys pressed.
    Tone,
    /// The voice assistant: speech and the conversation on the line.
    /// Needs `[speech]`.
    Assistant,
}

/// When and how patients who did not answer a reminder are called back.
#[derive(Debug, Clone)]
pub struct EscalationConfig {
    pub enabled: bool,
    /// Call when no reply came this long after the reminder was sent…
    pub reply_within: chrono::Duration,
    /// …and the appointment starts within this horizon…
    pub horizon: chrono::Duration,
    /// …but never later than this before the appointment.
    pub min_lead: chrono::Duration,
    pub max_attempts: u32,
    /// Least time between two attempts.
    pub spacing: chrono::Duration,
    /// Simultaneous outbound calls, so lines stay free for inbound patients.
    pub max_concurrent_calls: u32,
    /// Clinic-local ranges when patients may be called (never on holidays).
    pub calling_windows: WeeklyHours,
    /// Offer a freed slot to waiting-list patients by phone.
    pub refill_enabled: bool,
    /// Only slots at least this far ahead are offered.
    pub refill_min_lead: chrono::Duration,
    /// How long each waiting-list patient has to accept.
    pub refill_offer: chrono::Duration,
}

/// One problem in the configuration: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("invalid configuration ({} problems):\n{}", .0.len(), list(.0))]
    Invalid(Vec<FieldError>),
}

fn list(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n")
}

/// Loads configuration from `path`. When `path` is the default and no file is
/// there, the demo clinic is used. Environment overrides apply in both cases.
///
/// Two mistakes that would expose patients are refused here: a clinic's own
/// configuration that still holds the demo's well-known tokens or staff
/// passwords (copied from `clinivox.demo.toml`), and the demo clinic
/// listening beyond loopback without `CLINIVOX_DEMO_PUBLIC=1`.
pub fn load(path: &Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    let (text, origin, demo) = match std::fs::read_to_string(path) {
        Ok(text) => (text, path.display().to_string(), false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_PATH) => {
            (DEMO_TOML.to_string(), "built-in demo clinic".to_string(), true)
        }
        Err(source) => return Err(ConfigError::Io { path: path.display().to_string(), source }),
    };
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    let public_demo = vars.iter().any(|(k, v)| k == "CLINIVOX_DEMO_PUBLIC" && v == "1");
    let mut config = from_toml(&text, &origin, vars)?;
    config.demo = demo;
    let problems = if demo { demo_listens_publicly(&config, public_demo) } else { demo_credentials(&config) };
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// The demo's tokens and passwords are published in this repository: a
/// configuration holding any of them lets anyone read patients or take a
/// desk phone's calls.
fn demo_credentials(config: &Config) -> Vec<FieldError> {
    let demo = from_toml(DEMO_TOML, "built-in demo clinic", []).expect("the built-in demo configuration is valid (tested)");
    let mut problems = Vec::new();
    for t in &config.api.tokens {
        if demo.api.tokens.iter().any(|d| d.sha256 == t.sha256) {
            problems.push(FieldError {
                key: format!("api.tokens ({})", t.name),
                message: "is one of the demo's published tokens; make a new one (e.g. `openssl rand -hex 32`) and store its hash (`clinivox token hash`)".into(),
            });
        }
    }
    let demo_passwords: Vec<&String> = demo.staff.iter().filter_map(|s| s.password.as_ref()).collect();
    for s in &config.staff {
        if s.password.as_ref().is_some_and(|p| demo_passwords.contains(&p)) {
            problems.push(FieldError {
                key: format!("staff ({})", s.extension),
                message: "password is one of the demo's published passwords; give each desk phone its own".into(),
            });
        }
    }
    problems
}

/// The demo clinic has well-known credentials: it stays on loopback unless
/// someone says, explicitly, that it may not.
fn demo_listens_publicly(config: &Config, allowed: bool) -> Vec<FieldError> {
    if allowed {
        return Vec::new();
    }
    let mut addrs = vec![("http.listen".to_string(), config.http.listen)];
    if let Some(sip) = &config.sip {
        addrs.extend(sip.listen.iter().map(|l| ("sip.listen".to_string(), l.addr)));
    }
    addrs
        .into_iter()
        .filter(|(_, a)| !a.ip().is_loopback())
        .map(|(key, a)| FieldError {
            key,
            message: format!(
                "the demo clinic (published tokens and passwords) listens on loopback only, not {a}; write a clinivox.toml of your own, or set CLINIVOX_DEMO_PUBLIC=1 to expose the demo anyway"
            ),
        })
        .collect()
}

/// Parses and validates configuration text, applying `CLINIVOX_…` overrides.
pub fn from_toml(text: &str, origin: &str, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax { path: origin.to_string(), message };
    let mut value: toml::Table = text.parse().map_err(|e: toml::de::Error| syntax(e.to_string()))?;
    env::apply_overrides(&mut value, vars);
    let raw: raw::RawConfig = raw::RawConfig::deserialize(toml::Value::Table(value)).map_err(|e| syntax(e.to_string()))?;
    validate(raw)
}

use serde::Deserialize as _;

/// `sha256:<hex>` of a bearer token, the form tokens take in configuration.
pub fn hash_token(token: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(token.as_bytes())))
}

#[cfg(test)]
mod tests;
