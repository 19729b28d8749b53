//! Round trip through the phone: espeak-ng → 8 kHz → G.711 µ-law →
//! 16 kHz → Whisper, with word error rates per language and model.
//! CLINIVOX_TEST_MODELS=1 cargo test --release --test wer_g711 -- --nocapture
//!
//! espeak's formant voices are far from the human speech Whisper was
//! trained on, so these WERs are an upper bound on what the channel costs
//! and a regression guard, not a forecast for real callers.
#![cfg(feature = "whisper")]

use std::path::PathBuf;

use clinivox::speech::guard::normalize;
use clinivox::speech::resample::phone_to_asr;
use clinivox::speech::stt::{TranscribeOptions, Transcriber};
use clinivox::speech::tts::{Espeak, EspeakConfig, SpeechEngine};
use clinivox::speech::wav::{ulaw_decode, ulaw_encode};

const ES: &[&str] = &[
    "Quiero pedir una cita con el cardiólogo.",
    "Necesito cancelar mi cita del martes.",
    "¿Tienen hora libre el jueves por la mañana?",
    "Mi fecha de nacimiento es el doce de marzo de mil novecientos cuarenta y cinco.",
    "Prefiero por la tarde, después de las cuatro.",
    "Quisiera cambiar la cita con la doctora Ruiz.",
    "Es para una revisión de dermatología.",
    "Me llamo Carmen López García.",
    "Sí, el lunes a las diez me viene bien.",
    "No, ese día no puedo.",
    "Tengo dolor en la rodilla desde hace una semana.",
    "¿Puedo hablar con la recepción, por favor?",
    "Necesito una receta para mi tratamiento.",
    "La cita es para mi madre, que tiene ochenta años.",
    "¿A qué hora abre la clínica el sábado?",
    "Quiero ver al pediatra para mi hijo.",
    "Confirmo la cita del viernes a las once y media.",
    "Mi número de teléfono es seis cero cero, uno dos tres, cuatro cinco seis.",
    "Vengo a hacerme un análisis de sangre.",
    "Muchas gracias, hasta luego.",
];
const EN: &[&str] = &[
    "I would like to book an appointment with the cardiologist.",
    "I need to cancel my appointment on Tuesday.",
    "Do you have anything free on Thursday morning?",
    "My date of birth is the twelfth of March nineteen forty five.",
    "I prefer the afternoon, after four o'clock.",
    "Can I move my appointment with Doctor Ruiz?",
    "It is for a dermatology check up.",
    "My name is Carol Johnson.",
    "Yes, Monday at ten works for me.",
    "No, I cannot come that day.",
    "I have had knee pain for a week.",
    "Can I speak to reception, please?",
    "I need a new prescription for my medication.",
    "The appointment is for my mother, she is eighty years old.",
    "What time does the clinic open on Saturday?",
    "I want to see the pediatrician for my son.",
    "I confirm the appointment on Friday at half past eleven.",
    "My phone number is six five five, one two three, four five six seven.",
    "I am coming in for a blood test.",
    "Thank you very much, goodbye.",
];
const IT: &[&str] = &[
    "Vorrei prenotare una visita dal cardiologo.",
    "Devo disdire il mio appuntamento di martedì.",
    "Avete un posto libero giovedì mattina?",
    "Sono nata il dodici marzo millenovecentoquarantacinque.",
    "Preferisco il pomeriggio, dopo le quattro.",
    "Vorrei spostare l'appuntamento con la dottoressa Rossi.",
    "È per un controllo dermatologico.",
    "Mi chiamo Giulia Bianchi.",
    "Sì, lunedì alle dieci va bene.",
    "No, quel giorno non posso.",
    "Ho male al ginocchio da una settimana.",
    "Posso parlare con la reception, per favore?",
    "Ho bisogno di una ricetta per la mia terapia.",
    "L'appuntamento è per mia madre, che ha ottant'anni.",
    "A che ora apre la clinica il sabato?",
    "Vorrei una visita pediatrica per mio figlio.",
    "Confermo l'appuntamento di venerdì alle undici e mezza.",
    "Il mio numero di telefono è tre tre tre, uno due tre, quattro cinque sei.",
    "Vengo per un esame del sangue.",
    "Grazie mille, arrivederci.",
];

fn model(name: &str) -> PathBuf {
    let root =
        std::env::var_os("CLINIVOX_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("clinivox-speech-test"));
    clinivox::speech::models::fetch(name, &root.join("cache"), &root.join("models"), &mut |_| {}).unwrap()
}

/// Word-level Levenshtein distance.
fn edits(r: &[&str], h: &[&str]) -> usize {
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rw != hw)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()]
}

/// Synthesizes and passes each phrase through µ-law once per language.
fn phone_audio(tts: &Espeak, phrases: &[&str], lang: &str) -> Vec<Vec<f32>> {
    phrases
        .iter()
        .map(|p| {
            let pcm8 = tts.synthesize(p, lang).unwrap();
            let line: Vec<i16> = pcm8.iter().map(|&s| ulaw_decode(ulaw_encode(s))).collect();
            phone_to_asr(&line)
        })
        .collect()
}

fn wer(t: &Transcriber, audio: &[Vec<f32>], phrases: &[&str], lang: &str) -> (f64, Vec<String>) {
    let (mut errs, mut words, mut worst) = (0, 0, Vec::new());
    for (pcm, reference) in audio.iter().zip(phrases) {
        let opts = TranscribeOptions { language: Some(lang.into()), threads: 2, ..Default::default() };
        let got = t.transcribe(pcm, &opts).unwrap().text;
        let (r, h) = (normalize(reference), normalize(&got));
        let (r, h): (Vec<&str>, Vec<&str>) = (r.split(' ').collect(), h.split(' ').filter(|w| !w.is_empty()).collect());
        let e = edits(&r, &h);
        if e * 2 >= r.len() {
            worst.push(format!("    {reference:?} -> {got:?}"));
        }
        errs += e;
        words += r.len();
    }
    (errs as f64 / words as f64, worst)
}

#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn wer_through_g711_per_language_and_model() {
    let tts = Espeak::new(EspeakConfig::default());
    let sets = [("es", ES), ("en", EN), ("it", IT)];
    let audio: Vec<_> = sets.iter().map(|(l, p)| phone_audio(&tts, p, l)).collect();
    let mut rows = Vec::new();
    for name in ["base", "base-q8_0", "tiny.en"] {
        let t = Transcriber::load(&model(name)).unwrap();
        for ((lang, phrases), audio) in sets.iter().zip(&audio) {
            if name == "tiny.en" && *lang != "en" {
                continue;
            }
            let (w, worst) = wer(&t, audio, phrases, lang);
            rows.push((name, *lang, w, worst));
        }
    }
    println!("\nmodel    lang  phrases  WER");
    for (m, l, w, worst) in &rows {
        println!("{m:8} {l:5} {:7}  {:5.1}%", 20, w * 100.0);
        for line in worst {
            println!("{line}");
        }
    }
    // Limits set from the measured run (see the report), with headroom for
    // espeak/whisper version drift: a channel or resampler regression moves
    // WER by tens of points, not a few.
    for (m, l, w, _) in &rows {
        let limit = match (*m, *l) {
            // Measured: base en 32.1 %, tiny.en 45.5–56.4 % (two runs),
            // base es 61.0 %, base it 76.5 % (digits written as numerals
            // count as errors); base-q8_0 es 59.1 %, en 32.1 %, it 73.5 %
            // where base had 62.9 %, 32.1 %, 73.5 % in the same run.
            ("base" | "base-q8_0", "en") => 0.42,
            ("tiny.en", "en") => 0.65,
            ("base" | "base-q8_0", "es") => 0.70,
            _ => 0.85,
        };
        assert!(*w <= limit, "{m} {l}: WER {w:.3} > {limit}");
    }
    // 8-bit weights must not cost recognition: within 5 points of f16 base.
    for (_, l, q8, _) in rows.iter().filter(|r| r.0 == "base-q8_0") {
        let f16 = rows.iter().find(|r| r.0 == "base" && r.1 == *l).map(|r| r.2).unwrap_or_default();
        assert!(*q8 <= f16 + 0.05, "base-q8_0 {l}: WER {q8:.3} against base {f16:.3}");
    }
}
