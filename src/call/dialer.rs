//! Outbound calls for the escalation and refill jobs: [`SipDialer`] dials
//! the patient's phone through the trunk and, once answered, hands the call
//! to the voice assistant's outreach conversation
//! ([`Assistant::run_outreach`]), with answering-machine detection on the
//! first seconds. What happens before the answer (busy, refused, nobody
//! picks up) maps to a [`CallOutcome`] here, and is stored as an outbound
//! call record (`super::records`) linked to the patient and appointment.
//!
//! [`refill_loop`] is the refill job's driver: one offer at a time, each
//! settled with [`Refill::resolve`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::apps::Report;
use super::assistant::Assistant;
use super::records::{self, wall_now};
use super::{CallCommand, CallEvent, CallHandle, HangupCause};
use crate::clock::Clock;
use crate::conversation::{Outreach, OutreachResult};
use crate::escalation::refill::{Offer, OfferOutcome, Refill};
use crate::escalation::scheduler::{CallOutcome, Dialer};
use crate::phone::E164;
use crate::sip::driver::SipHandle;
use crate::sip::endpoint::{DialTarget, EndReason};
use crate::store::{Job, Store};

/// Our own limit on ringing, beyond the SIP layer's `no_answer_s` (a trunk
/// that never answers nor refuses).
const RING_LIMIT: Duration = Duration::from_secs(90);

/// How the call went before (or instead of) an answer.
#[derive(Debug)]
enum Dialled {
    Answered(CallHandle),
    Ended(CallOutcome),
}

/// The outcome of an outbound call that ended before it was answered.
pub fn unanswered_outcome(cause: HangupCause) -> CallOutcome {
    match cause {
        HangupCause::Sip(EndReason::NoAnswer) | HangupCause::Sip(EndReason::Cancelled) => CallOutcome::NoAnswer,
        HangupCause::Sip(EndReason::Rejected(code)) => rejected_outcome(code),
        _ => CallOutcome::Failed,
    }
}

/// A final refusal of our INVITE, in the job's terms: busy and declined
/// calls are retried per policy like unanswered ones; a wrong number, an
/// authentication problem or a trunk failure is `Failed`.
pub fn rejected_outcome(code: u16) -> CallOutcome {
    match code {
        486 | 600 => CallOutcome::Busy,
        // Request Timeout, Request Terminated: it rang out.
        408 | 487 => CallOutcome::NoAnswer,
        // Forbidden, Temporarily Unavailable (phone off), Decline, Unwanted.
        403 | 480 | 603 | 607 | 608 => CallOutcome::Rejected,
        _ => CallOutcome::Failed,
    }
}

/// Places escalation calls and refill offers through the trunk.
pub struct SipDialer {
    pub sip: SipHandle,
    pub store: Store,
    pub assistant: Arc<Assistant>,
    pub report: Report,
    /// Listen for an answering machine in the first seconds.
    pub detect_voicemail: bool,
}

impl SipDialer {
    /// Dials `outreach`'s patient and runs the conversation if they answer.
    pub async fn place(&self, outreach: Outreach) -> OutreachResult {
        let offer = matches!(outreach, Outreach::Offer { .. });
        let unanswered = |o: CallOutcome| {
            if offer {
                OutreachResult::Offer(OfferOutcome::NoAnswer)
            } else {
                OutreachResult::Reminder(o)
            }
        };
        let Some(number) = outreach.patient().phones.iter().find_map(|p| E164::parse(p).ok()) else {
            tracing::info!("outreach skipped: the patient has no usable phone number");
            return unanswered(CallOutcome::Failed);
        };
        let target = DialTarget::Number { number: number.as_str().to_string(), trunk: None };
        let started = wall_now();
        let record = |o: CallOutcome| {
            let to = records::Dialled { number: &number, patient_id: &outreach.patient().id, appointment_id: outreach.appointment_id() };
            records::record_unanswered(&self.store, to, o, started, wall_now())
        };
        let handle = match self.sip.dial(target).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "outbound call could not be placed");
                record(CallOutcome::Failed).await;
                return unanswered(CallOutcome::Failed);
            }
        };
        let id = handle.id.0;
        match wait_for_answer(handle, &self.report).await {
            Dialled::Ended(o) => {
                tracing::info!(call = id, outcome = o.as_str(), "outbound call not answered");
                record(o).await;
                unanswered(o)
            }
            Dialled::Answered(handle) => {
                tracing::info!(call = id, "outbound call answered");
                let r =
                    self.assistant.clone().run_outreach(handle, outreach, Some(number), self.detect_voicemail, self.report.clone()).await;
                tracing::info!(call = id, result = ?r, "outbound call ended");
                r
            }
        }
    }

    /// Places a refill offer (the scheduler's `Refill::next_offer`).
    pub async fn offer(&self, offer: &Offer) -> OfferOutcome {
        let patient = match self.store.patient(&offer.entry.patient_id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "refill offer: patient not loaded");
                return OfferOutcome::NoAnswer;
            }
        };
        let outreach = Outreach::Offer { patient, hold: offer.hold.clone(), entry: offer.entry.clone() };
        match self.place(outreach).await {
            OutreachResult::Offer(o) => o,
            OutreachResult::Reminder(_) => OfferOutcome::NoAnswer,
        }
    }
}

#[async_trait::async_trait]
impl Dialer for SipDialer {
    async fn call(&self, job: Job) -> CallOutcome {
        let loaded = async {
            let appointment = self.store.appointment(&job.appointment_id).await?;
            let patient = self.store.patient(&appointment.patient_id).await?;
            Ok::<_, crate::store::StoreError>(Outreach::Confirm { patient, appointment })
        };
        let outreach = match loaded.await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "escalation call: appointment not loaded");
                return CallOutcome::Failed;
            }
        };
        match self.place(outreach).await {
            OutreachResult::Reminder(o) => o,
            OutreachResult::Offer(_) => CallOutcome::Failed,
        }
    }
}

/// Follows an outbound call until it is answered or ends.
async fn wait_for_answer(mut h: CallHandle, report: &Report) -> Dialled {
    let limit = tokio::time::sleep(RING_LIMIT);
    tokio::pin!(limit);
    loop {
        tokio::select! {
            ev = h.events.recv() => match ev {
                Some(CallEvent::Answered) => return Dialled::Answered(h),
                Some(CallEvent::Progress(code)) => report(format!("DIAL call={} progress={code}", h.id.0)),
                Some(CallEvent::HangUp(cause)) => {
                    report(format!("DIAL call={} ended={cause:?}", h.id.0));
                    return Dialled::Ended(unanswered_outcome(cause));
                }
                Some(_) => {}
                None => return Dialled::Ended(CallOutcome::Failed),
            },
            _ = &mut limit => {
                let _ = h.commands.send(CallCommand::Hangup).await;
                return Dialled::Ended(CallOutcome::NoAnswer);
            }
        }
    }
}

/// The refill driver: every `tick`, queue refill jobs for new cancellations
/// and make the due offers one at a time, until `shutdown` completes (an
/// offer in progress is cut short: its lease expires and it is retried).
pub async fn refill_loop(
    refill: Arc<Refill>,
    dialer: Arc<SipDialer>,
    clock: Arc<dyn Clock>,
    tick: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut interval = tokio::time::interval(tick);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = interval.tick() => {}
        }
        if let Err(e) = refill.plan(clock.now()).await {
            tracing::warn!(error = %e, "refill planning failed");
        }
        loop {
            let offer = match refill.next_offer(clock.now()).await {
                Ok(Some(o)) => o,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a refill job failed");
                    break;
                }
            };
            let outcome = tokio::select! {
                _ = &mut shutdown => return,
                o = dialer.offer(&offer) => o,
            };
            tracing::info!(job = %offer.job.id, outcome = outcome.as_str(), "refill offer settled");
            if let Err(e) = refill.resolve(&offer, outcome, clock.now()).await {
                tracing::warn!(job = %offer.job.id, error = %e, "recording a refill outcome failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_outcomes() {
        assert_eq!(rejected_outcome(486), CallOutcome::Busy);
        assert_eq!(rejected_outcome(600), CallOutcome::Busy);
        assert_eq!(rejected_outcome(603), CallOutcome::Rejected);
        assert_eq!(rejected_outcome(403), CallOutcome::Rejected);
        assert_eq!(rejected_outcome(480), CallOutcome::Rejected);
        assert_eq!(rejected_outcome(408), CallOutcome::NoAnswer);
        assert_eq!(rejected_outcome(404), CallOutcome::Failed);
        assert_eq!(rejected_outcome(503), CallOutcome::Failed);
        assert_eq!(unanswered_outcome(HangupCause::Sip(EndReason::NoAnswer)), CallOutcome::NoAnswer);
        assert_eq!(unanswered_outcome(HangupCause::Sip(EndReason::Rejected(486))), CallOutcome::Busy);
        assert_eq!(unanswered_outcome(HangupCause::Sip(EndReason::Timeout)), CallOutcome::Failed);
    }
}
