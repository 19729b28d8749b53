//! Frame-level voice activity detection for 8 kHz phone audio.
//!
//! Choice: WebRTC's VAD (the `webrtc-vad` crate, libfvad) rather than Silero
//! through whisper.cpp. Reasons, in order:
//! - It is streaming by construction: one decision per 20 ms frame with
//!   state carried across frames, at the phone's own 8 kHz. whisper.cpp's
//!   Silero API detects over a whole buffer (it resets its LSTM state per
//!   call), so a live call would need re-feeding overlapping windows.
//! - Cost: ~5 µs per frame, against ~12 ms per second of audio for Silero
//!   in ggml — 50 concurrent calls stay under 1 % of one core.
//! - It builds from C in seconds with no model file to provision.
//! A noise-floor gate sits on top: a frame only counts as speech if WebRTC
//! says so *and* its 100 ms energy stands [`Config::floor_margin_db`] above
//! a minimum-statistics estimate of the line's noise floor.
//!
//! Measured (`tests/vad_noise.rs`, espeak speech at 8 kHz, 10 dB SNR):
//! white noise — plain mode 3: recall 96 %, false alarms 1.2 %; with the
//! 3 dB gate: 91 % / 0.2 %. Babble (five talkers) — 88–92 % false alarms
//! for every setting: babble *is* speech, and no frame classifier (Silero
//! included) can tell a caller from talkers behind them by spectrum alone.
//! What protects us there is downstream: the endpointer's minimum speech
//! and barge-in persistence, and the recogniser's no-speech probability and
//! phantom-phrase guards. Level-based separation (the caller is usually
//! much louder than the room) would be the next step.
//!
//! This module only classifies frames; turning decisions into utterances is
//! [`super::endpoint`]'s job.

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
/// Phone sample rate.
pub const RATE: u32 = 8_000;

/// Anything that can label 20 ms frames of 8 kHz audio as speech.
pub trait VoiceDetector: Send {
    fn is_speech(&mut self, frame: &[i16; FRAME]) -> bool;
    /// Forget adaptation state (new call).
    fn reset(&mut self);
}

/// How strict the WebRTC classifier is (libfvad modes 0–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggressiveness {
    Quality,
    LowBitrate,
    Aggressive,
    VeryAggressive,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Aggressiveness,
    /// Frames must be this many dB above the noise floor; `None` disables
    /// the gate (plain WebRTC).
    pub floor_margin_db: Option<f32>,
}

impl Default for Config {
    fn default() -> Self {
        Self { mode: Aggressiveness::VeryAggressive, floor_margin_db: Some(3.0) }
    }
}

/// WebRTC VAD plus the noise-floor gate.
pub struct WebRtcVad {
    inner: Fvad,
    cfg: Config,
    floor: NoiseFloor,
}

impl WebRtcVad {
    pub fn new(cfg: Config) -> Self {
        Self { inner: Fvad::new(cfg.mode), cfg, floor: NoiseFloor::default() }
    }
}

impl Default for WebRtcVad {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl VoiceDetector for WebRtcVad {
    fn is_speech(&mut self, frame: &[i16; FRAME]) -> bool {
        let e = energy_db(frame);
        let voiced = self.inner.process(frame);
        // The floor is read before this frame joins it, so a loud onset
        // is compared against the line as it was.
        let floor = self.floor.level();
        self.floor.update(e);
        let above = match self.cfg.floor_margin_db {
            Some(m) => self.floor.smoothed() > floor + m,
            None => true,
        };
        voiced && above
    }

    fn reset(&mut self) {
        self.inner = Fvad::new(self.cfg.mode);
        self.floor = NoiseFloor::default();
    }
}

/// Mean power of a frame in dB relative to full scale (silence = -100).
pub fn energy_db(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return -100.0;
    }
    let p = frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / frame.len() as f64;
    (10.0 * (p / 32768f64.powi(2)).max(1e-10).log10()) as f32
}

/// Noise floor by minimum statistics: the lowest single-frame energy seen
/// in the last [`NoiseFloor::BLOCKS`] × 200 ms. Single frames catch the
/// short gaps inside speech (stop closures, breaths), so a long utterance
/// does not lift the floor into itself, while a line that gets noisier is
/// followed within the window. The gate compares a 100 ms moving average
/// against it, which smooths the noise's own frame-to-frame jitter.
#[derive(Debug, Clone, Default)]
struct NoiseFloor {
    /// Minimum of each finished 200 ms block, newest last.
    blocks: std::collections::VecDeque<f32>,
    current: Option<f32>,
    in_block: usize,
    /// Last few frame powers (linear) for the moving average.
    recent: std::collections::VecDeque<f64>,
}

impl NoiseFloor {
    const BLOCK_FRAMES: usize = 10;
    const BLOCKS: usize = 15;
    const SMOOTH_FRAMES: usize = 5;

    fn level(&self) -> f32 {
        let m = self.blocks.iter().chain(&self.current).copied().fold(f32::INFINITY, f32::min);
        // Until it has seen a frame, assume a quiet line.
        if m.is_finite() {
            m
        } else {
            -70.0
        }
    }

    /// 100 ms average energy in dB, including the frame just pushed.
    fn smoothed(&self) -> f32 {
        let p = self.recent.iter().sum::<f64>() / self.recent.len().max(1) as f64;
        (10.0 * p.max(1e-10).log10()) as f32
    }

    fn update(&mut self, e: f32) {
        self.recent.push_back(10f64.powf(f64::from(e) / 10.0));
        if self.recent.len() > Self::SMOOTH_FRAMES {
            self.recent.pop_front();
        }
        self.current = Some(self.current.map_or(e, |c| c.min(e)));
        self.in_block += 1;
        if self.in_block == Self::BLOCK_FRAMES {
            self.blocks.extend(self.current.take());
            self.in_block = 0;
            if self.blocks.len() > Self::BLOCKS {
                self.blocks.pop_front();
            }
        }
    }
}

/// Owner of one libfvad instance.
struct Fvad(webrtc_vad::Vad);

// SAFETY: libfvad's state is a heap block owned exclusively by this value,
// with no thread-local or global state; moving it between threads (a call
// task migrating across tokio workers) is sound. It is not shared (no Sync).
unsafe impl Send for Fvad {}

impl Fvad {
    fn new(mode: Aggressiveness) -> Self {
        use webrtc_vad::{SampleRate, Vad, VadMode};
        let m = match mode {
            Aggressiveness::Quality => VadMode::Quality,
            Aggressiveness::LowBitrate => VadMode::LowBitrate,
            Aggressiveness::Aggressive => VadMode::Aggressive,
            Aggressiveness::VeryAggressive => VadMode::VeryAggressive,
        };
        Self(Vad::new_with_rate_and_mode(SampleRate::Rate8kHz, m))
    }

    fn process(&mut self, frame: &[i16; FRAME]) -> bool {
        // 160 samples at 8 kHz is a valid libfvad frame, so Err cannot
        // happen; treat it as non-speech rather than panic.
        self.0.is_voice_segment(frame).unwrap_or(false)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn frames(x: &[i16]) -> impl Iterator<Item = &[i16; FRAME]> {
        x.chunks_exact(FRAME).map(|c| c.try_into().expect("chunks_exact"))
    }

    /// Crude synthetic speech: 4 syllables per second, each a pitch glide
    /// through two moving resonances, with an amplitude envelope. WebRTC
    /// adapts away a perfectly steady tone, so the sound has to move.
    pub(crate) fn babble_syllables(secs: f32, amp: f32) -> Vec<i16> {
        use std::f32::consts::PI;
        let n = (secs * RATE as f32) as usize;
        let syl = RATE as usize / 4;
        let mut st = [[0.0f32; 2]; 2];
        let mut phase = 0.0f32;
        (0..n)
            .map(|i| {
                let k = i / syl;
                let t = (i % syl) as f32 / syl as f32;
                let f0 = 110.0 + 40.0 * ((k % 3) as f32) + 30.0 * t;
                phase += f0 / RATE as f32;
                let pulse = if phase >= 1.0 {
                    phase -= 1.0;
                    1.0
                } else {
                    0.0
                };
                let formants = [500.0 + 300.0 * ((k % 4) as f32) * t, 1500.0 + 400.0 * (k % 2) as f32];
                let mut y = 0.0;
                for (j, f) in formants.iter().enumerate() {
                    let r = 0.96f32;
                    let c = 2.0 * r * (2.0 * PI * f / RATE as f32).cos();
                    let v = pulse + c * st[j][0] - r * r * st[j][1];
                    st[j] = [v, st[j][0]];
                    y += v;
                }
                let env = (PI * t).sin();
                (y * env * amp * 2000.0).clamp(-32000.0, 32000.0) as i16
            })
            .collect()
    }

    #[test]
    fn silence_is_not_speech_and_a_vowel_is() {
        let mut v = WebRtcVad::default();
        let quiet = vec![0i16; FRAME * 50];
        assert!(frames(&quiet).all(|f| !v.is_speech(f)));
        let s = babble_syllables(1.0, 1.0);
        let hits = frames(&s).filter(|f| v.is_speech(f)).count();
        assert!(hits > 30, "{hits} of 50 frames");
    }

    #[test]
    fn noise_floor_tracks_a_steady_line() {
        let mut f = NoiseFloor::default();
        assert_eq!(f.level(), -70.0);
        for i in 0..100 {
            f.update(-50.0 + (i % 3) as f32);
        }
        assert!((f.level() + 50.0).abs() < 0.1);
        // Ten seconds of speech with a brief gap every second keep it.
        for i in 0..500 {
            f.update(if i % 50 == 0 { -49.0 } else { -20.0 });
        }
        assert!(f.level() < -48.0, "{}", f.level());
        // A line that gets 10 dB noisier is followed within 3 s.
        for _ in 0..160 {
            f.update(-40.0);
        }
        assert!((f.level() + 40.0).abs() < 0.1);
    }

    #[test]
    fn energy_of_extremes() {
        assert_eq!(energy_db(&[]), -100.0);
        assert_eq!(energy_db(&[0; FRAME]), -100.0);
        assert!(energy_db(&[i16::MIN; FRAME]).abs() < 0.01);
    }

    #[test]
    fn detector_is_send() {
        fn send<T: Send>(_: T) {}
        send(WebRtcVad::default());
        let mut v = WebRtcVad::default();
        v.reset();
    }
}
