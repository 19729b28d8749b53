//! The detector on synthesized audio: espeak-ng speech (a declared run-time
//! dependency), pure tones and noise, all at 8 kHz.

use super::*;
use crate::speech::tts::{Espeak, EspeakConfig, SpeechEngine};

fn speech(text: &str, lang: &str) -> Vec<i16> {
    Espeak::new(EspeakConfig::default()).synthesize(text, lang).expect("espeak-ng installed?")
}

fn silence(ms: u64) -> Vec<i16> {
    vec![0; (ms * u64::from(RATE) / 1000) as usize]
}

fn sine(hz: f32, ms: u64, amp: f32) -> Vec<i16> {
    let n = (ms * u64::from(RATE) / 1000) as usize;
    (0..n).map(|i| (amp * (2.0 * PI * hz * i as f32 / RATE as f32).sin()) as i16).collect()
}

/// Deterministic white noise (xorshift).
fn noise(ms: u64, amp: f32) -> Vec<i16> {
    let mut s: u32 = 0x9e37_79b9;
    let n = (ms * u64::from(RATE) / 1000) as usize;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            ((s as f32 / u32::MAX as f32 - 0.5) * 2.0 * amp) as i16
        })
        .collect()
}

/// Feeds `audio` frame by frame until the detector is done; all events.
fn run(audio: &[i16]) -> Vec<Event> {
    let mut d = VoicemailDetector::new(Config::default());
    let mut events = Vec::new();
    for (n, chunk) in audio.chunks(FRAME).enumerate() {
        let mut frame = [0i16; FRAME];
        frame[..chunk.len()].copy_from_slice(chunk);
        d.handle_frame(n as u64, &frame);
        events.extend(std::iter::from_fn(|| d.poll_event()));
        if d.is_done() {
            break;
        }
    }
    events
}

fn frame_ms(at: u64) -> u64 {
    at * FRAME_MS
}

#[test]
fn a_pure_tone_is_found_and_speech_and_noise_are_not() {
    for hz in [440.0, 1000.0, 1400.0, 1990.0] {
        let f = tone_frequency(&sine(hz, 20, 8000.0)).unwrap_or_else(|| panic!("{hz} Hz not found"));
        assert!((f - hz).abs() < 15.0, "{hz} Hz read as {f}");
    }
    assert_eq!(tone_frequency(&sine(300.0, 20, 8000.0)), None, "below the beep band");
    assert_eq!(tone_frequency(&sine(2600.0, 20, 8000.0)), None, "above the beep band");
    assert_eq!(tone_frequency(&sine(1000.0, 20, 20.0)), None, "too quiet");
    assert_eq!(tone_frequency(&noise(20, 8000.0)), None);
    let voice = speech("Hola, ha llamado a la consulta.", "es");
    let tones = voice.chunks(FRAME).filter(|c| c.len() == FRAME && tone_frequency(c).is_some()).count();
    assert!(tones <= 2, "{tones} speech frames taken for a tone");
}

#[test]
fn a_short_hello_then_silence_is_a_person() {
    let mut audio = silence(400);
    audio.extend(speech("¿Sí? ¿Dígame?", "es"));
    let spoken_ms = audio.len() as u64 * 1000 / u64::from(RATE);
    audio.extend(silence(4_000));
    let events = run(&audio);
    let [Event::Decided { verdict: Verdict::Human, at }] = events[..] else { panic!("{events:?}") };
    // Decided within a second of the end of the greeting.
    assert!(frame_ms(at) <= spoken_ms + 1_200, "decided at {} ms, greeting ended at {spoken_ms} ms", frame_ms(at));
}

#[test]
fn a_long_greeting_and_a_beep_is_a_machine_and_the_message_follows_the_beep() {
    let mut audio = silence(500);
    audio.extend(speech(
        "Hola, ha llamado al teléfono de María. En este momento no puedo atenderle. Deje su mensaje después de la señal y le llamaré.",
        "es",
    ));
    audio.extend(silence(400));
    let beep_start = audio.len() as u64 * 1000 / u64::from(RATE);
    audio.extend(sine(1000.0, 400, 12_000.0));
    let beep_end = audio.len() as u64 * 1000 / u64::from(RATE);
    audio.extend(silence(3_000));
    let events = run(&audio);
    let [Event::Decided { verdict: Verdict::Machine, at: decided }, Event::StartMessage { at, after_beep: true }] = events[..] else {
        panic!("{events:?}")
    };
    assert!(frame_ms(decided) < 5_000, "machine known at {} ms", frame_ms(decided));
    assert!(frame_ms(decided) < beep_start, "the greeting alone gives it away");
    let start = frame_ms(at);
    assert!((beep_end - 20..=beep_end + 100).contains(&start), "message at {start} ms, beep ended at {beep_end} ms");
}

#[test]
fn the_beep_survives_the_phone_codec() {
    use crate::media::g711::Codec;
    let mut audio = silence(300);
    audio.extend(sine(1400.0, 250, 6_000.0));
    audio.extend(silence(1_000));
    for codec in [Codec::Pcmu, Codec::Pcma] {
        let line: Vec<i16> = audio.iter().map(|&s| codec.decode(codec.encode(s))).collect();
        let events = run(&line);
        assert!(
            matches!(events[..], [Event::Decided { verdict: Verdict::Machine, .. }, Event::StartMessage { after_beep: true, .. }]),
            "{events:?}"
        );
    }
}

#[test]
fn a_beep_alone_is_a_machine() {
    let mut audio = silence(300);
    audio.extend(sine(850.0, 200, 10_000.0));
    audio.extend(silence(1_000));
    let events = run(&audio);
    assert!(
        matches!(events[..], [Event::Decided { verdict: Verdict::Machine, .. }, Event::StartMessage { after_beep: true, .. }]),
        "{events:?}"
    );
}

#[test]
fn a_long_greeting_without_beep_gets_the_message_after_it_ends() {
    let mut audio = speech("Hello, you have reached the Turner family. We cannot take your call right now, please leave a message.", "en");
    let greeting_end = audio.len() as u64 * 1000 / u64::from(RATE);
    audio.extend(silence(5_000));
    let events = run(&audio);
    let [Event::Decided { verdict: Verdict::Machine, .. }, Event::StartMessage { at, after_beep: false }] = events[..] else {
        panic!("{events:?}")
    };
    let start = frame_ms(at);
    assert!((greeting_end..=greeting_end + 2_500).contains(&start), "message at {start} ms, greeting ended at {greeting_end} ms");
}

#[test]
fn silence_or_noise_is_neither_and_times_out() {
    for (what, audio) in [("silence", silence(10_000)), ("noise", noise(10_000, 600.0))] {
        let events = run(&audio);
        let [Event::Decided { verdict: Verdict::Unknown, at }] = events[..] else { panic!("{what}: {events:?}") };
        assert_eq!(frame_ms(at + 1), Config::default().decide_cap_ms, "{what}");
    }
}
