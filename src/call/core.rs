//! Pure per-call logic: the 20 ms send clock, playback queue (barge-in),
//! bridging, RTP/duration timeouts. Time is passed in; no sockets.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{CallCommand, CallEvent, CallSignal, Frame, HangupCause};
use crate::media::g711::FRAME_SAMPLES;
use crate::media::rtp_session::{MediaEvent, RtpConfig, RtpSession};
use crate::media::sdp::Negotiated;
use crate::sip::endpoint::EndReason;

const TICK: Duration = Duration::from_millis(20);
/// Bridged audio beyond this many frames is dropped (bounded latency).
const BRIDGE_QUEUE: usize = 6;
const DTMF_DURATION: Duration = Duration::from_millis(100);

/// What the task must do next.
#[derive(Debug)]
pub enum Output {
    Send(SocketAddr, Vec<u8>),
    App(CallEvent),
    Bridge(Frame),
    /// Ask the SIP layer to end the call (BYE/CANCEL).
    Hangup,
    Transfer(String),
}

pub struct CallCore {
    rtp: Option<RtpSession>,
    rtp_cfg: RtpConfig,
    rng: StdRng,
    play: VecDeque<i16>,
    playing: bool,
    bridged: bool,
    bridge_in: VecDeque<Frame>,
    next_tick: Option<Instant>,
    /// An inbound call sends no RTP until the caller's ACK proves it can
    /// receive at the address it signalled (a spoofed INVITE must not turn
    /// us into a 50-packets-a-second reflector towards its victim).
    confirmed: bool,
    end_at: Instant,
    out: VecDeque<Output>,
    finished: bool,
}

impl CallCore {
    pub fn new(now: Instant, media: Option<Negotiated>, rtp_cfg: RtpConfig, max: Duration, seed: u64) -> Self {
        let mut c = CallCore {
            rtp: None,
            rtp_cfg,
            rng: StdRng::seed_from_u64(seed),
            play: VecDeque::new(),
            playing: false,
            bridged: false,
            bridge_in: VecDeque::new(),
            next_tick: None,
            confirmed: true,
            end_at: now + max,
            out: VecDeque::new(),
            finished: false,
        };
        if let Some(m) = media {
            c.start_media(now, m);
        }
        c
    }

    /// Hold media (no RTP sent) until `CallSignal::Confirmed`: for inbound
    /// calls answered before their ACK.
    pub fn hold_until_confirmed(&mut self) {
        self.confirmed = false;
        self.next_tick = None;
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn set_bridged(&mut self, on: bool) {
        self.bridged = on;
        self.bridge_in.clear();
    }

    fn start_media(&mut self, now: Instant, m: Negotiated) {
        match self.rtp.as_mut() {
            Some(r) => r.update_negotiated(m),
            None => {
                self.rtp = Some(RtpSession::new(now, m, self.rtp_cfg, &mut self.rng));
                if self.confirmed {
                    self.next_tick = Some(now + TICK);
                }
            }
        }
    }

    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if let Some(r) = self.rtp.as_mut() {
            // Malformed packets are counted by the session and otherwise ignored.
            let _ = r.handle_datagram(now, from, bytes);
        }
    }

    pub fn handle_bridge_frame(&mut self, f: Frame) {
        if self.bridged {
            if self.bridge_in.len() >= BRIDGE_QUEUE {
                self.bridge_in.pop_front();
            }
            self.bridge_in.push_back(f);
        }
    }

    pub fn handle_command(&mut self, now: Instant, c: CallCommand) {
        if self.finished {
            return;
        }
        match c {
            CallCommand::Play(pcm) => {
                self.play.clear();
                self.play.extend(pcm);
                self.playing = !self.play.is_empty();
            }
            CallCommand::Enqueue(pcm) => {
                self.play.extend(pcm);
                self.playing = !self.play.is_empty();
            }
            CallCommand::StopPlaying => {
                self.play.clear();
                self.playing = false;
            }
            CallCommand::SendDtmf(d) => {
                if let Some(r) = self.rtp.as_mut() {
                    let _ = r.send_dtmf(now, d, DTMF_DURATION);
                }
            }
            CallCommand::Transfer(t) => self.out.push_back(Output::Transfer(t)),
            CallCommand::Bridge(_) => self.set_bridged(true),
            CallCommand::Unbridge => self.set_bridged(false),
            CallCommand::Hangup => self.finish(HangupCause::Local, true),
        }
    }

    pub fn handle_signal(&mut self, now: Instant, s: CallSignal) {
        if self.finished {
            return;
        }
        match s {
            CallSignal::Progress(code) => self.out.push_back(Output::App(CallEvent::Progress(code))),
            CallSignal::Answered(m) => {
                self.start_media(now, m);
                self.out.push_back(Output::App(CallEvent::Answered));
            }
            CallSignal::Media(m) => self.start_media(now, m),
            CallSignal::Confirmed => {
                self.confirmed = true;
                if self.rtp.is_some() && self.next_tick.is_none() {
                    self.next_tick = Some(now + TICK);
                }
            }
            CallSignal::Dtmf(d) => self.out.push_back(Output::App(CallEvent::Dtmf(d))),
            CallSignal::TransferStatus(c) => self.out.push_back(Output::App(CallEvent::TransferStatus(c))),
            CallSignal::Ended(reason) => {
                let cause = match reason {
                    EndReason::RemoteBye | EndReason::Cancelled => HangupCause::Remote,
                    EndReason::LocalBye => HangupCause::Local,
                    r => HangupCause::Sip(r),
                };
                self.finish(cause, false);
            }
        }
    }

    fn finish(&mut self, cause: HangupCause, tell_sip: bool) {
        if tell_sip {
            self.out.push_back(Output::Hangup);
        }
        if let Some(stats) = self.rtp_stats() {
            self.out.push_back(Output::App(CallEvent::MediaStats(Box::new(stats))));
        }
        self.out.push_back(Output::App(CallEvent::HangUp(cause)));
        self.finished = true;
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        if now >= self.end_at {
            return self.finish(HangupCause::MaxDuration, true);
        }
        if let Some(t) = self.next_tick.filter(|t| *t <= now) {
            let frame = self.next_frame();
            if let Some(r) = self.rtp.as_mut() {
                r.send_frame(&frame);
            }
            // Stay on the 20 ms grid; if we fell far behind, restart it.
            let next = t + TICK;
            self.next_tick = Some(if next + 5 * TICK < now { now + TICK } else { next });
        }
    }

    fn next_frame(&mut self) -> Frame {
        let mut f = [0i16; FRAME_SAMPLES];
        if self.playing {
            for s in f.iter_mut() {
                match self.play.pop_front() {
                    Some(v) => *s = v,
                    None => break,
                }
            }
            if self.play.is_empty() {
                self.playing = false;
                self.out.push_back(Output::App(CallEvent::PlaybackDone));
            }
        } else if let Some(b) = self.bridge_in.pop_front() {
            f = b;
        }
        f
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let rtp = self.rtp.as_ref().and_then(|r| r.poll_timeout());
        [self.next_tick, rtp, Some(self.end_at)].into_iter().flatten().min()
    }

    /// Drain everything due at `now`: media events, packets, then outputs.
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        if self.finished {
            return None;
        }
        let rtp = self.rtp.as_mut()?;
        if let Some(ev) = rtp.poll_event(now) {
            match ev {
                MediaEvent::Frame(f) if self.bridged => self.out.push_back(Output::Bridge(f)),
                MediaEvent::Frame(f) => self.out.push_back(Output::App(CallEvent::Audio(Box::new(f)))),
                MediaEvent::Dtmf(d) => self.out.push_back(Output::App(CallEvent::Dtmf(d.digit))),
                MediaEvent::Timeout => {
                    self.out.push_back(Output::App(CallEvent::MediaTimeout));
                    self.finish(HangupCause::MediaTimeout, true);
                }
            }
            return self.out.pop_front();
        }
        let rtp = self.rtp.as_mut()?;
        if let Some((to, bytes)) = rtp.poll_transmit(now) {
            return Some(Output::Send(to, bytes));
        }
        None
    }

    pub fn rtp_stats(&self) -> Option<crate::media::rtp_session::RtpStats> {
        self.rtp.as_ref().map(|r| r.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sdp::{Codec, Direction};

    fn neg() -> Negotiated {
        Negotiated {
            codec: Codec::Pcmu,
            codec_pt: 0,
            dtmf_pt: Some(101),
            remote: "127.0.0.1:4000".parse().unwrap(),
            direction: Direction::SendRecv,
            ptime: 20,
            srtp: None,
        }
    }

    fn drain(c: &mut CallCore, now: Instant) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output(now)).collect()
    }

    #[test]
    fn plays_then_reports_done_and_barge_in_replaces() {
        let t0 = Instant::now();
        let mut c = CallCore::new(t0, Some(neg()), RtpConfig::default(), Duration::from_secs(60), 1);
        c.handle_command(t0, CallCommand::Play(vec![1000; 320]));
        c.handle_command(t0, CallCommand::Play(vec![500; 160]));
        let mut now = t0;
        let mut sent = 0;
        let mut done = 0;
        for _ in 0..3 {
            now += TICK;
            c.handle_timeout(now);
            for o in drain(&mut c, now) {
                match o {
                    Output::Send(_, _) => sent += 1,
                    Output::App(CallEvent::PlaybackDone) => done += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(sent, 3, "one packet per 20 ms, silence included");
        assert_eq!(done, 1, "only the replacing prompt (one frame) completes");
    }

    #[test]
    fn with_srtp_every_packet_sent_is_protected() {
        use crate::media::srtp::{SrtpContexts, SrtpParams, SrtpSuite};
        let ours = SrtpParams { suite: SrtpSuite::AeadAes128Gcm, tx: [1; 30], rx: [2; 30] };
        let mut peer = SrtpContexts::new(&SrtpParams { tx: ours.rx, rx: ours.tx, ..ours }).unwrap();
        let t0 = Instant::now();
        let mut c = CallCore::new(t0, Some(Negotiated { srtp: Some(ours), ..neg() }), RtpConfig::default(), Duration::from_secs(60), 1);
        c.handle_command(t0, CallCommand::SendDtmf('4'));
        let mut now = t0;
        let mut sent = 0;
        for _ in 0..10 {
            now += TICK;
            c.handle_timeout(now);
            for o in drain(&mut c, now) {
                if let Output::Send(_, bytes) = o {
                    let plain = peer.unprotect_rtp(&bytes).expect("SRTP the peer can read");
                    assert_eq!(bytes.len(), plain.len() + 16);
                    sent += 1;
                }
            }
        }
        assert!(sent >= 5, "{sent}");
        // A stranger's datagram is counted, not played.
        c.handle_datagram(now, "127.0.0.1:4000".parse().unwrap(), &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0xFF, 0xFF]);
        assert_eq!(c.rtp_stats().unwrap().srtp_failed, 1);
    }

    #[test]
    fn rtp_timeout_and_max_duration_hang_up() {
        let t0 = Instant::now();
        let cfg = RtpConfig { rtp_timeout: Duration::from_secs(2), ..RtpConfig::default() };
        let mut c = CallCore::new(t0, Some(neg()), cfg, Duration::from_secs(60), 1);
        let mut now = t0;
        let mut outs = Vec::new();
        while !c.is_finished() && now < t0 + Duration::from_secs(5) {
            now = c.poll_timeout().unwrap();
            c.handle_timeout(now);
            outs.extend(drain(&mut c, now));
        }
        assert!(outs.iter().any(|o| matches!(o, Output::App(CallEvent::MediaTimeout))));
        assert!(outs.iter().any(|o| matches!(o, Output::Hangup)));
        let mut c = CallCore::new(t0, None, cfg, Duration::from_secs(1), 1);
        let now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        let outs = drain(&mut c, now);
        assert!(outs.iter().any(|o| matches!(o, Output::App(CallEvent::HangUp(HangupCause::MaxDuration)))));
    }
}
