use super::*;
use crate::speech::vad::WebRtcVad;

/// Labels a frame as speech when it is loud: lets tests script exact
/// voiced/unvoiced patterns.
struct Loud;
impl VoiceDetector for Loud {
    fn is_speech(&mut self, f: &[i16; FRAME]) -> bool {
        f.iter().any(|s| s.unsigned_abs() > 1000)
    }
    fn reset(&mut self) {}
}

/// Audio built from (milliseconds, loud?) pieces.
fn script(parts: &[(u32, bool)]) -> Vec<i16> {
    parts
        .iter()
        .flat_map(|&(ms, loud)| {
            let n = (ms * RATE / 1000) as usize;
            (0..n).map(move |i| {
                if loud {
                    if i % 2 == 0 {
                        5000
                    } else {
                        -5000
                    }
                } else {
                    0
                }
            })
        })
        .collect()
}

/// Feeds audio in 20 ms chunks from `t0`; returns events with the audio
/// time (ms since t0) at which each was emitted. Early pauses are left out
/// (see `run_all`): most tests are about utterances.
fn run<V: VoiceDetector>(ep: &mut Endpointer<V>, t0: Instant, audio: &[i16]) -> Vec<(u64, EndpointEvent)> {
    run_all(ep, t0, audio).into_iter().filter(|(_, e)| !matches!(e, EndpointEvent::Paused { .. })).collect()
}

fn run_all<V: VoiceDetector>(ep: &mut Endpointer<V>, t0: Instant, audio: &[i16]) -> Vec<(u64, EndpointEvent)> {
    let mut out = Vec::new();
    for (k, chunk) in audio.chunks(FRAME).enumerate() {
        let now = t0 + Duration::from_millis((k as u64 + 1) * 20);
        ep.handle_audio(now, chunk);
        while let Some(e) = ep.poll_event() {
            out.push(((k as u64 + 1) * 20, e));
        }
    }
    out
}

fn ms(t0: Instant, t: Instant) -> u64 {
    t.duration_since(t0).as_millis() as u64
}

#[test]
fn one_utterance_with_hang_over() {
    let mut ep = Endpointer::new(Loud, EndpointConfig::default());
    let t0 = Instant::now();
    let ev = run(&mut ep, t0, &script(&[(500, false), (1000, true), (1000, false)]));
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(matches!(ev[0].1, EndpointEvent::SpeechStarted { at } if ms(t0, at) == 500));
    // Started after the 60 ms onset run.
    assert_eq!(ev[0].0, 560);
    let (when, EndpointEvent::UtteranceEnded { samples, speech_start, speech_end, reason }) = &ev[1] else { panic!("{ev:?}") };
    assert_eq!(*when, 1500 + 700);
    assert_eq!((ms(t0, *speech_start), ms(t0, *speech_end)), (500, 1500));
    assert_eq!(*reason, EndReason::Silence);
    // 200 ms pre-roll + 1 s speech + 200 ms tail.
    assert_eq!(samples.len(), (1400 * RATE / 1000) as usize);
}

#[test]
fn short_pause_does_not_split_and_patience_is_adjustable() {
    let audio = script(&[(300, true), (500, false), (300, true), (1500, false)]);
    let mut ep = Endpointer::new(Loud, EndpointConfig::default());
    let ends = |ev: &[(u64, EndpointEvent)]| ev.iter().filter(|e| matches!(e.1, EndpointEvent::UtteranceEnded { .. })).count();
    assert_eq!(ends(&run(&mut ep, Instant::now(), &audio)), 1);
    // Less patience splits at the 500 ms pause.
    ep.set_patience(Duration::from_millis(400));
    assert_eq!(ends(&run(&mut ep, Instant::now(), &audio)), 2);
    // Dictating a date: 1.2 s pauses stay inside one utterance at 2 s.
    ep.set_patience(Duration::from_secs(2));
    assert_eq!(ep.patience(), Duration::from_secs(2));
    let dictation = script(&[(400, true), (1200, false), (400, true), (1200, false), (400, true), (2500, false)]);
    assert_eq!(ends(&run(&mut ep, Instant::now(), &dictation)), 1);
    ep.reset_patience();
    assert_eq!(ends(&run(&mut ep, Instant::now(), &dictation)), 3);
}

#[test]
fn long_speech_is_cut_at_max_length_and_continues() {
    let cfg = EndpointConfig { max_utterance: Duration::from_secs(2), ..Default::default() };
    let mut ep = Endpointer::new(Loud, cfg);
    let ev = run(&mut ep, Instant::now(), &script(&[(5000, true), (1000, false)]));
    let ends: Vec<_> = ev
        .iter()
        .filter_map(|(_, e)| match e {
            EndpointEvent::UtteranceEnded { samples, reason, .. } => Some((samples.len(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 3, "{ev:?}");
    assert_eq!(ends[0], (16_000, EndReason::MaxLength));
    assert_eq!(ends[2].1, EndReason::Silence);
    let total: usize = ends.iter().map(|e| e.0).sum();
    assert!(total >= 5 * RATE as usize, "no speech lost: {total}");
}

#[test]
fn clicks_and_coughs_are_discarded() {
    let mut ep = Endpointer::new(Loud, EndpointConfig::default());
    let ev = run(&mut ep, Instant::now(), &script(&[(200, false), (40, true), (300, false), (120, true), (1000, false)]));
    // 40 ms never starts; 120 ms starts (onset 60 ms) but is discarded.
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(matches!(ev[1].1, EndpointEvent::Discarded { voiced } if voiced == Duration::from_millis(120)));
}

#[test]
fn barge_in_latency_and_cough_rejection() {
    let mut ep = Endpointer::new(Loud, EndpointConfig::default());
    ep.set_prompt(Prompt::Playing { interruptible: true });
    let t0 = Instant::now();
    // A 100 ms click and a 140 ms cough while the prompt plays: no barge-in.
    let ev = run(&mut ep, t0, &script(&[(300, false), (100, true), (500, false), (140, true), (1000, false)]));
    assert!(!ev.iter().any(|e| matches!(e.1, EndpointEvent::BargeIn { .. })), "{ev:?}");
    // Real speech: barge-in 200 ms after onset (≤ 250 ms target).
    let ev = run(&mut ep, t0, &script(&[(300, false), (800, true), (800, false)]));
    let lat: Vec<_> = ev
        .iter()
        .filter_map(|e| match e.1 {
            EndpointEvent::BargeIn { latency, .. } => Some(latency),
            _ => None,
        })
        .collect();
    assert_eq!(lat, vec![Duration::from_millis(200)], "exactly one barge-in");
}

#[test]
fn non_interruptible_prompt_never_barges_in() {
    let mut ep = Endpointer::new(Loud, EndpointConfig::default());
    ep.set_prompt(Prompt::Playing { interruptible: false });
    let ev = run(&mut ep, Instant::now(), &script(&[(2000, true), (800, false)]));
    assert!(!ev.iter().any(|e| matches!(e.1, EndpointEvent::BargeIn { .. })));
    // Nor when no prompt plays at all.
    ep.set_prompt(Prompt::Silent);
    let ev = run(&mut ep, Instant::now(), &script(&[(2000, true), (800, false)]));
    assert!(!ev.iter().any(|e| matches!(e.1, EndpointEvent::BargeIn { .. })));
}

#[test]
fn odd_chunk_sizes_frame_correctly() {
    let mut ep = Endpointer::new(Loud, EndpointConfig::default());
    let audio = script(&[(200, false), (600, true), (900, false)]);
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut sent = 0usize;
    for chunk in audio.chunks(37) {
        sent += chunk.len();
        ep.handle_audio(t0 + samples_to_duration(sent), chunk);
        ep.handle_audio(t0 + samples_to_duration(sent), &[]);
        got.extend(std::iter::from_fn(|| ep.poll_event()));
    }
    let Some(EndpointEvent::UtteranceEnded { speech_start, speech_end, .. }) = got.last() else { panic!("{got:?}") };
    assert_eq!((ms(t0, *speech_start), ms(t0, *speech_end)), (200, 800));
}

/// Real WebRTC VAD on synthetic speech-like syllables with known pauses:
/// boundaries land within 100 ms of the truth; a 100 ms burst of the same
/// sound during a prompt does not barge in.
#[test]
fn webrtc_boundaries_within_100_ms() {
    use crate::speech::vad::tests::babble_syllables;
    let mut audio = vec![0i16; 8_000];
    let mut truth = Vec::new();
    for secs in [1.5f32, 0.8, 2.0] {
        let start = audio.len();
        audio.extend(babble_syllables(secs, 1.0));
        truth.push((start as u64 / 8, audio.len() as u64 / 8));
        audio.extend(vec![0i16; 9_600]);
    }
    let mut ep = Endpointer::new(WebRtcVad::default(), EndpointConfig::default());
    let t0 = Instant::now();
    let got: Vec<(u64, u64)> = run(&mut ep, t0, &audio)
        .into_iter()
        .filter_map(|(_, e)| match e {
            EndpointEvent::UtteranceEnded { speech_start, speech_end, .. } => Some((ms(t0, speech_start), ms(t0, speech_end))),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), truth.len(), "{got:?} vs {truth:?}");
    for (g, t) in got.iter().zip(&truth) {
        assert!(g.0.abs_diff(t.0) <= 100 && g.1.abs_diff(t.1) <= 100, "{g:?} vs {t:?}");
    }

    let mut ep = Endpointer::new(WebRtcVad::default(), EndpointConfig::default());
    ep.set_prompt(Prompt::Playing { interruptible: true });
    let mut audio = vec![0i16; 8_000];
    audio.extend(&babble_syllables(1.0, 1.0)[..800]);
    audio.extend(vec![0i16; 8_000]);
    let ev = run(&mut ep, t0, &audio);
    assert!(!ev.iter().any(|e| matches!(e.1, EndpointEvent::BargeIn { .. })), "{ev:?}");
    let mut speech = vec![0i16; 8_000];
    speech.extend(babble_syllables(1.0, 1.0));
    let lat: Vec<_> = run(&mut ep, t0, &speech)
        .into_iter()
        .filter_map(|e| match e.1 {
            EndpointEvent::BargeIn { latency, .. } => Some(latency),
            _ => None,
        })
        .collect();
    assert_eq!(lat.len(), 1);
    assert!(lat[0] <= Duration::from_millis(250), "{lat:?}");
}

#[test]
fn an_early_pause_carries_the_utterance_the_end_will_carry() {
    let mut ep = Endpointer::new(Loud, EndpointConfig::default());
    let t0 = Instant::now();
    let ev = run_all(&mut ep, t0, &script(&[(300, false), (800, true), (1000, false)]));
    let paused: Vec<_> = ev.iter().filter(|(_, e)| matches!(e, EndpointEvent::Paused { .. })).collect();
    assert_eq!(paused.len(), 1, "{ev:?}");
    let ended = ev.iter().find(|(_, e)| matches!(e, EndpointEvent::UtteranceEnded { .. })).expect("utterance ended");
    // Announced 250 ms into the pause, 450 ms before the 700 ms patience ends it.
    assert_eq!(paused[0].0, 1100 + 260);
    assert_eq!(ended.0 - paused[0].0, 440);
    let (EndpointEvent::Paused { samples: a, speech_end: e1 }, EndpointEvent::UtteranceEnded { samples: b, speech_end: e2, .. }) =
        (&paused[0].1, &ended.1)
    else {
        unreachable!()
    };
    assert_eq!(e1, e2);
    assert_eq!(a, b, "the same audio, so an early transcript can be used as is");
}

#[test]
fn speech_after_an_early_pause_ends_later_with_another_speech_end() {
    let mut ep = Endpointer::new(Loud, EndpointConfig::default());
    let t0 = Instant::now();
    let ev = run_all(&mut ep, t0, &script(&[(300, false), (600, true), (400, false), (600, true), (1000, false)]));
    let paused: Vec<Instant> =
        ev.iter().filter_map(|(_, e)| if let EndpointEvent::Paused { speech_end, .. } = e { Some(*speech_end) } else { None }).collect();
    let ended: Vec<Instant> = ev
        .iter()
        .filter_map(|(_, e)| if let EndpointEvent::UtteranceEnded { speech_end, .. } = e { Some(*speech_end) } else { None })
        .collect();
    assert_eq!((paused.len(), ended.len()), (2, 1), "{ev:?}");
    assert_ne!(paused[0], ended[0], "the first pause's transcript is stale");
    assert_eq!(paused[1], ended[0]);
}

#[test]
fn no_early_pauses_while_a_date_of_birth_is_dictated() {
    let mut ep = Endpointer::new(Loud, EndpointConfig::default());
    ep.set_patience(Duration::from_secs(2));
    let t0 = Instant::now();
    let ev = run_all(&mut ep, t0, &script(&[(300, false), (600, true), (500, false), (600, true), (2500, false)]));
    assert!(!ev.iter().any(|(_, e)| matches!(e, EndpointEvent::Paused { .. })), "{ev:?}");
}
