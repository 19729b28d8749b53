//! One task per call: RTP socket + `RtpSession` + the application's
//! event/command channels, driven by one loop over one closed [`CallInput`]
//! enum. The decisions live in the pure [`core::CallCore`]; this file only
//! moves bytes and messages.
//!
//! Application interface: a [`CallHandle`] gives a stream of [`CallEvent`]s
//! (8 kHz PCM frames, DTMF, progress, hang-up, media timeout) and takes
//! [`CallCommand`]s (play PCM — replaces what is playing, at once —, stop,
//! send DTMF, transfer, bridge, hang up).

pub mod admission;
pub mod apps;
#[cfg(feature = "whisper")]
pub mod assistant;
pub mod click;
pub mod core;
#[cfg(feature = "whisper")]
pub mod dialer;
#[cfg(feature = "whisper")]
mod recording;
pub mod records;
pub mod transfer;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::media::g711::FRAME_SAMPLES;
use crate::media::rtp_session::{RtpConfig, SourcePolicy};
use crate::media::sdp::Negotiated;
use crate::sip::config::SipConfig;
use crate::sip::driver::SipCommand;
use crate::sip::endpoint::{CallId, EndReason};

pub use self::core::{CallCore, Output};

/// 20 ms of 8 kHz mono PCM.
pub type Frame = [i16; FRAME_SAMPLES];

/// Why a call ended, as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupCause {
    /// The peer hung up (BYE or CANCEL).
    Remote,
    /// We hung up (command or dropped handle).
    Local,
    /// No RTP for the configured time.
    MediaTimeout,
    /// Maximum call duration reached.
    MaxDuration,
    /// Signalling outcome (rejected, no answer, timeout).
    Sip(EndReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// Outbound call: 180/183.
    Progress(u16),
    /// Outbound call answered; media flows.
    Answered,
    /// 20 ms of received audio (real, concealed or silence), every 20 ms.
    Audio(Box<Frame>),
    /// A key press (RFC 4733 or SIP INFO).
    Dtmf(char),
    /// What `Play` queued has been sent completely.
    PlaybackDone,
    /// REFER progress (202, then sipfrag codes from NOTIFY).
    TransferStatus(u16),
    /// No RTP for too long; `HangUp(MediaTimeout)` follows.
    MediaTimeout,
    /// The call's RTP counters, just before `HangUp` (media was set up).
    MediaStats(Box<crate::media::rtp_session::RtpStats>),
    /// Last event of every call.
    HangUp(HangupCause),
}

#[derive(Debug)]
pub enum CallCommand {
    /// Play these samples, replacing whatever is playing (barge-in).
    Play(Vec<i16>),
    /// Append to what is playing (streamed TTS, echo).
    Enqueue(Vec<i16>),
    StopPlaying,
    SendDtmf(char),
    /// Blind transfer by REFER to this SIP URI.
    Transfer(String),
    /// Send our received audio to another leg (its `bridge_port`) instead of
    /// as `Audio` events; the other leg's audio arrives on our port.
    Bridge(mpsc::Sender<Frame>),
    Unbridge,
    Hangup,
}

/// From the SIP task to the call task.
#[derive(Debug)]
pub enum CallSignal {
    Progress(u16),
    Answered(Negotiated),
    Media(Negotiated),
    /// Inbound call: the caller's ACK arrived; media may flow.
    Confirmed,
    Dtmf(char),
    TransferStatus(u16),
    Ended(EndReason),
}

/// The application's end of a call.
pub struct CallHandle {
    pub id: CallId,
    pub commands: mpsc::Sender<CallCommand>,
    pub events: mpsc::Receiver<CallEvent>,
    /// Give this to another leg's `Bridge` command to feed audio into us.
    pub bridge_port: mpsc::Sender<Frame>,
}

impl std::fmt::Debug for CallHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallHandle").field("id", &self.id).finish()
    }
}

/// Connect two legs both ways: media flows through us.
pub async fn bridge(a: &CallHandle, b: &CallHandle) -> bool {
    a.commands.send(CallCommand::Bridge(b.bridge_port.clone())).await.is_ok()
        && b.commands.send(CallCommand::Bridge(a.bridge_port.clone())).await.is_ok()
}

enum CallInput {
    Rtp(SocketAddr, usize),
    Command(Option<CallCommand>),
    Signal(Option<CallSignal>),
    BridgeFrame(Frame),
    Timer,
}

/// Start the task for one call. `media` is known for answered inbound
/// calls; outbound calls get it with `CallSignal::Answered`. `source` says
/// whose RTP is accepted (the SDP's address, or latched behind NAT).
pub fn spawn(
    id: CallId,
    sock: UdpSocket,
    media: Option<Negotiated>,
    cfg: &SipConfig,
    source: SourcePolicy,
    sip: mpsc::Sender<SipCommand>,
) -> (CallHandle, mpsc::UnboundedSender<CallSignal>) {
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::channel(512);
    let (sig_tx, sig_rx) = mpsc::unbounded_channel();
    let (br_tx, br_rx) = mpsc::channel(16);
    let rtp_cfg = RtpConfig { rtp_timeout: Duration::from_secs(cfg.timers.rtp_timeout_s), source, ..RtpConfig::default() };
    let max = Duration::from_secs(cfg.timers.max_call_s);
    let mut core = CallCore::new(Instant::now(), media, rtp_cfg, max, rand::random());
    if media.is_some() {
        // Inbound and answered: nothing is sent before the ACK.
        core.hold_until_confirmed();
    }
    tokio::spawn(run(id, core, sock, cmd_rx, ev_tx, sig_rx, br_rx, sip));
    let handle = CallHandle { id, commands: cmd_tx, events: ev_rx, bridge_port: br_tx };
    (handle, sig_tx)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    id: CallId,
    mut core: CallCore,
    sock: UdpSocket,
    mut cmd_rx: mpsc::Receiver<CallCommand>,
    ev_tx: mpsc::Sender<CallEvent>,
    mut sig_rx: mpsc::UnboundedReceiver<CallSignal>,
    mut br_rx: mpsc::Receiver<Frame>,
    sip: mpsc::Sender<SipCommand>,
) {
    let mut buf = vec![0u8; 2048];
    let mut bridge_to: Option<mpsc::Sender<Frame>> = None;
    let (mut cmd_open, mut sig_open) = (true, true);
    loop {
        let deadline = core.poll_timeout();
        let input = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => CallInput::Rtp(from, n),
                Err(_) => CallInput::Timer,
            },
            c = cmd_rx.recv(), if cmd_open => CallInput::Command(c),
            s = sig_rx.recv(), if sig_open => CallInput::Signal(s),
            Some(f) = br_rx.recv() => CallInput::BridgeFrame(f),
            _ = sleep_until(deadline) => CallInput::Timer,
        };
        let now = Instant::now();
        match input {
            CallInput::Rtp(from, n) => core.handle_datagram(now, from, &buf[..n]),
            CallInput::Command(Some(CallCommand::Bridge(to))) => {
                bridge_to = Some(to);
                core.set_bridged(true);
            }
            CallInput::Command(Some(CallCommand::Unbridge)) => {
                bridge_to = None;
                core.set_bridged(false);
            }
            CallInput::Command(Some(c)) => core.handle_command(now, c),
            // The application dropped its handle: hang up.
            CallInput::Command(None) => {
                cmd_open = false;
                core.handle_command(now, CallCommand::Hangup);
            }
            CallInput::Signal(Some(s)) => core.handle_signal(now, s),
            CallInput::Signal(None) => {
                sig_open = false;
                core.handle_signal(now, CallSignal::Ended(EndReason::Timeout));
            }
            CallInput::BridgeFrame(f) => core.handle_bridge_frame(f),
            CallInput::Timer => core.handle_timeout(now),
        }
        while let Some(out) = core.poll_output(now) {
            match out {
                Output::Send(to, bytes) => {
                    let _ = sock.send_to(&bytes, to).await;
                }
                Output::App(ev) => {
                    // Audio is dropped rather than blocking the call if the
                    // application falls behind; control events are small.
                    let _ = ev_tx.try_send(ev);
                }
                Output::Bridge(f) => {
                    if let Some(b) = &bridge_to {
                        let _ = b.try_send(f);
                    }
                }
                Output::Hangup => {
                    let _ = sip.send(SipCommand::Hangup(id)).await;
                }
                Output::Transfer(target) => {
                    let _ = sip.send(SipCommand::Refer(id, target)).await;
                }
            }
        }
        if core.is_finished() {
            return;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
