//! Answering-machine detection for outbound calls: in the first seconds
//! after the callee answers, is it a person or a voicemail greeting, and if
//! a machine, when should our message start?
//!
//! Sans-IO: 20 ms frames of 8 kHz audio go in through
//! [`VoicemailDetector::handle_frame`] with their frame number since the
//! answer (time is the frame count, so lost frames are just a jump), and
//! [`Event`]s come out of `poll_event`. No clock, no I/O.
//!
//! The rules, after Asterisk's AMD and common practice:
//! - **Human**: a short greeting ("¿Sí? ¿Dígame?", at most
//!   [`Config::human_max_greeting_ms`] from its first to its last word)
//!   followed by [`Config::human_silence_ms`] of silence: people say a word
//!   and wait for an answer.
//! - **Machine**: speech that goes on past [`Config::machine_speech_ms`]
//!   (pauses shorter than the human silence do not break it), or a beep.
//!   The message starts after the beep (a steady single tone of 400–2000 Hz
//!   for at least [`Config::beep_min_ms`], found by zero crossings and
//!   confirmed with Goertzel), else after [`Config::greeting_end_silence_ms`]
//!   of silence once the greeting ends, and at the latest at
//!   [`Config::message_cap_ms`].
//! - **Unknown**: nothing decided by [`Config::decide_cap_ms`] (silence,
//!   noise, a medium-length greeting and then nothing). The call layer treats
//!   it like a person: the outbound conversation says nothing private before
//!   the patient is verified, so a machine that hears it learns nothing.
//!
//! Uses the product's VAD ([`super::vad`]); tone frames never count as
//! speech (WebRTC's VAD calls a beep voiced).

use std::collections::VecDeque;
use std::f32::consts::PI;

use super::vad::{energy_db, VoiceDetector, WebRtcVad, FRAME, RATE};

/// Milliseconds in one frame.
pub const FRAME_MS: u64 = 20;

/// Thresholds, in milliseconds from the answer.
#[derive(Debug, Clone)]
pub struct Config {
    pub human_max_greeting_ms: u64,
    pub human_silence_ms: u64,
    pub machine_speech_ms: u64,
    pub beep_min_ms: u64,
    pub greeting_end_silence_ms: u64,
    pub decide_cap_ms: u64,
    pub message_cap_ms: u64,
    /// Consecutive speech that counts as someone talking (not a click).
    pub min_speech_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            human_max_greeting_ms: 2_000,
            human_silence_ms: 800,
            machine_speech_ms: 3_500,
            beep_min_ms: 150,
            greeting_end_silence_ms: 1_500,
            decide_cap_ms: 6_000,
            message_cap_ms: 30_000,
            min_speech_ms: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Human,
    Machine,
    /// Nothing clear by the cap: go on as with a person.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Who answered, decided at frame `at`.
    Decided { verdict: Verdict, at: u64 },
    /// Machine only: start the message with frame `at` (after the beep
    /// when `after_beep`, else after the greeting or at the cap).
    StartMessage { at: u64, after_beep: bool },
}

/// One outbound call's detector. See the module docs.
pub struct VoicemailDetector<V: VoiceDetector = WebRtcVad> {
    vad: V,
    cfg: Config,
    events: VecDeque<Event>,
    verdict: Option<Verdict>,
    done: bool,
    /// Consecutive speech frames not yet counted as an onset.
    pending_speech: u64,
    first_speech: Option<u64>,
    last_speech: Option<u64>,
    /// The running tone: (first frame, last frame, frequency).
    tone: Option<(u64, u64, f32)>,
    beep_heard: bool,
}

impl VoicemailDetector<WebRtcVad> {
    pub fn new(cfg: Config) -> Self {
        VoicemailDetector::with_vad(WebRtcVad::default(), cfg)
    }
}

impl<V: VoiceDetector> VoicemailDetector<V> {
    pub fn with_vad(vad: V, cfg: Config) -> Self {
        VoicemailDetector {
            vad,
            cfg,
            events: VecDeque::new(),
            verdict: None,
            done: false,
            pending_speech: 0,
            first_speech: None,
            last_speech: None,
            tone: None,
            beep_heard: false,
        }
    }

    /// Frame number `n` (0 = the first frame after the answer).
    pub fn handle_frame(&mut self, n: u64, frame: &[i16; FRAME]) {
        if self.done {
            return;
        }
        let tone = tone_frequency(frame);
        self.track_tone(n, tone);
        // A tone is never speech, but keeps the greeting "going".
        let speech = tone.is_none() && self.vad.is_speech(frame);
        self.track_speech(n, speech);
        self.decide(n);
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What was decided so far.
    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
    }

    /// True once nothing more will come (a person, unknown, or the message
    /// start given).
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn ms(&self, frames: u64) -> u64 {
        frames * FRAME_MS
    }

    fn track_tone(&mut self, n: u64, tone: Option<f32>) {
        let min_frames = self.cfg.beep_min_ms.div_ceil(FRAME_MS).saturating_sub(1).max(1);
        match (self.tone, tone) {
            // The same tone goes on.
            (Some((start, last, f0)), Some(f)) if n <= last + 1 && (f - f0).abs() < 40.0 => self.tone = Some((start, n, f0)),
            (running, now) => {
                // A beep that lasted long enough just ended: the message starts now.
                if let Some((start, last, _)) = running {
                    if last + 1 - start >= min_frames {
                        self.beep_heard = true;
                        self.machine(n);
                        self.start_message(n, true);
                    }
                }
                self.tone = now.map(|f| (n, n, f));
            }
        }
    }

    fn track_speech(&mut self, n: u64, speech: bool) {
        if !speech {
            self.pending_speech = 0;
            return;
        }
        self.pending_speech += 1;
        let min = self.cfg.min_speech_ms.div_ceil(FRAME_MS).max(1);
        if self.first_speech.is_some() {
            self.last_speech = Some(n);
        } else if self.pending_speech >= min {
            self.first_speech = Some(n + 1 - self.pending_speech);
            self.last_speech = Some(n);
        }
    }

    fn decide(&mut self, n: u64) {
        if self.done {
            return;
        }
        let since_answer = self.ms(n + 1);
        // A tone in progress is not silence.
        let quiet_since = match (self.last_speech, self.tone) {
            (_, Some(_)) => None,
            (Some(last), None) => Some(self.ms(n - last)),
            (None, None) => None,
        };
        let span = match (self.first_speech, self.last_speech) {
            (Some(a), Some(b)) => Some(self.ms(b + 1 - a)),
            _ => None,
        };
        match self.verdict {
            None => {
                if let (Some(span), Some(quiet)) = (span, quiet_since) {
                    if span <= self.cfg.human_max_greeting_ms && quiet >= self.cfg.human_silence_ms {
                        return self.conclude(Verdict::Human, n);
                    }
                }
                if span.is_some_and(|s| s > self.cfg.machine_speech_ms) {
                    return self.machine(n);
                }
                if since_answer >= self.cfg.decide_cap_ms {
                    self.conclude(Verdict::Unknown, n);
                }
            }
            Some(Verdict::Machine) => {
                let greeting_over = quiet_since.is_some_and(|q| q >= self.cfg.greeting_end_silence_ms);
                if greeting_over || since_answer >= self.cfg.message_cap_ms {
                    self.start_message(n + 1, false);
                }
            }
            Some(_) => {}
        }
    }

    fn machine(&mut self, n: u64) {
        if self.verdict.is_none() {
            self.verdict = Some(Verdict::Machine);
            self.events.push_back(Event::Decided { verdict: Verdict::Machine, at: n });
        }
    }

    fn conclude(&mut self, verdict: Verdict, n: u64) {
        self.verdict = Some(verdict);
        self.events.push_back(Event::Decided { verdict, at: n });
        self.done = true;
    }

    fn start_message(&mut self, at: u64, after_beep: bool) {
        if !self.done {
            self.events.push_back(Event::StartMessage { at, after_beep });
            self.done = true;
        }
    }
}

/// The frequency of a frame that is one steady tone of 400–2000 Hz, loud
/// enough to be a beep; `None` for speech, noise and silence. The zero
/// crossings (interpolated) give the frequency, a Goertzel filter at it
/// checks that nearly all the frame's energy is there.
pub fn tone_frequency(frame: &[i16]) -> Option<f32> {
    if frame.len() < 32 || energy_db(frame) < -45.0 {
        return None;
    }
    let mean = frame.iter().map(|&s| f32::from(s)).sum::<f32>() / frame.len() as f32;
    let x: Vec<f32> = frame.iter().map(|&s| f32::from(s) - mean).collect();
    let crossings: Vec<f32> =
        x.windows(2).enumerate().filter(|(_, w)| (w[0] < 0.0) != (w[1] < 0.0)).map(|(i, w)| i as f32 + w[0] / (w[0] - w[1])).collect();
    let (first, last) = (*crossings.first()?, *crossings.last()?);
    if crossings.len() < 4 || last <= first {
        return None;
    }
    let f = (crossings.len() - 1) as f32 / (2.0 * (last - first)) * RATE as f32;
    if !(400.0..=2000.0).contains(&f) {
        return None;
    }
    // Goertzel at f: the share of the frame's energy in that one frequency
    // (1.0 for a pure tone).
    let coeff = 2.0 * (2.0 * PI * f / RATE as f32).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in &x {
        let s = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let total: f32 = x.iter().map(|v| v * v).sum();
    let share = 2.0 * power / (x.len() as f32 * total);
    (share >= 0.8).then_some(f)
}

#[cfg(test)]
#[path = "voicemail_tests.rs"]
mod tests;
