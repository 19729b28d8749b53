//! Applications over the telephony layer: the test ones (`[calls] app = "echo" | "tone"`),
//! to prove a trunk or a desk phone end to end before the assistant takes
//! calls, and for the interop tests. Each reports what happens as one line
//! per event (`DTMF 5`, `HANGUP Remote …`) through a [`Report`] callback:
//! the service logs them, `clinivox sip-app` prints them. `serve` also
//! dispatches calls to the voice assistant (`super::assistant`).

use std::sync::Arc;
use std::time::Duration;

use super::{CallCommand, CallEvent, CallHandle};
use crate::sip::driver::SipHandle;
use crate::sip::endpoint::DialTarget;

/// Where an application's event lines go.
pub type Report = Arc<dyn Fn(String) + Send + Sync>;

/// A dial target as written on the command line: `sip:` URI, `ext:201`, or a number.
pub fn parse_target(arg: &str) -> DialTarget {
    if arg.starts_with("sip:") {
        DialTarget::Uri(arg.to_string())
    } else if let Some(ext) = arg.strip_prefix("ext:") {
        DialTarget::Extension(ext.to_string())
    } else {
        DialTarget::Number { number: arg.to_string(), trunk: None }
    }
}

pub async fn echo(mut h: CallHandle, report: Report) {
    let mut frames = 0u64;
    let mut media = String::new();
    while let Some(ev) = h.events.recv().await {
        match ev {
            CallEvent::Audio(f) => {
                frames += 1;
                let _ = h.commands.send(CallCommand::Enqueue(f.to_vec())).await;
            }
            CallEvent::MediaStats(s) => {
                media = format!(
                    " rtp_in={} lost={} late={} concealed={} rtp_out={}",
                    s.packets_in, s.jitter.lost, s.jitter.late, s.jitter.concealed, s.packets_out
                )
            }
            CallEvent::HangUp(c) => {
                report(format!("HANGUP {:?} call={}{media} frames={frames}", c, h.id.0));
                return;
            }
            CallEvent::Dtmf(d) => report(format!("DTMF {d}")),
            other => report(format!("EVENT {other:?}")),
        }
    }
}

/// 440 Hz, 880 Hz, 1320 Hz, 300 ms each, separated by 100 ms of silence.
pub fn tone_sequence() -> Vec<i16> {
    let mut v = Vec::new();
    for f in [440.0f32, 880.0, 1320.0] {
        for n in 0..2400 {
            v.push(((2.0 * std::f32::consts::PI * f * n as f32 / 8000.0).sin() * 8000.0) as i16);
        }
        v.extend(std::iter::repeat_n(0, 800));
    }
    v
}

pub async fn tone(mut h: CallHandle, report: Report) {
    let _ = h.commands.send(CallCommand::Play(tone_sequence())).await;
    while let Some(ev) = h.events.recv().await {
        match ev {
            CallEvent::Dtmf(d) => report(format!("DTMF {d}")),
            CallEvent::PlaybackDone => {
                report("PLAYED".into());
                let _ = h.commands.send(CallCommand::Play(tone_sequence())).await;
            }
            CallEvent::HangUp(c) => {
                report(format!("HANGUP {:?} call={}", c, h.id.0));
                return;
            }
            _ => {}
        }
    }
}

pub async fn bridge_to(mut a: CallHandle, sip: SipHandle, ext: String, report: Report) {
    let target = if ext.starts_with("sip:") || ext.starts_with("sips:") { DialTarget::Uri(ext) } else { DialTarget::Extension(ext) };
    let mut b = match sip.dial(target).await {
        Ok(b) => b,
        Err(e) => {
            report(format!("DIAL-FAILED {e}"));
            let _ = a.commands.send(CallCommand::Hangup).await;
            return;
        }
    };
    let (mut a_frames, mut b_frames) = (0u64, 0u64);
    loop {
        tokio::select! {
            ev = a.events.recv() => match ev {
                Some(CallEvent::HangUp(c)) => {
                    report(format!("HANGUP A {c:?} a_audio={a_frames} b_audio={b_frames}"));
                    let _ = b.commands.send(CallCommand::Hangup).await;
                    break;
                }
                Some(CallEvent::Audio(_)) => a_frames += 1,
                Some(e) => report(format!("A {e:?}")),
                None => break,
            },
            ev = b.events.recv() => match ev {
                Some(CallEvent::Answered) => {
                    report("B ANSWERED".into());
                    super::bridge(&a, &b).await;
                    report("BRIDGED".into());
                }
                Some(CallEvent::HangUp(c)) => {
                    report(format!("HANGUP B {c:?}"));
                    let _ = a.commands.send(CallCommand::Hangup).await;
                    break;
                }
                Some(CallEvent::Audio(_)) => b_frames += 1,
                Some(e) => report(format!("B {e:?}")),
                None => break,
            },
        }
    }
    // Let the BYEs go out before the task ends.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

pub async fn dial(mut h: CallHandle, secs: u64, report: Report) {
    let mut answered = false;
    let mut frames = 0u64;
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = h.events.recv() => match ev {
                Some(CallEvent::Answered) => {
                    report("ANSWERED".into());
                    answered = true;
                    let _ = h.commands.send(CallCommand::Play(tone_sequence())).await;
                    deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(secs));
                }
                Some(CallEvent::Audio(_)) => frames += 1,
                Some(CallEvent::HangUp(c)) => {
                    report(format!("HANGUP {c:?} answered={answered} frames={frames}"));
                    break;
                }
                Some(e) => report(format!("EVENT {e:?}")),
                None => break,
            },
            _ = &mut deadline => {
                let _ = h.commands.send(CallCommand::Hangup).await;
                report(format!("HANGUP Local answered={answered} frames={frames}"));
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Answers, then transfers the caller blind (REFER) to `target`; reports
/// the NOTIFY progress and hangs up once the transfer succeeded or failed.
pub async fn refer(mut h: CallHandle, target: String, report: Report) {
    let _ = h.commands.send(CallCommand::Transfer(target)).await;
    while let Some(ev) = h.events.recv().await {
        match ev {
            CallEvent::TransferStatus(code) => {
                report(format!("TRANSFER {code}"));
                // 202 is the REFER's own acceptance; any other final status ends our part.
                if code >= 200 && code != 202 {
                    let _ = h.commands.send(CallCommand::Hangup).await;
                }
            }
            CallEvent::HangUp(c) => {
                report(format!("HANGUP {:?} call={}", c, h.id.0));
                return;
            }
            _ => {}
        }
    }
}

/// Which application answers inbound calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum App {
    Echo,
    Tone,
    /// Call this extension (or `sip:` URI) and bridge the two legs.
    Bridge(String),
    /// Transfer every caller by REFER to this URI.
    Refer(String),
    /// The voice assistant (built once, shared by every call).
    #[cfg(feature = "whisper")]
    Assistant(Arc<super::assistant::Assistant>),
}

impl App {
    pub fn parse(name: &str, arg: Option<&str>) -> Option<App> {
        match (name, arg) {
            ("echo", _) => Some(App::Echo),
            ("tone", _) => Some(App::Tone),
            ("bridge", Some(target)) => Some(App::Bridge(target.to_string())),
            ("refer", Some(target)) => Some(App::Refer(target.to_string())),
            _ => None,
        }
    }
}

/// Runs the SIP server and answers every inbound call with `app` until
/// `shutdown` completes. Reports `LISTEN`, `INCOMING` and each app's lines.
pub async fn serve(server: crate::sip::driver::SipServer, app: App, report: Report, shutdown: impl std::future::Future<Output = ()>) {
    for (t, a) in &server.local_addrs {
        report(format!("LISTEN {} {a}", t.as_str()));
    }
    let sip = server.handle();
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel(1024);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let running = tokio::spawn(server.run(in_tx, stop_rx));
    tokio::pin!(shutdown);
    // Calls in progress, so that shutdown lets them finish their records.
    let mut calls = tokio::task::JoinSet::new();
    loop {
        let call: crate::sip::driver::IncomingCall = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished calls as they end.
            Some(_) = calls.join_next(), if !calls.is_empty() => continue,
            call = in_rx.recv() => match call { Some(c) => c, None => break },
        };
        report(format!("INCOMING {} from {} ({:?})", call.callee, crate::phone::masked_uri(&call.caller), call.source));
        let (sip, app, report) = (sip.clone(), app.clone(), report.clone());
        calls.spawn(async move {
            match app {
                App::Echo => echo(call.handle, report).await,
                App::Tone => tone(call.handle, report).await,
                App::Bridge(target) => bridge_to(call.handle, sip, target, report).await,
                App::Refer(target) => refer(call.handle, target, report).await,
                #[cfg(feature = "whisper")]
                App::Assistant(a) => a.answer(call.handle, call.caller, Some(sip), report).await,
            }
        });
    }
    let _ = stop_tx.send(());
    let _ = running.await;
    // With the SIP side gone every call reports its hang-up; give the
    // applications a moment to record it (the store closes after this).
    let drain = async { while calls.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        report(format!("SHUTDOWN {} calls still running", calls.len()));
    }
}

/// How long shutdown waits for calls in progress to wind up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
