//! Endpointing and barge-in: turns 8 kHz caller audio into utterances.
//!
//! A sans-IO state machine. Feed it caller audio with [`Endpointer::handle_audio`]
//! (any length; it re-frames into 20 ms), tell it when a prompt starts and
//! stops playing, and drain [`EndpointEvent`]s with `poll_event`. All
//! durations are counted in audio (frames), so the result does not depend
//! on scheduling jitter; `now` only stamps events with wall time. It
//! assumes a continuous stream: the jitter buffer fills losses with
//! concealment or silence, so time never stalls while the line is up.
//!
//! It does not know about echo: if the prompt leaks back from the line, the
//! media layer's echo handling (or a non-interruptible prompt) must cope.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::vad::{VoiceDetector, FRAME, RATE};

const FRAME_MS: u32 = 20;
/// Unvoiced frames a barge-in burst may contain (VADs flicker mid-word).
const MAX_BURST_GAP: u32 = 2;

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Voiced audio needed before an utterance starts (so a click does not).
    pub onset: Duration,
    /// Silence after speech that ends an utterance; adjustable at run time
    /// with [`Endpointer::set_patience`].
    pub patience: Duration,
    /// Utterances with less voiced audio than this are dropped (coughs,
    /// line clicks); they end with [`EndpointEvent::Discarded`].
    pub min_speech: Duration,
    /// Longest utterance; longer speech is cut and a new one started.
    pub max_utterance: Duration,
    /// Continuous voiced audio (gaps up to 40 ms bridged), while an
    /// interruptible prompt plays, that counts as the caller barging in.
    /// Continuous, so a click and a cough half a second apart do not add up.
    pub barge_in: Duration,
    /// Audio kept before the onset so the first phoneme is not clipped.
    pub pre_roll: Duration,
    /// Silence kept after the last voiced frame (the rest of the hang-over
    /// is trimmed: it costs recognition time and invites hallucinations).
    pub tail: Duration,
    /// A pause this long (shorter than `patience`, at least `tail`) is
    /// announced with [`EndpointEvent::Paused`], so recognition can start
    /// while the endpointer still waits to be sure the turn is over: the
    /// rest of the patience period then hides the decoding time. `None`:
    /// no early pauses. Only at the default patience (a caller dictating a
    /// date of birth pauses often and is given longer).
    pub early: Option<Duration>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            onset: Duration::from_millis(60),
            patience: Duration::from_millis(700),
            min_speech: Duration::from_millis(200),
            max_utterance: Duration::from_secs(15),
            barge_in: Duration::from_millis(200),
            pre_roll: Duration::from_millis(200),
            tail: Duration::from_millis(200),
            early: Some(Duration::from_millis(250)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller was silent for the patience period.
    Silence,
    /// The utterance hit `max_utterance` and was cut.
    MaxLength,
}

#[derive(Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    /// The caller began speaking; `at` is the start of the first voiced frame.
    SpeechStarted { at: Instant },
    /// A complete utterance (8 kHz PCM with pre-roll and a short tail).
    UtteranceEnded {
        samples: Vec<i16>,
        /// Start of the first and end of the last voiced frame.
        speech_start: Instant,
        speech_end: Instant,
        reason: EndReason,
    },
    /// The caller paused for `early`: if the utterance ends without more
    /// speech, its `UtteranceEnded` will carry these very samples and this
    /// `speech_end`. Recognition may start now; a later `UtteranceEnded`
    /// with another `speech_end` means the caller went on.
    Paused { samples: Vec<i16>, speech_end: Instant },
    /// Speech started but was too short to be an utterance.
    Discarded { voiced: Duration },
    /// The caller talked over an interruptible prompt: stop playing it.
    /// `latency` runs from the speech onset to this decision.
    BargeIn { at: Instant, latency: Duration },
}

// By hand so that logs show an utterance's length, not 50,000 samples.
impl std::fmt::Debug for EndpointEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SpeechStarted { at } => f.debug_struct("SpeechStarted").field("at", at).finish(),
            Self::UtteranceEnded { samples, speech_start, speech_end, reason } => f
                .debug_struct("UtteranceEnded")
                .field("samples", &samples.len())
                .field("speech", &speech_end.saturating_duration_since(*speech_start))
                .field("reason", reason)
                .finish(),
            Self::Paused { samples, speech_end } => {
                f.debug_struct("Paused").field("samples", &samples.len()).field("speech_end", speech_end).finish()
            }
            Self::Discarded { voiced } => f.debug_struct("Discarded").field("voiced", voiced).finish(),
            Self::BargeIn { at, latency } => f.debug_struct("BargeIn").field("at", at).field("latency", latency).finish(),
        }
    }
}

/// Whether a prompt is playing and whether the caller may cut it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Silent,
    Playing { interruptible: bool },
}

pub struct Endpointer<V> {
    vad: V,
    cfg: EndpointConfig,
    patience_frames: u32,
    prompt: Prompt,
    state: State,
    /// Samples not yet forming a whole frame.
    partial: Vec<i16>,
    /// Recent audio while idle (pre-roll plus the onset run).
    history: VecDeque<i16>,
    events: VecDeque<EndpointEvent>,
}

enum State {
    /// No utterance; `run` consecutive voiced frames so far, the first of
    /// which started at `run_start`.
    Idle {
        run: u32,
        run_start: Option<Instant>,
    },
    Speaking(Utterance),
}

struct Utterance {
    speech_start: Instant,
    last_voiced_end: Instant,
    samples: Vec<i16>,
    voiced: u32,
    silence: u32,
    /// The current voiced burst for barge-in: its length and start.
    burst: u32,
    burst_start: Instant,
    /// Length of `samples` up to the end of the last voiced frame.
    voiced_len: usize,
    barged: bool,
}

impl<V: VoiceDetector> Endpointer<V> {
    pub fn new(vad: V, cfg: EndpointConfig) -> Self {
        Self {
            vad,
            patience_frames: frames(cfg.patience),
            cfg,
            prompt: Prompt::Silent,
            state: State::Idle { run: 0, run_start: None },
            partial: Vec::with_capacity(FRAME),
            history: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Feeds caller audio; `now` is when its last sample arrived.
    pub fn handle_audio(&mut self, now: Instant, pcm: &[i16]) {
        let total = self.partial.len() + pcm.len();
        let mut consumed = self.partial.len();
        for &s in pcm {
            self.partial.push(s);
            consumed += 1;
            if self.partial.len() == FRAME {
                // This frame ends `total - consumed` samples before `now`.
                let end = now.checked_sub(samples_to_duration(total - consumed)).unwrap_or(now);
                let frame: [i16; FRAME] = self.partial[..].try_into().expect("partial holds exactly one frame here");
                self.partial.clear();
                self.handle_frame(end, &frame);
            }
        }
    }

    /// Hang-over for the next utterances, e.g. 2 s while the caller
    /// dictates a date of birth or a phone number in chunks.
    pub fn set_patience(&mut self, patience: Duration) {
        self.patience_frames = frames(patience).max(1);
    }

    /// Back to the configured hang-over.
    pub fn reset_patience(&mut self) {
        self.patience_frames = frames(self.cfg.patience).max(1);
    }

    pub fn patience(&self) -> Duration {
        Duration::from_millis(u64::from(self.patience_frames * FRAME_MS))
    }

    /// The call started or stopped playing a prompt.
    pub fn set_prompt(&mut self, prompt: Prompt) {
        self.prompt = prompt;
        // A new prompt can be barged in on even mid-utterance.
        if let State::Speaking(u) = &mut self.state {
            u.barged = false;
        }
    }

    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking(_))
    }

    /// Drops any utterance in progress and VAD adaptation (new call).
    pub fn reset(&mut self) {
        self.vad.reset();
        self.state = State::Idle { run: 0, run_start: None };
        self.partial.clear();
        self.history.clear();
        self.events.clear();
        self.prompt = Prompt::Silent;
        self.reset_patience();
    }

    fn handle_frame(&mut self, end: Instant, frame: &[i16; FRAME]) {
        let voiced = self.vad.is_speech(frame);
        let start = end.checked_sub(Duration::from_millis(u64::from(FRAME_MS))).unwrap_or(end);
        match &mut self.state {
            State::Idle { run, run_start } => {
                self.history.extend(frame);
                let keep = duration_to_samples(self.cfg.pre_roll) + *run as usize * FRAME + FRAME;
                while self.history.len() > keep {
                    self.history.pop_front();
                }
                if !voiced {
                    *run = 0;
                    *run_start = None;
                    return;
                }
                *run += 1;
                let first = *run_start.get_or_insert(start);
                if *run >= frames(self.cfg.onset).max(1) {
                    let samples: Vec<i16> = self.history.drain(..).collect();
                    let u = Utterance {
                        speech_start: first,
                        last_voiced_end: end,
                        voiced_len: samples.len(),
                        samples,
                        voiced: *run,
                        silence: 0,
                        burst: *run,
                        burst_start: first,
                        barged: false,
                    };
                    self.events.push_back(EndpointEvent::SpeechStarted { at: first });
                    self.state = State::Speaking(u);
                    self.check_barge_in(end);
                }
            }
            State::Speaking(u) => {
                u.samples.extend_from_slice(frame);
                if voiced {
                    if u.silence > MAX_BURST_GAP {
                        u.burst = 0;
                        u.burst_start = start;
                    }
                    u.burst += 1;
                    u.voiced += 1;
                    u.silence = 0;
                    u.voiced_len = u.samples.len();
                    u.last_voiced_end = end;
                } else {
                    u.silence += 1;
                }
                let early = self.cfg.early.map(|e| frames(e.max(self.cfg.tail)));
                let at_default_patience = self.patience_frames == frames(self.cfg.patience);
                if !voiced && Some(u.silence) == early && early < Some(self.patience_frames) && at_default_patience {
                    let voiced_ms = Duration::from_millis(u64::from(u.voiced * FRAME_MS));
                    if voiced_ms >= self.cfg.min_speech {
                        let keep = (u.voiced_len + duration_to_samples(self.cfg.tail)).min(u.samples.len());
                        self.events.push_back(EndpointEvent::Paused { samples: u.samples[..keep].to_vec(), speech_end: u.last_voiced_end });
                    }
                }
                let max = duration_to_samples(self.cfg.max_utterance);
                if u.silence >= self.patience_frames {
                    self.finish(EndReason::Silence);
                } else if u.samples.len() >= max {
                    self.finish(EndReason::MaxLength);
                    if voiced {
                        // Still talking: carry straight on into a new one.
                        self.state = State::Speaking(Utterance {
                            speech_start: end,
                            last_voiced_end: end,
                            samples: Vec::new(),
                            voiced: 0,
                            silence: 0,
                            burst: 0,
                            burst_start: end,
                            voiced_len: 0,
                            barged: true,
                        });
                        self.events.push_back(EndpointEvent::SpeechStarted { at: end });
                    }
                } else if voiced {
                    self.check_barge_in(end);
                }
            }
        }
    }

    fn check_barge_in(&mut self, now: Instant) {
        let State::Speaking(u) = &mut self.state else { return };
        if u.barged || self.prompt != (Prompt::Playing { interruptible: true }) {
            return;
        }
        if u.burst >= frames(self.cfg.barge_in).max(1) {
            u.barged = true;
            self.events.push_back(EndpointEvent::BargeIn { at: now, latency: now.saturating_duration_since(u.burst_start) });
        }
    }

    fn finish(&mut self, reason: EndReason) {
        let state = std::mem::replace(&mut self.state, State::Idle { run: 0, run_start: None });
        let State::Speaking(mut u) = state else { return };
        let voiced = Duration::from_millis(u64::from(u.voiced * FRAME_MS));
        if voiced < self.cfg.min_speech {
            self.events.push_back(EndpointEvent::Discarded { voiced });
            return;
        }
        u.samples.truncate(u.voiced_len + duration_to_samples(self.cfg.tail));
        self.events.push_back(EndpointEvent::UtteranceEnded {
            samples: u.samples,
            speech_start: u.speech_start,
            speech_end: u.last_voiced_end,
            reason,
        });
    }
}

/// Whole frames in `d`, rounded up (a 150 ms rule needs 8 frames, not 7).
fn frames(d: Duration) -> u32 {
    let ms = d.as_millis().min(u128::from(u32::MAX / 2)) as u32;
    ms.div_ceil(FRAME_MS)
}

fn duration_to_samples(d: Duration) -> usize {
    (d.as_millis().min(3_600_000) as usize) * RATE as usize / 1000
}

fn samples_to_duration(n: usize) -> Duration {
    Duration::from_micros(n as u64 * 1_000_000 / u64::from(RATE))
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
