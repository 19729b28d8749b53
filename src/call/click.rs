//! Click-to-call from the staff console: the receptionist's desk phone
//! rings first; once it is picked up (hearing ring-back), the patient is
//! dialled through the trunk, and when they answer the two legs are
//! joined. Whoever hangs up ends the call for both; a patient who does not
//! answer ends it for the receptionist. The number is dialled under the
//! same rules as the escalation calls (`[sip] dial_allow`).
//!
//! Nothing here is recorded as a call of the assistant's: it is a staff
//! member's own call, placed for them. The console writes who asked for it
//! to the audit log.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::apps::Report;
use super::transfer::{member_target, ringback};
use super::{bridge, CallCommand, CallEvent, CallHandle};
use crate::config::Config;
use crate::phone::E164;
use crate::sip::driver::SipHandle;
use crate::sip::endpoint::DialTarget;

/// How long the desk phone may ring before we give up.
const DESK_RING: Duration = Duration::from_secs(30);
/// How long the patient's phone may ring.
const PATIENT_RING: Duration = Duration::from_secs(45);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClickError {
    #[error("extension {0} is not one of the clinic's [[staff]] extensions")]
    UnknownExtension(String),
    #[error("calls in progress are at the limit; try again in a moment")]
    Busy,
}

/// How a click-to-call ended (for the log and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both talked; then one hung up.
    Connected,
    /// The desk phone was not picked up (or could not be rung).
    DeskNoAnswer,
    /// The receptionist hung up before the patient answered.
    DeskHungUp,
    /// The patient did not answer (or the number could not be dialled).
    PatientNoAnswer,
}

/// Places click-to-call calls; cheap to clone, shared by the console.
#[derive(Clone)]
pub struct ClickToCall {
    sip: SipHandle,
    config: Arc<Config>,
    report: Report,
    /// At most this many at once (`[calls] max_active`): each holds two legs.
    slots: Arc<tokio::sync::Semaphore>,
}

impl ClickToCall {
    pub fn new(sip: SipHandle, config: Arc<Config>, report: Report) -> ClickToCall {
        let slots = Arc::new(tokio::sync::Semaphore::new(config.calls.max_active.max(1)));
        ClickToCall { sip, config, report, slots }
    }

    /// Starts ringing `extension`'s desk phone (its `[[staff]]` URI, else
    /// its registered phone) to then call `number`; the call runs on its
    /// own task. `done` hears how it ended.
    pub fn start(&self, extension: &str, number: &E164, done: Option<mpsc::Sender<Outcome>>) -> Result<(), ClickError> {
        let staff =
            self.config.staff.iter().find(|s| s.extension == extension).ok_or_else(|| ClickError::UnknownExtension(extension.into()))?;
        let desk = member_target(staff.uri.as_deref().unwrap_or(&staff.extension));
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| ClickError::Busy)?;
        let patient = DialTarget::Number { number: number.as_str().to_string(), trunk: None };
        let (sip, report) = (self.sip.clone(), self.report.clone());
        tokio::spawn(async move {
            let outcome = connect(&sip, desk, patient, &report).await;
            report(format!("CLICK-TO-CALL ended={outcome:?}"));
            drop(slot);
            if let Some(d) = done {
                let _ = d.send(outcome).await;
            }
        });
        Ok(())
    }
}

async fn connect(sip: &SipHandle, desk: DialTarget, patient: DialTarget, report: &Report) -> Outcome {
    let headers = vec![("X-Clinivox-Click-To-Call".to_string(), "1".to_string())];
    let Ok(desk) = sip.dial_with_headers(desk, headers).await else { return Outcome::DeskNoAnswer };
    let Ringing::Answered(mut desk) = answered(desk, None, DESK_RING).await else { return Outcome::DeskNoAnswer };
    report(format!("CLICK-TO-CALL desk={} answered; dialling the patient", desk.id.0));
    let _ = desk.commands.send(CallCommand::Play(ringback(PATIENT_RING.as_secs() as usize / 4 + 1))).await;
    let patient = match sip.dial(patient).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "click-to-call: the patient's number could not be dialled");
            let _ = desk.commands.send(CallCommand::Hangup).await;
            return Outcome::PatientNoAnswer;
        }
    };
    let mut patient = match answered(patient, Some(&mut desk), PATIENT_RING).await {
        Ringing::Answered(p) => p,
        Ringing::OtherHungUp => return Outcome::DeskHungUp,
        Ringing::Ended => {
            let _ = desk.commands.send(CallCommand::Hangup).await;
            return Outcome::PatientNoAnswer;
        }
    };
    let _ = desk.commands.send(CallCommand::StopPlaying).await;
    if !bridge(&desk, &patient).await {
        return Outcome::PatientNoAnswer;
    }
    report(format!("CLICK-TO-CALL desk={} patient={} bridged", desk.id.0, patient.id.0));
    // Until one side hangs up; then the other.
    loop {
        tokio::select! {
            ev = desk.events.recv() => if matches!(ev, Some(CallEvent::HangUp(_)) | None) {
                let _ = patient.commands.send(CallCommand::Hangup).await;
                break;
            },
            ev = patient.events.recv() => if matches!(ev, Some(CallEvent::HangUp(_)) | None) {
                let _ = desk.commands.send(CallCommand::Hangup).await;
                break;
            },
        }
    }
    Outcome::Connected
}

/// How ringing an outbound leg ended.
enum Ringing {
    Answered(CallHandle),
    /// Refused, unanswered, or rung past its limit (then hung up by us).
    Ended,
    /// The leg already up hung up meanwhile (ours was then hung up).
    OtherHungUp,
}

/// Follows an outbound leg until it is answered, ends, rings past
/// `limit`, or `other` (the leg already up) hangs up.
async fn answered(mut leg: CallHandle, mut other: Option<&mut CallHandle>, limit: Duration) -> Ringing {
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    loop {
        let other_gone = async {
            match other.as_deref_mut() {
                Some(o) => loop {
                    match o.events.recv().await {
                        Some(CallEvent::HangUp(_)) | None => break,
                        Some(_) => {}
                    }
                },
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            ev = leg.events.recv() => match ev {
                Some(CallEvent::Answered) => return Ringing::Answered(leg),
                Some(CallEvent::HangUp(_)) | None => return Ringing::Ended,
                Some(_) => {}
            },
            _ = other_gone => {
                let _ = leg.commands.send(CallCommand::Hangup).await;
                return Ringing::OtherHungUp;
            }
            _ = &mut deadline => {
                let _ = leg.commands.send(CallCommand::Hangup).await;
                return Ringing::Ended;
            }
        }
    }
}
