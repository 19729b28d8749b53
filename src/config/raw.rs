//! Stage one of configuration: the TOML file (plus `CLINIVOX_…` environment
//! overrides) deserialised as written, with no judgement yet. Every field is
//! optional here so that [`super::validate`] can report *all* problems at once
//! instead of serde stopping at the first.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub clinic: RawClinic,
    pub specialties: Vec<RawSpecialty>,
    pub providers: Vec<RawProvider>,
    pub staff: Vec<RawExtension>,
    pub groups: Vec<RawGroup>,
    pub database: RawDatabase,
    pub http: RawHttp,
    pub api: RawApi,
    pub store: RawStore,
    pub escalation: RawEscalation,
    /// The SIP endpoint, deserialised by `sip::config::SipConfig` (absent: no telephony).
    pub sip: Option<toml::Value>,
    pub calls: RawCalls,
    pub speech: Option<RawSpeech>,
    pub logging: RawLogging,
    pub privacy: RawPrivacy,
    pub calendar: RawCalendar,
    pub webhooks: Vec<RawWebhook>,
    pub node: RawNode,
}

/// `[node]`: this Clinivox process among several on one database.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawNode {
    /// Names this node in `/metrics` and in the leases of the jobs it
    /// calls (default: the host name).
    pub id: Option<String>,
}

/// `[[webhooks]]`: where events are POSTed, signed (Standard Webhooks).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawWebhook {
    pub name: Option<String>,
    pub url: Option<String>,
    /// `whsec_` and the base64 of at least 24 random bytes.
    pub secret: Option<String>,
    /// Event types (`appointment.booked`, …); all when absent.
    pub events: Option<Vec<String>>,
    /// Plain HTTP to a host that is not this machine (the payload is ids
    /// and times, but they say who sees which doctor when).
    pub allow_plain_http: Option<bool>,
    /// PEM file of the CA(s) to trust for this receiver instead of the system's roots.
    pub ca: Option<std::path::PathBuf>,
}

/// `[calendar]`: per-provider iCalendar feeds at secret URLs.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCalendar {
    /// The secret the feeds' URLs are derived from (at least 32
    /// characters; `CLINIVOX_CALENDAR__KEY`). No key, no feeds.
    pub key: Option<String>,
    /// Patients' names in the events (health data in a calendar app).
    pub patient_names: Option<bool>,
    pub days_back: Option<i64>,
    pub days_ahead: Option<i64>,
}

/// `[privacy]`: retention periods, in days (idempotency keys: hours).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPrivacy {
    pub transcripts_days: Option<i64>,
    pub recordings_days: Option<i64>,
    pub audit_snapshots_days: Option<i64>,
    pub idempotency_hours: Option<i64>,
    pub finished_jobs_days: Option<i64>,
    /// Delivered and given-up webhook deliveries.
    pub webhook_log_days: Option<i64>,
    pub callbacks_days: Option<i64>,
    /// Failed phone identity checks (per patient, per number) before a
    /// caller is handed to staff whatever they say.
    pub verify_max_failures: Option<i64>,
    /// How long a failed identity check counts (and is kept).
    pub verify_window_hours: Option<i64>,
}

/// `[logging]`: what the log may hold beyond ids, timings and outcomes.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLogging {
    /// Write what callers said and what the assistant answered to the log
    /// (health data: off unless a clinic turns it on, with a warning at start).
    pub transcripts: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawClinic {
    pub name: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
    pub languages: Option<Vec<String>>,
    pub emergency_number: Option<String>,
    /// weekday name (monday…sunday) → list of "HH:MM-HH:MM" ranges.
    pub opening_hours: BTreeMap<String, Vec<String>>,
    /// "YYYY-MM-DD" dates the whole clinic is closed.
    pub holidays: Vec<String>,
    /// What "el próximo viernes" / "next Friday" means: "coming" (the
    /// next Friday to come, the default) or "following_week" (the Friday
    /// of next week, when this week's is still ahead).
    pub next_weekday: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSpecialty {
    pub id: Option<String>,
    /// language → spoken names, the first being the one the assistant says.
    pub names: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawProvider {
    pub id: Option<String>,
    pub name: Option<String>,
    pub specialty: Option<String>,
    pub slot_minutes: Option<i64>,
    /// weekday name → list of "HH:MM-HH:MM" ranges.
    pub schedule: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawExtension {
    pub extension: Option<String>,
    pub name: Option<String>,
    /// Optional static SIP URI (a desk phone on the clinic's PBX).
    pub uri: Option<String>,
    pub password: Option<String>,
    /// Instead of `password`: the stored HA1s (`clinivox ha1` prints them).
    pub ha1_sha256: Option<String>,
    pub ha1_md5: Option<String>,
    /// SRTP with this desk phone: `off` (default), `offered`, `required`.
    pub srtp: Option<crate::media::srtp::SrtpPolicy>,
    /// The phone is behind NAT (latch its RTP).
    pub nat: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDatabase {
    pub url: Option<String>,
    pub max_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    /// Seconds a client has to send a request's headers (also how long an
    /// idle keep-alive connection is kept).
    pub header_read_timeout_s: Option<u64>,
    /// Seconds a whole request (body, handler) may take.
    pub request_timeout_s: Option<u64>,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: Option<u64>,
    /// HTTPS: certificate chain and key (PEM), reloaded when they change.
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Plain HTTP on a non-loopback address (only behind a TLS proxy on
    /// the same host or network segment): bearer tokens would otherwise
    /// cross the network in clear.
    pub allow_plain: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawApi {
    pub tokens: Vec<RawToken>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawToken {
    pub name: Option<String>,
    /// "sha256:<hex>" of the bearer token; the token itself never sits in config.
    pub hash: Option<String>,
    pub scope: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStore {
    pub hold_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawEscalation {
    pub enabled: Option<bool>,
    pub reply_within_hours: Option<i64>,
    pub horizon_hours: Option<i64>,
    pub min_lead_hours: Option<i64>,
    pub max_attempts: Option<i64>,
    pub spacing_minutes: Option<i64>,
    pub max_concurrent_calls: Option<i64>,
    /// weekday name → list of "HH:MM-HH:MM" ranges when patients may be called.
    pub calling_windows: Option<BTreeMap<String, Vec<String>>>,
    pub refill_enabled: Option<bool>,
    pub refill_min_lead_hours: Option<i64>,
    pub refill_offer_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCalls {
    /// "assistant", or the test applications "echo" and "tone".
    pub app: Option<String>,
    /// Most assistant calls at once; more callers hear "all lines are busy".
    pub max_active: Option<i64>,
    /// Utterances waiting for recognition above which new callers hear it too.
    pub max_recognition_queue: Option<i64>,
    /// Longest conversation with the assistant, in minutes (15).
    pub max_assistant_minutes: Option<i64>,
    /// Assistant calls at once from one caller ID (2).
    pub max_per_caller: Option<i64>,
    /// Assistant calls from one caller ID within an hour (10).
    pub max_per_caller_per_hour: Option<i64>,
    /// Record each inbound assistant call's audio (announced to the caller first).
    pub record_audio: Option<bool>,
    /// Where recordings are written ("recordings").
    pub recordings_dir: Option<String>,
}

/// A ring group: who is called when the conversation hands over.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawGroup {
    pub name: Option<String>,
    /// `[[staff]]` extensions ("201") or SIP URIs ("sip:desk@pbx.clinic").
    pub members: Vec<String>,
    /// "all" (ring every member at once) or "order" (one after another).
    pub strategy: Option<String>,
    /// How long the group (or, in order, each member) rings.
    pub ring_timeout_s: Option<i64>,
    /// "bridge" (ring the members, then join the legs) or "refer" (a blind
    /// transfer of the caller to `refer_to`).
    pub transfer: Option<String>,
    /// The SIP URI a REFER sends the caller to (`transfer = "refer"`).
    pub refer_to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSpeech {
    /// Whisper model: "base" (multilingual), "base-q8_0" (the same, 8-bit
    /// weights: faster on CPU) or "tiny.en" (English only).
    pub model: Option<String>,
    pub models_dir: Option<String>,
    pub cache_dir: Option<String>,
    pub workers: Option<i64>,
    pub threads_per_worker: Option<i64>,
    /// language → espeak-ng voice name and rate in words per minute.
    pub voices: BTreeMap<String, RawVoice>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawVoice {
    pub name: Option<String>,
    pub rate_wpm: Option<i64>,
}
