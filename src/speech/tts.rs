//! Speech synthesis for the phone: text in, 8 kHz 16-bit PCM out.
//!
//! [`SpeechEngine`] is the seam; [`Espeak`] drives the `espeak-ng` program
//! (a process per sentence costs 20–30 ms; linking libespeak-ng would save
//! ~15 ms but puts GPL-3 code into our binary). [`sentences`] renders a
//! reply one sentence at a time so the first sentence can play while the
//! rest is rendered, and [`super::tts_cache::CachedEngine`] keeps fixed
//! prompts in memory and on disk.
//!
//! This module does not pace audio onto RTP; it only produces samples.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use super::resample::Resampler;

/// Output rate of every engine: the phone's.
pub const RATE: u32 = 8_000;
/// espeak-ng's native rate.
const ESPEAK_RATE: u32 = 22_050;
/// The canonical WAV header espeak-ng writes before the samples.
const WAV_HEADER: usize = 44;

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("no voice configured for language {0:?}")]
    UnknownLanguage(String),
    #[error("starting {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} failed ({status}): {stderr}")]
    Failed { program: String, status: String, stderr: String },
    #[error("{0} did not write a WAV stream")]
    NotWav(String),
    #[error("TTS cache: {0}")]
    Cache(#[from] std::io::Error),
}

/// A text-to-speech engine. Implementations must be usable from several
/// threads (calls render prompts concurrently).
pub trait SpeechEngine: Send + Sync {
    /// Renders `text` in language `lang` (ISO 639-1, e.g. "es") as 8 kHz
    /// mono 16-bit PCM.
    fn synthesize(&self, text: &str, lang: &str) -> Result<Vec<i16>, TtsError>;

    /// Everything besides the text that changes the audio (engine, voice,
    /// rate), for cache keys. Distinct settings must give distinct strings.
    fn identity(&self, lang: &str) -> Result<String, TtsError>;
}

impl<E: SpeechEngine + ?Sized> SpeechEngine for std::sync::Arc<E> {
    fn synthesize(&self, text: &str, lang: &str) -> Result<Vec<i16>, TtsError> {
        (**self).synthesize(text, lang)
    }
    fn identity(&self, lang: &str) -> Result<String, TtsError> {
        (**self).identity(lang)
    }
}

/// One espeak-ng voice and speaking rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voice {
    /// espeak-ng voice name (`espeak-ng --voices`), e.g. "es", "en-us".
    pub name: String,
    /// Words per minute; espeak's default 175 is too fast for elderly
    /// callers on a narrow-band line.
    pub rate_wpm: u32,
}

#[derive(Debug, Clone)]
pub struct EspeakConfig {
    pub program: PathBuf,
    /// Voice per language code.
    pub voices: HashMap<String, Voice>,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        let v = |name: &str| Voice { name: name.into(), rate_wpm: 145 };
        Self {
            program: "espeak-ng".into(),
            voices: [("es", v("es")), ("en", v("en-us")), ("it", v("it")), ("pt", v("pt"))]
                .into_iter()
                .map(|(l, v)| (l.to_string(), v))
                .collect(),
        }
    }
}

/// espeak-ng as a child process per request.
pub struct Espeak {
    cfg: EspeakConfig,
    down: Resampler,
    runs: AtomicU64,
}

impl Espeak {
    pub fn new(cfg: EspeakConfig) -> Self {
        Self { cfg, down: Resampler::new(ESPEAK_RATE, RATE), runs: AtomicU64::new(0) }
    }

    /// How many times the program has been started (for tests and stats).
    pub fn invocations(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    fn voice(&self, lang: &str) -> Result<&Voice, TtsError> {
        self.cfg.voices.get(lang).ok_or_else(|| TtsError::UnknownLanguage(lang.to_string()))
    }
}

impl SpeechEngine for Espeak {
    fn synthesize(&self, text: &str, lang: &str) -> Result<Vec<i16>, TtsError> {
        let voice = self.voice(lang)?;
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let program = self.cfg.program.display().to_string();
        self.runs.fetch_add(1, Ordering::Relaxed);
        // Text goes through stdin, never argv: a prompt starting with '-'
        // must not be read as an option.
        let mut child = Command::new(&self.cfg.program)
            .args(["--stdout", "-v", &voice.name, "-s", &voice.rate_wpm.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| TtsError::Spawn { program: program.clone(), source })?;
        if let Some(mut stdin) = child.stdin.take() {
            // espeak reads until EOF; dropping stdin closes it.
            stdin.write_all(text.as_bytes()).map_err(|source| TtsError::Spawn { program: program.clone(), source })?;
        }
        let out = child.wait_with_output().map_err(|source| TtsError::Spawn { program: program.clone(), source })?;
        if !out.status.success() {
            return Err(TtsError::Failed {
                program,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let (rate, pcm) = parse_espeak_wav(&out.stdout).ok_or(TtsError::NotWav(program))?;
        if rate == ESPEAK_RATE {
            Ok(self.down.process_i16(&pcm))
        } else {
            Ok(Resampler::new(rate, RATE).process_i16(&pcm))
        }
    }

    fn identity(&self, lang: &str) -> Result<String, TtsError> {
        let v = self.voice(lang)?;
        Ok(format!("espeak-ng|{}|{}", v.name, v.rate_wpm))
    }
}

/// Splits espeak-ng's stdout into (rate, samples). The header's size
/// fields are placeholders (espeak cannot seek a pipe), so only the magic
/// and the rate are read, and everything after byte 44 is taken as data.
fn parse_espeak_wav(bytes: &[u8]) -> Option<(u32, Vec<i16>)> {
    if bytes.len() < WAV_HEADER || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let rate = u32::from_le_bytes(bytes[24..28].try_into().ok()?);
    let rate = if (4_000..=96_000).contains(&rate) { rate } else { ESPEAK_RATE };
    let pcm = bytes[WAV_HEADER..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    Some((rate, pcm))
}

/// Words after which a period does not end a sentence (titles in the four
/// languages); compared case-insensitively without the period.
const ABBREVIATIONS: &[&str] =
    &["dr", "dra", "sr", "sra", "srta", "dott", "dott.ssa", "sig", "sig.ra", "prof", "mr", "mrs", "ms", "st", "av", "n", "nº", "no", "etc"];

/// Splits a reply into sentences on `.`, `?`, `!`, `…`, `;` followed by
/// whitespace, keeping the punctuation (it shapes espeak's intonation).
/// Decimal points ("3.5") and titles ("Dra. López") do not split.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if !matches!(c, '.' | '?' | '!' | '…' | ';') {
            continue;
        }
        // Runs like "?!" or "..." end together.
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = chars.peek() {
            if matches!(d, '.' | '?' | '!' | '…') {
                end = j + d.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let next_is_space = chars.peek().is_none_or(|&(_, d)| d.is_whitespace());
        if !next_is_space || (c == '.' && is_abbreviation(&text[start..i])) {
            continue;
        }
        let s = text[start..end].trim();
        if !s.is_empty() {
            out.push(s);
        }
        start = end;
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn is_abbreviation(before: &str) -> bool {
    let word = before.rsplit(|c: char| c.is_whitespace()).next().unwrap_or("").to_lowercase();
    ABBREVIATIONS.contains(&word.as_str())
}

/// Renders a reply lazily, one sentence per `next()`, so the caller can
/// start playing the first sentence while later ones are rendered (run it
/// on a blocking thread and forward chunks through a channel).
pub fn sentences<'a, E: SpeechEngine + ?Sized>(
    engine: &'a E,
    text: &'a str,
    lang: &'a str,
) -> impl Iterator<Item = Result<Vec<i16>, TtsError>> + 'a {
    split_sentences(text).into_iter().map(move |s| engine.synthesize(s, lang))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sentences_but_not_titles_or_decimals() {
        assert_eq!(
            split_sentences("Hola. ¿Qué tal? La Dra. López atiende a las 3.5 horas; gracias!"),
            vec!["Hola.", "¿Qué tal?", "La Dra. López atiende a las 3.5 horas;", "gracias!"]
        );
        assert_eq!(split_sentences("Wait... what?! Yes"), vec!["Wait...", "what?!", "Yes"]);
        assert!(split_sentences("  ").is_empty());
        assert_eq!(split_sentences("No end"), vec!["No end"]);
    }

    #[test]
    fn parses_espeak_header_with_placeholder_sizes() {
        let mut wav = b"RIFF\xff\xff\xff\xffWAVEfmt ".to_vec();
        wav.extend_from_slice(&[16, 0, 0, 0, 1, 0, 1, 0]);
        wav.extend_from_slice(&22_050u32.to_le_bytes());
        wav.resize(WAV_HEADER, 0xff);
        wav.extend_from_slice(&[1, 0, 0xff, 0xff, 7]);
        assert_eq!(parse_espeak_wav(&wav), Some((22_050, vec![1, -1])));
        assert_eq!(parse_espeak_wav(b"RIFF"), None);
        assert_eq!(parse_espeak_wav(&[0; 60]), None);
    }

    #[test]
    fn unknown_language_is_an_error() {
        let e = Espeak::new(EspeakConfig::default());
        assert!(matches!(e.synthesize("x", "xx"), Err(TtsError::UnknownLanguage(_))));
        assert_eq!(e.invocations(), 0);
    }

    #[test]
    fn missing_program_is_an_error() {
        let e = Espeak::new(EspeakConfig { program: "/nonexistent/espeak".into(), ..Default::default() });
        assert!(matches!(e.synthesize("hola", "es"), Err(TtsError::Spawn { .. })));
    }

    // Needs the espeak-ng program (Debian package espeak-ng), a declared
    // run-time dependency of the product.
    #[test]
    fn espeak_renders_plausible_8k_audio() {
        let e = Espeak::new(EspeakConfig::default());
        let text = "Su cita con la doctora García es el martes a las diez.";
        let pcm = e.synthesize(text, "es").expect("espeak-ng installed?");
        let secs = pcm.len() as f32 / RATE as f32;
        // ~11 words at 145 wpm ≈ 4.5 s, plus espeak's pauses.
        assert!((2.0..8.0).contains(&secs), "{secs} s");
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak > 3_000, "peak {peak}");
        assert_eq!(e.invocations(), 1);
        assert!(e.synthesize("-v en --help", "en").unwrap().len() > RATE as usize / 2);
        assert_eq!(e.identity("es").unwrap(), "espeak-ng|es|145");
    }

    #[test]
    fn first_sentence_arrives_before_the_rest_is_rendered() {
        let e = Espeak::new(EspeakConfig::default());
        let mut it = sentences(&e, "Buenos días. Le llamo de la clínica. Adiós.", "es");
        let first = it.next().expect("three sentences").unwrap();
        assert!(!first.is_empty());
        assert_eq!(e.invocations(), 1, "only the first sentence rendered");
        assert_eq!(it.count(), 2);
        assert_eq!(e.invocations(), 3);
    }
}
