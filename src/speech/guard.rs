//! Hallucination guards for Whisper on phone audio.
//!
//! Whisper was trained on subtitled video, so on silence, breathing or line
//! noise it tends to "hear" the credits: "Thank you.", "Gracias.",
//! "Subtítulos realizados por la comunidad de Amara.org". A clinic cannot
//! book an appointment on that. Three guards, cheapest first:
//! 1. VAD gating — audio with too little voiced time is never decoded;
//! 2. Whisper's own no-speech probability above a threshold;
//! 3. known phantom phrases, dropped only when the audio is short or quiet
//!    (a real caller may well say "gracias" — loudly, in a long turn).

use super::vad::{energy_db, VoiceDetector, WebRtcVad, FRAME};

#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Minimum voiced audio (per the VAD) to decode at all, in ms.
    pub min_voiced_ms: u32,
    /// Drop results whose no-speech probability exceeds this.
    pub no_speech_threshold: f32,
    /// Phantom phrases are dropped when the utterance is shorter than this…
    pub phantom_max_secs: f32,
    /// …or quieter (mean power of voiced frames, dBFS) than this.
    pub phantom_max_db: f32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self { min_voiced_ms: 200, no_speech_threshold: 0.6, phantom_max_secs: 2.0, phantom_max_db: -35.0 }
    }
}

/// Why a recognition result was withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The VAD found too little speech; Whisper was not run.
    NotSpeech,
    /// Whisper itself judged the audio as probably not speech.
    NoSpeechProbability,
    /// A known subtitle-credit hallucination on short or quiet audio.
    Phantom,
}

/// What the VAD saw in an utterance (8 kHz).
#[derive(Debug, Clone, Copy)]
pub struct AudioStats {
    pub secs: f32,
    pub voiced_ms: u32,
    /// Mean energy of voiced frames in dBFS (-100 when none).
    pub voiced_db: f32,
}

/// Runs a fresh VAD over 8 kHz audio.
pub fn audio_stats(pcm: &[i16]) -> AudioStats {
    let mut vad = WebRtcVad::default();
    let (mut n, mut power) = (0u32, 0.0f64);
    for f in pcm.chunks_exact(FRAME) {
        let f: &[i16; FRAME] = f.try_into().expect("chunks_exact yields FRAME samples");
        if vad.is_speech(f) {
            n += 1;
            power += 10f64.powf(f64::from(energy_db(f)) / 10.0);
        }
    }
    AudioStats {
        secs: pcm.len() as f32 / 8_000.0,
        voiced_ms: n * 20,
        voiced_db: if n == 0 { -100.0 } else { (10.0 * (power / f64::from(n)).log10()) as f32 },
    }
}

/// Before decoding: is there enough speech to bother Whisper?
pub fn gate(stats: &AudioStats, cfg: &GuardConfig) -> Option<Dropped> {
    (stats.voiced_ms < cfg.min_voiced_ms).then_some(Dropped::NotSpeech)
}

/// After decoding: should this text be withheld?
pub fn check(text: &str, no_speech_prob: f32, stats: &AudioStats, cfg: &GuardConfig) -> Option<Dropped> {
    if no_speech_prob > cfg.no_speech_threshold {
        return Some(Dropped::NoSpeechProbability);
    }
    let weak = stats.secs < cfg.phantom_max_secs || stats.voiced_db < cfg.phantom_max_db;
    (weak && is_phantom(text)).then_some(Dropped::Phantom)
}

/// Known hallucinations, normalized (see [`normalize`]).
const PHANTOMS: &[&str] = &[
    "gracias",
    "muchas gracias",
    "gracias por ver el video",
    "gracias por ver",
    "subtitulos realizados por la comunidad de amaraorg",
    "subtitulos por la comunidad de amaraorg",
    "suscribete",
    "suscribete al canal",
    "thank you",
    "thanks for watching",
    "thank you for watching",
    "subtitles by the amaraorg community",
    "you",
    "grazie",
    "grazie a tutti",
    "grazie per la visione",
    "sottotitoli creati dalla comunita amaraorg",
    "sottotitoli a cura di qtss",
    "obrigado",
    "obrigada",
    "obrigado por assistir",
    "legendas pela comunidade amaraorg",
    "",
];

pub fn is_phantom(text: &str) -> bool {
    let n = normalize(text);
    PHANTOMS.contains(&n.as_str()) || n.contains("amaraorg")
}

/// Lowercase, accents folded, punctuation removed, spaces collapsed.
/// Shared with the WER tests so both agree on what a word is.
pub fn normalize(text: &str) -> String {
    let folded: String = text
        .chars()
        .flat_map(char::to_lowercase)
        .map(fold_accent)
        .filter(|c| c.is_alphanumeric() || c.is_whitespace() || *c == '\'')
        .filter(|c| *c != '\'')
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn fold_accent(c: char) -> char {
    match c {
        'á' | 'à' | 'â' | 'ä' | 'ã' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'í' | 'ì' | 'î' | 'ï' => 'i',
        'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
        'ú' | 'ù' | 'û' | 'ü' => 'u',
        'ñ' => 'n',
        'ç' => 'c',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(secs: f32, voiced_db: f32) -> AudioStats {
        AudioStats { secs, voiced_ms: (secs * 1000.0) as u32, voiced_db }
    }

    #[test]
    fn phantoms_are_recognised_in_any_spelling() {
        for t in [
            "Gracias.",
            " ¡Suscríbete! ",
            "Subtítulos realizados por la comunidad de Amara.org",
            "Thank you.",
            "Grazie.",
            "Obrigado.",
            "...",
        ] {
            assert!(is_phantom(t), "{t}");
        }
        assert!(!is_phantom("Gracias, quiero una cita"));
    }

    #[test]
    fn phantom_only_dropped_on_short_or_quiet_audio() {
        let cfg = GuardConfig::default();
        assert_eq!(check("Gracias.", 0.1, &stats(1.0, -20.0), &cfg), Some(Dropped::Phantom));
        assert_eq!(check("Gracias.", 0.1, &stats(4.0, -50.0), &cfg), Some(Dropped::Phantom));
        assert_eq!(check("Gracias.", 0.1, &stats(4.0, -20.0), &cfg), None);
        assert_eq!(check("Quiero una cita", 0.1, &stats(1.0, -50.0), &cfg), None);
        assert_eq!(check("Quiero una cita", 0.9, &stats(3.0, -20.0), &cfg), Some(Dropped::NoSpeechProbability));
    }

    #[test]
    fn silence_is_gated_before_decoding() {
        let cfg = GuardConfig::default();
        let s = audio_stats(&vec![0i16; 16_000]);
        assert_eq!((s.voiced_ms, s.secs), (0, 2.0));
        assert_eq!(gate(&s, &cfg), Some(Dropped::NotSpeech));
        let speech = crate::speech::vad::tests::babble_syllables(1.0, 1.0);
        let s = audio_stats(&speech);
        assert!(s.voiced_ms >= 600 && s.voiced_db > -40.0, "{s:?}");
        assert_eq!(gate(&s, &cfg), None);
        assert_eq!(audio_stats(&[]).voiced_db, -100.0);
    }

    #[test]
    fn normalize_folds_case_accents_and_punctuation() {
        assert_eq!(normalize("¿Mañana, a las 10:30?  Sí."), "manana a las 1030 si");
        assert_eq!(normalize("L'ortopedico è qui"), "lortopedico e qui");
    }
}
