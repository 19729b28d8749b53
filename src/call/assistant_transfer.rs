//! The assistant's side of a transfer: ringing the conversation's staff
//! group (`super::super::transfer` does the ringing) with the call's context
//! in headers, ring-back for the caller meanwhile, then joining the legs,
//! or handing back to the conversation when nobody answers. A group with
//! `transfer = "refer"` is reached by a blind REFER on the caller's leg
//! instead; its NOTIFY progress comes back as `TransferStatus`.

use std::time::Instant;

use tokio::sync::oneshot;

use super::super::transfer::{self, RingPlan, Rung};
use super::super::{CallCommand, CallEvent, CallHandle};
use super::{wall_now, Back, Line, Then, RING_TIMEOUT};
use crate::config::{Config, GroupMember, GroupTransfer, RingStrategy};
use crate::conversation::TransferGroup;
use crate::metrics::{CallPhase, TransferResult};
use crate::sip::endpoint::DialTarget;
use crate::speech::tts;

impl Line {
    /// Starts a bridged transfer (or a REFER without a SIP handle).
    pub(super) async fn transfer(&mut self, group: TransferGroup) {
        // Outbound calls are not transferred: we will call again, goodbye.
        if self.outbound.is_some() {
            return self.outbound_goodbye();
        }
        if let Some(GroupTransfer::Refer(uri)) = self.assistant.config.group(group).map(|g| g.transfer.clone()) {
            return self.refer(uri).await;
        }
        let plan = ring_plan(&self.assistant.config, &self.assistant.staff, group);
        let (Some(sip), false) = (self.sip.clone(), plan.members.is_empty()) else {
            return match self.assistant.reception.clone() {
                Some(uri) => self.refer(uri).await,
                None => {
                    self.assistant.metrics.transfer(TransferResult::Unreachable);
                    self.transfer_failed().await
                }
            };
        };
        let conv = self.session.conversation();
        let mut headers = vec![("X-Clinivox-Group".to_string(), group.as_str().to_string())];
        if let Some(id) = self.session.call_id() {
            headers.push(("X-Clinivox-Call-Id".into(), id.to_string()));
        }
        if let Some(id) = conv.patient_id() {
            headers.push(("X-Clinivox-Patient-Id".into(), id.to_string()));
        }
        headers.push(("X-Clinivox-Intent".into(), conv.wanted().unwrap_or("unclear").to_string()));
        headers.push(("X-Clinivox-Summary".into(), conv.summary_text()));
        let plan = RingPlan { headers, ..plan };
        let briefing_text = conv.staff_briefing();
        self.report(format!("RINGING call={} staff={}", self.handle.id.0, plan.members.len()));
        self.transcript("RINGING briefing", &briefing_text);
        self.then = Then::Ringing;
        self.active.set_phase(CallPhase::Transferring, Instant::now());
        let ringing = if plan.all_at_once { plan.ring_timeout } else { plan.ring_timeout * plan.members.len() as u32 };
        let _ = self.handle.commands.send(CallCommand::Play(transfer::ringback(ringing.as_secs() as usize / 4 + 1))).await;
        let (cancel_tx, cancel_rx) = oneshot::channel();
        self.ring_cancel = Some(cancel_tx);
        let (tts, tx) = (self.assistant.tts.clone(), self.tx.clone());
        // The briefing is in the conversation's language, as its text is.
        let lang = self.lang.clone();
        tokio::spawn(async move {
            let briefing = tokio::task::spawn_blocking(move || {
                tts::sentences(tts.as_ref(), &briefing_text, &lang).filter_map(Result::ok).flatten().collect::<Vec<i16>>()
            })
            .await
            .unwrap_or_default();
            let rung = transfer::ring(sip, plan, briefing, cancel_rx).await;
            let _ = tx.send(Back::Staff(rung)).await;
        });
    }

    /// A blind transfer: REFER the caller to `uri`. The call stays ours until
    /// the NOTIFYs say the target answered (we hang up) or refused (back to
    /// the conversation: `transfer_status`).
    async fn refer(&mut self, uri: String) {
        self.report(format!("REFER call={} to={uri}", self.handle.id.0));
        self.then = Then::Done;
        self.active.set_phase(CallPhase::Transferring, Instant::now());
        let _ = self.handle.commands.send(CallCommand::Transfer(uri)).await;
    }

    /// Ringing is over: join the legs, or tell the caller nobody answers.
    pub(super) async fn rung(&mut self, rung: Rung) {
        self.ring_cancel = None;
        match rung {
            Rung::Answered { leg, member } => {
                let _ = self.handle.commands.send(CallCommand::StopPlaying).await;
                super::super::bridge(&self.handle, &leg).await;
                self.report(format!("BRIDGED call={} staff_member={member}", self.handle.id.0));
                self.assistant.metrics.transfer(TransferResult::Answered);
                self.active.set_phase(CallPhase::Bridged, Instant::now());
                self.staff = Some(leg);
                self.then = Then::Done;
            }
            Rung::NoAnswer => {
                self.report(format!("NO-ANSWER call={}", self.handle.id.0));
                self.assistant.metrics.transfer(TransferResult::Failed);
                let _ = self.handle.commands.send(CallCommand::StopPlaying).await;
                self.transfer_failed().await;
            }
            Rung::Cancelled => {}
        }
    }

    /// Nobody can take the call: the conversation takes a callback request.
    pub(super) async fn transfer_failed(&mut self) {
        self.then = Then::Listen;
        self.active.set_phase(CallPhase::Assistant, Instant::now());
        let out = self.session.transfer_failed(wall_now()).await;
        // act → reply_finished → here → act: boxed, as async recursion must be.
        Box::pin(self.act(out)).await;
    }
}

/// Who rings for `group`: its `[[groups]]` entry (members, strategy,
/// timeout), else every staff phone at once.
pub(super) fn ring_plan(config: &Config, fallback: &[DialTarget], group: TransferGroup) -> RingPlan {
    match config.group(group) {
        Some(g) => RingPlan {
            members: g
                .members
                .iter()
                .map(|m| match m {
                    GroupMember::Uri(u) => DialTarget::Uri(u.clone()),
                    // A staff member with a static URI is rung there; else their registered phone.
                    GroupMember::Extension(x) => config
                        .staff
                        .iter()
                        .find(|s| &s.extension == x)
                        .and_then(|s| s.uri.clone())
                        .map(DialTarget::Uri)
                        .unwrap_or_else(|| DialTarget::Extension(x.clone())),
                })
                .collect(),
            all_at_once: g.strategy == RingStrategy::All,
            ring_timeout: g.ring_timeout,
            headers: Vec::new(),
        },
        None => RingPlan { members: fallback.to_vec(), all_at_once: true, ring_timeout: RING_TIMEOUT, headers: Vec::new() },
    }
}

/// The bridged staff leg's next event; never, while there is none.
pub(super) async fn staff_event(staff: &mut Option<CallHandle>) -> Option<CallEvent> {
    match staff {
        Some(h) => h.events.recv().await,
        None => std::future::pending().await,
    }
}
