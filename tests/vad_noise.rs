//! Measures the VAD on espeak-ng speech mixed with white and babble noise
//! at 10 dB SNR, 8 kHz, and prints a table. Needs espeak-ng.
//! `cargo test --release --test vad_noise -- --nocapture` to see the table.

use clinivox::speech::tts::{Espeak, EspeakConfig, SpeechEngine};
use clinivox::speech::vad::{self, Aggressiveness, Config, VoiceDetector, WebRtcVad, FRAME};

/// xorshift64*: deterministic noise without a dependency.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn power(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64
}

/// Speech turns separated by 1.5 s pauses; returns samples and per-frame
/// truth labels (frame within 35 dB of the loudest frame = speech).
fn corpus(tts: &Espeak) -> (Vec<f64>, Vec<bool>) {
    let turns = [
        ("es", "Quisiera pedir una cita con el cardiólogo para el jueves."),
        ("en", "I need to cancel my appointment on Monday morning."),
        ("it", "Vorrei prenotare una visita dal dermatologo, per favore."),
        ("es", "Mi fecha de nacimiento es el doce de marzo de mil novecientos cuarenta."),
        ("en", "Yes, that is correct."),
    ];
    let mut x = vec![0.0; 12_000];
    for (lang, text) in turns {
        x.extend(tts.synthesize(text, lang).unwrap().iter().map(|&s| f64::from(s)));
        x.extend(std::iter::repeat_n(0.0, 12_000));
    }
    let e: Vec<f64> = x.chunks(FRAME).map(power).collect();
    let peak = e.iter().cloned().fold(0.0, f64::max);
    let truth = e.iter().map(|&p| p > peak * 10f64.powf(-3.5)).collect();
    (x, truth)
}

/// Continuous babble: five overlapping talkers, looped.
fn babble(tts: &Espeak, n: usize) -> Vec<f64> {
    let talkers = [
        ("en", "The weather has been terrible all week and the buses are late again."),
        ("es", "Ayer fuimos al mercado y compramos fruta, pan y un poco de queso."),
        ("it", "Domani vado a trovare mia sorella che abita vicino al mare."),
        ("pt", "O meu vizinho está a pintar a casa e o barulho não para."),
        ("en", "Did you see the match last night? It was a great game."),
    ];
    let mut out = vec![0.0; n];
    for (k, (lang, text)) in talkers.iter().enumerate() {
        let t: Vec<f64> = tts.synthesize(text, lang).unwrap().iter().map(|&s| f64::from(s)).collect();
        for (i, o) in out.iter_mut().enumerate() {
            *o += t[(i + k * 3_001) % t.len()];
        }
    }
    out
}

fn mix(speech: &[f64], truth: &[bool], noise: &[f64], snr_db: f64) -> Vec<i16> {
    let active: Vec<f64> = speech.chunks(FRAME).zip(truth).filter(|(_, &t)| t).flat_map(|(c, _)| c.iter().copied()).collect();
    let gain = (power(&active) / power(noise) / 10f64.powf(snr_db / 10.0)).sqrt();
    speech.iter().zip(noise).map(|(s, n)| (s + n * gain).round().clamp(-32768.0, 32767.0) as i16).collect()
}

struct Score {
    recall: f64,
    false_alarm: f64,
    us_per_frame: f64,
}

/// Recall over speech frames; false alarms over frames at least 300 ms
/// away from any speech (the endpointer's hang-over covers the edges).
fn score(det: &mut dyn VoiceDetector, x: &[i16], truth: &[bool]) -> Score {
    let t0 = std::time::Instant::now();
    let got: Vec<bool> = x.chunks_exact(FRAME).map(|c| det.is_speech(c.try_into().expect("exact"))).collect();
    let us_per_frame = t0.elapsed().as_secs_f64() * 1e6 / got.len() as f64;
    let near = |i: usize| (i.saturating_sub(15)..(i + 16).min(truth.len())).any(|j| truth[j]);
    let (mut tp, mut sp, mut fa, mut ns) = (0, 0, 0, 0);
    for (i, &g) in got.iter().enumerate() {
        if truth[i] {
            sp += 1;
            tp += usize::from(g);
        } else if !near(i) {
            ns += 1;
            fa += usize::from(g);
        }
    }
    Score { recall: tp as f64 / sp as f64, false_alarm: fa as f64 / ns as f64, us_per_frame }
}

#[test]
fn vad_on_noisy_8k_lines() {
    let tts = Espeak::new(EspeakConfig::default());
    let (speech, truth) = corpus(&tts);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let white: Vec<f64> = (0..speech.len()).map(|_| rng.gauss()).collect();
    let babble = babble(&tts, speech.len());
    let conditions: [(&str, Vec<i16>); 3] = [
        ("clean", speech.iter().map(|&s| s as i16).collect()),
        ("white 10 dB", mix(&speech, &truth, &white, 10.0)),
        ("babble 10 dB", mix(&speech, &truth, &babble, 10.0)),
    ];
    let configs = [
        ("webrtc mode 3", Config { mode: Aggressiveness::VeryAggressive, floor_margin_db: None }),
        ("webrtc mode 2", Config { mode: Aggressiveness::Aggressive, floor_margin_db: None }),
        ("mode 3 + floor 3 dB (default)", Config::default()),
        ("mode 3 + floor 6 dB", Config { mode: Aggressiveness::VeryAggressive, floor_margin_db: Some(6.0) }),
        ("mode 3 + floor 10 dB", Config { mode: Aggressiveness::VeryAggressive, floor_margin_db: Some(10.0) }),
    ];
    println!("\n{:32} {:14} {:>7} {:>11} {:>9}", "detector", "condition", "recall", "false alarm", "µs/frame");
    let mut default_scores = Vec::new();
    for (name, cfg) in &configs {
        for (cond, x) in &conditions {
            let mut det = WebRtcVad::new(cfg.clone());
            let s = score(&mut det, x, &truth);
            println!("{name:32} {cond:14} {:>6.1}% {:>10.1}% {:>9.1}", s.recall * 100.0, s.false_alarm * 100.0, s.us_per_frame);
            if cfg.floor_margin_db == Config::default().floor_margin_db && cfg.mode == Config::default().mode {
                default_scores.push((cond.to_string(), s));
            }
        }
    }
    // Thresholds sit below what was measured (see the report): they catch a
    // regression, not tune the detector.
    // Babble is printed, not asserted: see the vad module docs.
    for (cond, s) in default_scores.iter().filter(|(c, _)| !c.starts_with("babble")) {
        assert!(s.recall > 0.85, "{cond}: recall {}", s.recall);
        assert!(s.false_alarm < 0.02, "{cond}: false alarms {}", s.false_alarm);
    }
    let _ = vad::energy_db(&[]);
}
