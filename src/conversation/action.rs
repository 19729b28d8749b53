//! What the conversation asks of the world ([`Action`]), the store requests
//! it cannot answer itself ([`StoreRequest`]) and how they come back
//! ([`StoreReply`]). Plain data: the driver and the call task interpret it.

use chrono::{DateTime, NaiveDate, Utc};

use crate::store::availability::PartOfDay;
use crate::store::{Appointment, Hold, Patient, Slot};

/// One thing the conversation wants done, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Speak `text`. `interruptible` is false for notices the caller must hear
    /// whole (privacy, emergency instructions).
    Say { text: String, interruptible: bool },
    /// The next answer will be long or slow (a date of birth, a name): the
    /// speech layer should wait longer before ending the caller's turn.
    ExpectLonger { reason: Patience },
    /// Ask the store; the answer must come back through `handle_store_reply`
    /// before the conversation goes on (transcript writes excepted).
    Store(StoreRequest),
    /// Hand the call to a group of staff with a one-line summary for them.
    Transfer { group: TransferGroup, summary: String },
    /// End the call (after the last `Say` has been played).
    Hangup,
}

/// Why the speech layer should be patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    DateOfBirth,
    Name,
}

/// Who picks up a transferred call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferGroup {
    Reception,
    /// Staff who answer possible emergencies first.
    Emergency,
}

impl TransferGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferGroup::Reception => "reception",
            TransferGroup::Emergency => "emergency",
        }
    }
}

/// How a call ended, as recorded in `calls.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    // Ordered by weight: a call that booked and then asked for the hours
    // is recorded as booked.
    Abandoned,
    Info,
    Confirmed,
    Cancelled,
    Rescheduled,
    Booked,
    Transferred,
    /// Nobody could take the call; a callback request was stored.
    Callback,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Booked => "booked",
            Outcome::Confirmed => "confirmed",
            Outcome::Cancelled => "cancelled",
            Outcome::Rescheduled => "rescheduled",
            Outcome::Info => "info",
            Outcome::Transferred => "transferred",
            Outcome::Callback => "callback",
            Outcome::Abandoned => "abandoned",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Who said a transcript line. `System` lines record actions and outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Caller,
    Assistant,
    System,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::Caller => "caller",
            Speaker::Assistant => "assistant",
            Speaker::System => "system",
        }
    }
}

/// Questions and writes for the appointment store. Every write is done as
/// the assistant on the phone channel, at the `now` of the event that led to it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreRequest {
    StartCall {
        direction: Direction,
        remote_number: String,
        language: String,
    },
    RecordTurn {
        speaker: Speaker,
        text: String,
        intent: Option<String>,
        confidence: Option<f64>,
    },
    FinishCall {
        outcome: Outcome,
        patient_id: Option<String>,
        transfer_target: Option<String>,
        summary: Option<String>,
    },
    PatientsByPhone {
        phone: String,
    },
    PatientsBornOn {
        date: NaiveDate,
    },
    /// The outcome of an identity check: `matched` is the patient whose
    /// date of birth (and name) the caller gave, `None` when none matched.
    /// Replies `Locked(true)` when that patient, the patients named like
    /// `name`, or the calling number failed too many checks lately; a
    /// failed check is counted against them, unless `may_be_new` and nobody
    /// by that name is known (a new patient booking, not a wrong guess).
    CheckIdentity {
        matched: Option<String>,
        name: Option<String>,
        phone: Option<String>,
        may_be_new: bool,
    },
    CreatePatient {
        name: String,
        date_of_birth: NaiveDate,
        phone: Option<String>,
        language: String,
    },
    FreeSlots {
        specialty: Option<String>,
        provider: Option<String>,
        from: NaiveDate,
        to: NaiveDate,
        part_of_day: Option<PartOfDay>,
    },
    /// Hold each slot for the configured time; the reply lists those held.
    HoldSlots {
        slots: Vec<Slot>,
    },
    ReleaseHolds {
        tokens: Vec<String>,
    },
    Book {
        patient_id: String,
        provider_id: String,
        starts_at: DateTime<Utc>,
        hold_token: Option<String>,
    },
    UpcomingAppointments {
        patient_id: String,
    },
    Confirm {
        appointment_id: String,
    },
    Cancel {
        appointment_id: String,
    },
    Reschedule {
        appointment_id: String,
        provider_id: String,
        starts_at: DateTime<Utc>,
        hold_token: Option<String>,
    },
    WaitlistAdd {
        patient_id: String,
        specialty_id: String,
        provider_id: Option<String>,
        earliest: NaiveDate,
        latest: NaiveDate,
    },
    /// The patient asked not to be called again: `contact_consent` off,
    /// audited as the assistant's change; replies `Done`.
    OptOut {
        patient_id: String,
    },
    /// Store a callback request (the driver adds the call's id); replies `Done`.
    SaveCallback {
        patient_id: Option<String>,
        name: String,
        phone: String,
        reason: String,
        language: String,
        /// Clinic-local "YYYY-MM-DD HH:MM" the caller was told to expect the call from.
        promised: String,
    },
}

impl StoreRequest {
    /// Transcript writes and hold releases need no answer: the conversation
    /// never waits on them, and the driver must not feed a reply back.
    pub fn expects_reply(&self) -> bool {
        !matches!(
            self,
            StoreRequest::StartCall { .. }
                | StoreRequest::RecordTurn { .. }
                | StoreRequest::FinishCall { .. }
                | StoreRequest::ReleaseHolds { .. }
        )
    }
}

/// The store's answer to the request the conversation is waiting on.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreReply {
    Patients(Vec<Patient>),
    Patient(Patient),
    Slots(Vec<Slot>),
    Held(Vec<(Slot, Hold)>),
    Appointments(Vec<Appointment>),
    /// Whether identity checks are locked for this caller (`CheckIdentity`).
    Locked(bool),
    /// The appointment after a book, confirm, cancel or reschedule.
    Appointment(Appointment),
    /// A write with nothing to report (the waiting list).
    Done,
    /// Someone else got there first: the slot is taken or held.
    Conflict,
    /// Anything else went wrong; the text is for the log, not the caller.
    Failed(String),
}
