//! Call records for the calls that end before any conversation, which
//! therefore no [`Session`](crate::conversation::driver::Session) records:
//! an inbound caller turned away because every line was busy, and an
//! outbound attempt nobody answered (busy, refused, rang out, or could not
//! be placed). Every other call is recorded by its conversation; these
//! complete the call history and `/metrics` (calls by outcome).
//!
//! A record that cannot be written is logged and the call goes on: the
//! telephone never waits on the database.

use chrono::{DateTime, SubsecRound, Utc};

use crate::escalation::scheduler::CallOutcome;
use crate::phone::E164;
use crate::store::{NewCall, Store};

/// The inbound outcome of a caller who heard "all our lines are busy".
pub const BUSY: &str = "busy";

/// The store works in whole seconds.
pub fn wall_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// An inbound caller refused because the machine was saturated (`[calls]
/// max_active`, `max_recognition_queue`). `language`: the one the notice
/// was said in.
pub async fn record_refused(store: &Store, caller: Option<&E164>, language: &str, started: DateTime<Utc>, ended: DateTime<Utc>) {
    let new = NewCall {
        direction: "inbound".into(),
        remote_number: caller.map(|c| c.as_str().to_string()).unwrap_or_default(),
        patient_id: None,
        language: Some(language.to_string()),
        appointment_id: None,
    };
    if let Err(e) = store.record_unanswered_call(new, BUSY, started, ended).await {
        tracing::warn!(error = %e, "could not record a refused call");
    }
}

/// The patient whose phone we dialled, and what the call was about.
#[derive(Debug, Clone)]
pub struct Dialled<'a> {
    pub number: &'a E164,
    pub patient_id: &'a str,
    pub appointment_id: Option<&'a str>,
}

/// An outbound attempt that was never answered: `outcome` is `NoAnswer`,
/// `Busy`, `Rejected` or `Failed` (an answered call's outcome comes from
/// its conversation).
pub async fn record_unanswered(store: &Store, to: Dialled<'_>, outcome: CallOutcome, started: DateTime<Utc>, ended: DateTime<Utc>) {
    let new = NewCall {
        direction: "outbound".into(),
        remote_number: to.number.as_str().to_string(),
        patient_id: Some(to.patient_id.to_string()),
        language: None,
        appointment_id: to.appointment_id.map(str::to_string),
    };
    if let Err(e) = store.record_unanswered_call(new, outcome.as_str(), started, ended).await {
        tracing::warn!(error = %e, outcome = outcome.as_str(), "could not record an unanswered outbound call");
    }
}

/// An answered escalation call: the record the conversation opened is
/// linked to the appointment it is about.
pub async fn link_appointment(store: &Store, call_id: Option<&str>, appointment_id: Option<&str>) {
    let (Some(call), Some(appointment)) = (call_id, appointment_id) else { return };
    if let Err(e) = store.set_call_appointment(call, appointment).await {
        tracing::warn!(error = %e, "could not link the call to its appointment");
    }
}

/// An outbound call answered by a machine, where a message was left: the
/// record says `voicemail` (as the job does), not how the conversation
/// ended.
pub async fn left_voicemail(store: &Store, call_id: Option<&str>) {
    let Some(call) = call_id else { return };
    if let Err(e) = store.set_call_outcome(call, CallOutcome::Voicemail.as_str()).await {
        tracing::warn!(error = %e, "could not record the voicemail outcome");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_and_unanswered_calls_are_stored_closed() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::testing::demo_config();
        let store = crate::testing::sqlite_store(dir.path(), &config).await.unwrap();
        let t0: DateTime<Utc> = "2026-11-23T08:00:00Z".parse().unwrap();
        let caller = E164::parse("+34600222333").unwrap();
        record_refused(&store, Some(&caller), "es", t0, t0 + chrono::Duration::seconds(7)).await;
        record_refused(&store, None, "es", t0, t0).await;
        let calls = store.calls(10).await.unwrap();
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|c| c.direction == "inbound" && c.outcome.as_deref() == Some(BUSY) && c.ended_at.is_some()));
        assert!(calls.iter().any(|c| c.remote_number == "+34600222333" && c.ended_at == Some(t0 + chrono::Duration::seconds(7))));
        assert!(calls.iter().any(|c| c.remote_number.is_empty()));

        let staff = crate::store::Actor::new("test", crate::store::Channel::Staff);
        let new = crate::store::NewPatient {
            name: "José Martínez Ruiz".into(),
            phones: vec![caller.clone()],
            date_of_birth: chrono::NaiveDate::from_ymd_opt(1952, 11, 2).unwrap(),
            national_id: None,
            preferred_language: "es".into(),
            contact_consent: true,
        };
        let jose = store.create_patient(new, &staff, t0).await.unwrap();
        let to = Dialled { number: &caller, patient_id: &jose.id, appointment_id: None };
        record_unanswered(&store, to, CallOutcome::Rejected, t0, t0 + chrono::Duration::seconds(2)).await;
        let calls = store.calls(10).await.unwrap();
        let out = calls.iter().find(|c| c.direction == "outbound").expect("the attempt is recorded");
        assert_eq!((out.outcome.as_deref(), out.patient_id.as_deref()), (Some("rejected"), Some(jose.id.as_str())));
        // A patient the store does not know: logged, nothing stored, no panic.
        let to = Dialled { number: &caller, patient_id: "no-such-patient", appointment_id: None };
        record_unanswered(&store, to, CallOutcome::Busy, t0, t0).await;
        assert_eq!(store.calls(10).await.unwrap().len(), 3);
    }
}
