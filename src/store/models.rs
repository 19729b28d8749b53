//! Records the store hands out. They serialise as the HTTP API's JSON.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who made a change, and through which channel; every write carries one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub channel: Channel,
}

impl Actor {
    pub fn new(name: impl Into<String>, channel: Channel) -> Actor {
        Actor { name: name.into(), channel }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Api,
    Phone,
    Sms,
    Whatsapp,
    Email,
    Web,
    Staff,
    System,
}

impl Channel {
    pub const ALL: [Channel; 8] =
        [Channel::Api, Channel::Phone, Channel::Sms, Channel::Whatsapp, Channel::Email, Channel::Web, Channel::Staff, Channel::System];
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Phone => "phone",
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Email => "email",
            Channel::Web => "web",
            Channel::Staff => "staff",
            Channel::System => "system",
        }
    }
    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Patient {
    pub id: String,
    pub name: String,
    /// E.164 numbers, the first being the preferred one.
    pub phones: Vec<String>,
    pub date_of_birth: NaiveDate,
    pub national_id: Option<String>,
    pub preferred_language: String,
    /// The patient agreed to be contacted (reminders, callbacks).
    pub contact_consent: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Specialty {
    pub id: String,
    /// language → spoken names.
    pub names: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub specialty_id: String,
    pub slot_minutes: i64,
}

/// A free appointment slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Slot {
    pub provider_id: String,
    pub specialty_id: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Start in the clinic's time zone, with its offset.
    pub starts_at_local: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppointmentStatus {
    Booked,
    Confirmed,
    Cancelled,
    NoShow,
    Completed,
}

impl AppointmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentStatus::Booked => "booked",
            AppointmentStatus::Confirmed => "confirmed",
            AppointmentStatus::Cancelled => "cancelled",
            AppointmentStatus::NoShow => "no_show",
            AppointmentStatus::Completed => "completed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        use AppointmentStatus::*;
        [Booked, Confirmed, Cancelled, NoShow, Completed].into_iter().find(|v| v.as_str() == s)
    }
    /// Live appointments hold their slot.
    pub fn is_live(self) -> bool {
        matches!(self, AppointmentStatus::Booked | AppointmentStatus::Confirmed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Appointment {
    pub id: String,
    pub patient_id: String,
    pub provider_id: String,
    pub specialty_id: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub starts_at_local: String,
    pub status: AppointmentStatus,
    pub notes: Option<String>,
    pub created_by: String,
    pub created_channel: Channel,
    pub updated_by: String,
    pub updated_channel: Channel,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A slot reserved for a short time for whoever holds the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Hold {
    pub token: String,
    pub provider_id: String,
    pub starts_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WaitlistEntry {
    pub id: String,
    pub patient_id: String,
    pub specialty_id: String,
    pub provider_id: Option<String>,
    pub earliest: NaiveDate,
    pub latest: NaiveDate,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Call {
    pub id: String,
    /// "inbound" or "outbound".
    pub direction: String,
    pub remote_number: String,
    pub patient_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub language: Option<String>,
    /// Inbound: booked, confirmed, cancelled, rescheduled, info, transferred,
    /// callback, abandoned, failed, or busy (every line was busy: the caller
    /// heard so and the call ended). Outbound (escalation and waiting-list
    /// calls): the conversation's outcome when answered (wrong_person and
    /// voicemail too); else no_answer, busy, rejected or failed.
    /// Null while the call is in progress.
    pub outcome: Option<String>,
    pub transfer_target: Option<String>,
    pub summary: Option<String>,
    /// The appointment an outbound call was about.
    pub appointment_id: Option<String>,
    /// The call's audio (stereo 8 kHz WAV: caller left, assistant right),
    /// when `[calls] record_audio` was on.
    pub recording_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CallTurn {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// "caller" or "assistant".
    pub speaker: String,
    pub text: String,
    pub confidence: Option<f64>,
    pub intent: Option<String>,
    /// Assistant turns on the phone: end of the caller's speech → first reply audio sent.
    pub latency_ms: Option<i64>,
    /// Assistant turns on the phone: end of the caller's speech → transcript.
    pub transcript_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CallDetail {
    #[serde(flatten)]
    pub call: Call,
    pub turns: Vec<CallTurn>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub channel: String,
    pub action: String,
    pub before: Option<String>,
    pub after: Option<String>,
}
