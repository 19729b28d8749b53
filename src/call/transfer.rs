//! Bridged transfer to a ring group: Clinivox calls the staff phones (all
//! at once, or one after another), the first to answer hears a short
//! spoken briefing, and only then is the caller put through; the other
//! phones stop ringing (CANCEL). The caller's leg is not touched here: the
//! assistant keeps it, plays the waiting message and bridges the legs.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::{CallCommand, CallEvent, CallHandle};
use crate::sip::driver::SipHandle;
use crate::sip::endpoint::DialTarget;

/// Who to ring and how.
#[derive(Debug, Clone)]
pub struct RingPlan {
    pub members: Vec<DialTarget>,
    /// All at once (first to answer wins), or in order.
    pub all_at_once: bool,
    /// For the whole group when all at once, per member in order.
    pub ring_timeout: Duration,
    /// Context for the staff phone (patient, intent, summary).
    pub headers: Vec<(String, String)>,
}

/// How ringing ended.
#[derive(Debug)]
pub enum Rung {
    /// A staff member answered and heard the briefing: bridge this leg.
    Answered { leg: CallHandle, member: usize },
    /// Nobody answered (or every phone refused, or none is reachable).
    NoAnswer,
    /// The caller hung up meanwhile; every staff leg was released.
    Cancelled,
}

/// A member dial target as written in configuration: `sip:` URI or extension.
pub fn member_target(member: &str) -> DialTarget {
    if member.starts_with("sip:") {
        DialTarget::Uri(member.to_string())
    } else {
        DialTarget::Extension(member.to_string())
    }
}

/// Rings the plan's members; plays `briefing` (8 kHz PCM) to whoever
/// answers before handing their leg back. `cancel` firing (or dropped)
/// stops everything.
pub async fn ring(sip: SipHandle, plan: RingPlan, briefing: Vec<i16>, mut cancel: oneshot::Receiver<()>) -> Rung {
    let groups: Vec<Vec<usize>> =
        if plan.all_at_once { vec![(0..plan.members.len()).collect()] } else { (0..plan.members.len()).map(|i| vec![i]).collect() };
    for group in groups {
        match ring_some(&sip, &plan, &group, &mut cancel).await {
            Some(Ok((leg, member))) => {
                return match brief(leg, &briefing, &mut cancel).await {
                    Some(leg) => Rung::Answered { leg, member },
                    // The receptionist hung up during the briefing: try the next.
                    None if cancel_fired(&mut cancel) => Rung::Cancelled,
                    None => continue,
                };
            }
            Some(Err(())) => return Rung::Cancelled,
            None => continue,
        }
    }
    Rung::NoAnswer
}

fn cancel_fired(cancel: &mut oneshot::Receiver<()>) -> bool {
    !matches!(cancel.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}

/// Rings `members` at once. `Some(Ok)`: one answered; `Some(Err)`: the
/// caller gave up; `None`: nobody answered in time.
async fn ring_some(
    sip: &SipHandle,
    plan: &RingPlan,
    members: &[usize],
    cancel: &mut oneshot::Receiver<()>,
) -> Option<Result<(CallHandle, usize), ()>> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (won_tx, mut won_rx) = mpsc::channel(members.len().max(1));
    let mut ringing = 0;
    for &m in members {
        match sip.dial_with_headers(plan.members[m].clone(), plan.headers.clone()).await {
            Ok(leg) => {
                ringing += 1;
                tokio::spawn(watch_leg(m, leg, won_tx.clone(), stop_rx.clone()));
            }
            Err(e) => tracing::info!(member = m, error = %e, "staff phone not reachable"),
        }
    }
    drop(won_tx);
    if ringing == 0 {
        return None;
    }
    let deadline = tokio::time::sleep(plan.ring_timeout);
    tokio::pin!(deadline);
    let result = loop {
        tokio::select! {
            r = won_rx.recv() => match r {
                Some((m, Some(leg))) => break Some(Ok((leg, m))),
                Some((_, None)) => {
                    ringing -= 1;
                    if ringing == 0 {
                        break None;
                    }
                }
                None => break None,
            },
            _ = &mut deadline => break None,
            _ = &mut *cancel => break Some(Err(())),
        }
    };
    // Everyone else stops ringing (a late answer is hung up when its
    // handle is dropped with the channel).
    let _ = stop_tx.send(true);
    result
}

/// Follows one ringing staff leg: hands it over when answered.
async fn watch_leg(member: usize, mut leg: CallHandle, won: mpsc::Sender<(usize, Option<CallHandle>)>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            ev = leg.events.recv() => match ev {
                Some(CallEvent::Answered) => {
                    let _ = won.send((member, Some(leg))).await;
                    return;
                }
                Some(CallEvent::HangUp(_)) | None => {
                    let _ = won.send((member, None)).await;
                    return;
                }
                Some(_) => {}
            },
            _ = stop.changed() => {
                let _ = leg.commands.send(CallCommand::Hangup).await;
                return;
            }
        }
    }
}

/// Plays the briefing to the staff member; their leg back once it has been
/// heard, `None` if they hung up (or the caller did).
async fn brief(mut leg: CallHandle, briefing: &[i16], cancel: &mut oneshot::Receiver<()>) -> Option<CallHandle> {
    if briefing.is_empty() {
        return Some(leg);
    }
    let _ = leg.commands.send(CallCommand::Play(briefing.to_vec())).await;
    let len = Duration::from_millis(briefing.len() as u64 / 8);
    let deadline = tokio::time::sleep(len + Duration::from_secs(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = leg.events.recv() => match ev {
                Some(CallEvent::PlaybackDone) => return Some(leg),
                Some(CallEvent::HangUp(_)) | None => return None,
                Some(_) => {}
            },
            _ = &mut deadline => return Some(leg),
            _ = &mut *cancel => {
                let _ = leg.commands.send(CallCommand::Hangup).await;
                return None;
            }
        }
    }
}

/// A ring-back tone for the caller while staff phones ring (425 Hz, 1 s on,
/// 3 s off, as European exchanges play it), `cycles` times.
pub fn ringback(cycles: usize) -> Vec<i16> {
    let mut v = Vec::with_capacity(cycles * 32_000);
    for _ in 0..cycles {
        v.extend((0..8_000).map(|n| ((2.0 * std::f32::consts::PI * 425.0 * n as f32 / 8000.0).sin() * 6_000.0) as i16));
        v.extend(std::iter::repeat_n(0, 24_000));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_extensions_or_uris() {
        assert_eq!(member_target("201"), DialTarget::Extension("201".into()));
        assert_eq!(member_target("sip:reception@192.0.2.5"), DialTarget::Uri("sip:reception@192.0.2.5".into()));
    }

    #[test]
    fn ringback_cadence() {
        let r = ringback(2);
        assert_eq!(r.len(), 64_000);
        assert!(r[..8_000].iter().any(|&s| s > 5_000));
        assert!(r[8_000..32_000].iter().all(|&s| s == 0));
    }
}
