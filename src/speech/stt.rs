//! Thin whisper-rs wrapper: load a ggml model, transcribe 16 kHz mono PCM.

use std::path::Path;
use std::time::{Duration, Instant};

use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

/// whisper.cpp's input rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// Encoder positions for a full 30-second window (50 per second).
pub const FULL_AUDIO_CTX: i32 = 1500;
// Extra encoder positions beyond the clip, so the last word is not cut.
const AUDIO_CTX_MARGIN: i32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error("loading whisper model {path}: {source}")]
    Load { path: String, source: whisper_rs::WhisperError },
    #[error("whisper inference failed: {0}")]
    Inference(#[from] whisper_rs::WhisperError),
    #[error("reading WAV {path}: {source}")]
    Wav { path: String, source: hound::Error },
    #[error("WAV {path}: {reason}")]
    BadWav { path: String, reason: String },
    #[error("unsupported language {0:?} for this model")]
    Language(String),
}

/// Per-call options.
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    /// ISO code such as "es"; `None` = "en" for English-only models and
    /// auto-detect for multilingual ones.
    pub language: Option<String>,
    pub threads: i32,
    /// Encoder window; `None` sizes it from the clip ([`audio_ctx_for`]).
    pub audio_ctx: Option<i32>,
    /// Text the decoder sees as preceding context: the clinic's vocabulary
    /// (specialties, provider and clinic names) biases spelling towards it.
    pub initial_prompt: Option<String>,
    /// When detecting (`language: None`), the languages the clinic serves.
    /// Whisper's open detection over 99 languages misfires on narrow-band
    /// audio (espeak Spanish at 8 kHz came back as Thai); if it picks one
    /// outside this list we take the likeliest one inside it instead.
    pub candidates: Vec<String>,
    /// With a `language`: also detect among `candidates`, and decode again
    /// (without the initial prompt, which is in the first language) in
    /// another candidate whose probability is at least this.
    pub switch_language: Option<f32>,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        Self { language: None, threads: 2, audio_ctx: None, initial_prompt: None, candidates: Vec::new(), switch_language: None }
    }
}

#[derive(Debug, Clone)]
pub struct Transcript {
    pub text: String,
    pub audio_ctx: i32,
    pub elapsed: Duration,
    /// Language decoded in (detected when none was requested).
    pub language: Option<String>,
    /// Highest no-speech probability over the segments (0 when none).
    pub no_speech_prob: f32,
    /// When the language was detected: the detector's probability for the
    /// language decoded in (`None` when the language was given).
    pub language_prob: Option<f32>,
}

/// Encoder window covering `samples` at 16 kHz plus a margin, capped at
/// the model's 30-second window. Shrinking it is what makes short phone
/// utterances fast: encoder cost grows with the window, not the clip.
pub fn audio_ctx_for(samples: usize) -> i32 {
    let frames = (samples as u64 * 50).div_ceil(u64::from(SAMPLE_RATE));
    (frames as i32).saturating_add(AUDIO_CTX_MARGIN).min(FULL_AUDIO_CTX)
}

/// Token budget for a clip: people say at most ~4 words (≈ 8 tokens) a
/// second; twice that plus a floor leaves room for any real speech.
pub fn max_tokens_for(samples: usize) -> i32 {
    let secs = samples as f64 / f64::from(SAMPLE_RATE);
    ((secs * 16.0).ceil() as i32).saturating_add(16).min(224)
}

/// A loaded model; create once, transcribe many times.
pub struct Transcriber {
    ctx: WhisperContext,
    pub load_time: Duration,
}

impl Transcriber {
    /// Loads a ggml model (whisper.cpp's own log output is silenced).
    pub fn load(path: &Path) -> Result<Self, SttError> {
        whisper_rs::install_logging_hooks();
        let start = Instant::now();
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|source| SttError::Load { path: path.display().to_string(), source })?;
        Ok(Self { ctx, load_time: start.elapsed() })
    }

    pub fn is_multilingual(&self) -> bool {
        self.ctx.is_multilingual()
    }

    fn params<'a>(&self, opts: &'a TranscribeOptions, lang: Option<&'a str>, audio_ctx: i32, max_tokens: i32) -> FullParams<'a, 'a> {
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        // Greedy decoding can loop on a clip cut mid-word ("¿Quisiera
        // pedir" repeated until the 224-token limit: 3 s for a 1 s clip).
        params.set_max_tokens(max_tokens);
        // No temperature fallback: when greedy decoding looks poor, whisper
        // retries at rising temperatures, up to six decodes. On a two-second
        // phone turn that took 9–60 s on a loaded 2-core machine and still
        // came back as "la primera, la primera, …"; one decode plus
        // `collapse_repeats` gives the same words in bounded time.
        params.set_temperature_inc(0.0);
        params.set_n_threads(opts.threads);
        params.set_language(lang);
        params.set_audio_ctx(audio_ctx);
        // One short utterance per call: no cross-call context, no console.
        params.set_no_context(true);
        params.set_single_segment(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        if let Some(p) = &opts.initial_prompt {
            // whisper-rs panics on an interior NUL; callers never need one.
            params.set_initial_prompt(&p.replace('\0', " "));
        }
        params
    }

    /// Transcribes 16 kHz mono samples in [-1, 1].
    pub fn transcribe(&self, pcm: &[f32], opts: &TranscribeOptions) -> Result<Transcript, SttError> {
        let start = Instant::now();
        let audio_ctx = opts.audio_ctx.unwrap_or_else(|| audio_ctx_for(pcm.len()));
        let lang = match (&opts.language, self.is_multilingual()) {
            // Validated here: whisper-rs panics on a NUL inside the string
            // and an English-only model silently ignores other languages.
            (Some(l), multi) => {
                if l.contains('\0') || whisper_rs::get_lang_id(l).is_none() || (!multi && l != "en") {
                    return Err(SttError::Language(l.clone()));
                }
                Some(l.as_str())
            }
            (None, true) => Some("auto"),
            (None, false) => Some("en"),
        };
        let mut state = self.ctx.create_state()?;
        let max_tokens = max_tokens_for(pcm.len());
        state.full(self.params(opts, lang, audio_ctx, max_tokens), pcm)?;
        let mut language_prob = None;
        let detecting = lang == Some("auto") || opts.switch_language.is_some();
        if detecting && !opts.candidates.is_empty() {
            // The state still holds this clip's mel and audio_ctx, so this
            // costs one more encoder pass: the probabilities say how sure
            // the detection is.
            let (_, probs) = state.lang_detect(0, opts.threads.max(1) as usize)?;
            let prob = |l: &str| whisper_rs::get_lang_id(l).and_then(|id| probs.get(id as usize).copied());
            let best = opts
                .candidates
                .iter()
                .filter(|c| !c.contains('\0'))
                .filter_map(|c| Some((c.as_str(), prob(c)?)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let decoded = whisper_rs::get_lang_str(state.full_lang_id_from_state()).unwrap_or("").to_string();
            language_prob = prob(&decoded);
            let again = match (lang, best) {
                // Open detection picked a language the clinic does not
                // speak: the likeliest one it does.
                (Some("auto"), Some((b, p))) if !opts.candidates.contains(&decoded) => Some((b, p, opts.initial_prompt.as_deref())),
                (Some(given), Some((b, p))) if given != "auto" && b != given && opts.switch_language.is_some_and(|min| p >= min) => {
                    Some((b, p, None))
                }
                _ => None,
            };
            if let Some((b, p, prompt)) = again {
                let o = TranscribeOptions { initial_prompt: prompt.map(str::to_string), ..opts.clone() };
                state.full(self.params(&o, Some(b), audio_ctx, max_tokens), pcm)?;
                language_prob = Some(p);
            }
        }
        let mut text = String::new();
        let mut no_speech_prob = 0.0f32;
        for i in 0..state.full_n_segments() {
            if let Some(seg) = state.get_segment(i) {
                text.push_str(&seg.to_str_lossy()?);
                no_speech_prob = no_speech_prob.max(seg.no_speech_probability());
            }
        }
        let language = whisper_rs::get_lang_str(state.full_lang_id_from_state()).map(str::to_string);
        let text = collapse_repeats(text.trim());
        Ok(Transcript { text, audio_ctx, elapsed: start.elapsed(), language, no_speech_prob, language_prob })
    }
}

/// Greedy decoding of a short clip often loops: "la primera, la primera,
/// la primera, …", "C C C C". Keeps the first of any run of consecutive
/// repeats of the same word group (1–8 words, compared without case and
/// punctuation). A word said twice on purpose ("no, no") is kept: only
/// three or more in a row are collapsed.
pub fn collapse_repeats(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let key = |w: &str| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
    let keys: Vec<String> = words.iter().map(|w| key(w)).collect();
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let mut skipped = false;
        for n in 1..=8usize.min((words.len() - i) / 2) {
            let group = &keys[i..i + n];
            let mut reps = 1;
            while i + (reps + 1) * n <= keys.len() && keys[i + reps * n..i + (reps + 1) * n] == *group {
                reps += 1;
            }
            // A trailing partial copy ("la primera, la") goes too.
            let mut end = i + reps * n;
            while end < keys.len() && end - i - reps * n < n && keys[end] == group[end - i - reps * n] {
                end += 1;
            }
            if reps >= 3 || (reps == 2 && n >= 2) {
                out.extend(&words[i..i + n]);
                i = end;
                skipped = true;
                break;
            }
        }
        if !skipped {
            out.push(words[i]);
            i += 1;
        }
    }
    let mut s = out.join(" ");
    // "la primera, la primera," → "la primera,": drop a dangling comma.
    if s.ends_with(',') {
        s.pop();
    }
    s
}

/// Reads a PCM WAV file as 16 kHz mono f32, downmixing channels and
/// resampling linearly if needed (fine for speech; prefer 16 kHz input).
pub fn read_wav(path: &Path) -> Result<Vec<f32>, SttError> {
    let p = path.display().to_string();
    let werr = |source| SttError::Wav { path: p.clone(), source };
    let mut reader = hound::WavReader::open(path).map_err(werr)?;
    let spec = reader.spec();
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>().map_err(werr)?,
        hound::SampleFormat::Int => {
            if spec.bits_per_sample == 0 || spec.bits_per_sample > 32 {
                return Err(SttError::BadWav { path: p, reason: format!("{} bits per sample", spec.bits_per_sample) });
            }
            let scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader.samples::<i32>().map(|s| s.map(|v| v as f32 / scale)).collect::<Result<_, _>>().map_err(werr)?
        }
    };
    let ch = usize::from(spec.channels.max(1));
    let mono: Vec<f32> = samples.chunks(ch).map(|c| c.iter().sum::<f32>() / c.len() as f32).collect();
    Ok(super::resample::resample(&mono, spec.sample_rate, SAMPLE_RATE))
}

/// Linear-interpolation resampler (kept for comparison; it leaves images
/// ~25 dB down — use [`super::resample`]).
pub fn resample_linear(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || x.is_empty() || from == 0 {
        return x.to_vec();
    }
    let n = (x.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let step = f64::from(from) / f64::from(to);
    (0..n)
        .map(|i| {
            let pos = i as f64 * step;
            let j = pos as usize;
            let frac = (pos - j as f64) as f32;
            let a = x[j.min(x.len() - 1)];
            let b = x[(j + 1).min(x.len() - 1)];
            a + (b - a) * frac
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_tracks_clip_length() {
        assert_eq!(audio_ctx_for(0), AUDIO_CTX_MARGIN);
        assert_eq!(audio_ctx_for(16_000 * 3), 150 + AUDIO_CTX_MARGIN);
        assert_eq!(audio_ctx_for(16_000 * 60), FULL_AUDIO_CTX);
    }

    #[test]
    fn repeated_phrases_collapse() {
        assert_eq!(collapse_repeats("la primera, la primera, la primera, la primera, la"), "la primera");
        assert_eq!(collapse_repeats("C C C C C C C C"), "C");
        assert_eq!(collapse_repeats("C, soy yo. C, soy yo."), "C, soy yo.");
        assert_eq!(collapse_repeats("Yeah, please. Yeah, please."), "Yeah, please.");
        // Said on purpose, or different words: untouched.
        assert_eq!(collapse_repeats("No, no, gracias."), "No, no, gracias.");
        assert_eq!(collapse_repeats("Quiero cancelar mi cita."), "Quiero cancelar mi cita.");
        assert_eq!(collapse_repeats("el uno y el dos"), "el uno y el dos");
        assert_eq!(collapse_repeats(""), "");
    }

    #[test]
    fn resampling_keeps_duration() {
        let x = vec![0.5; 22_050];
        let y = resample_linear(&x, 22_050, 16_000);
        assert_eq!(y.len(), 16_000);
        assert!(y.iter().all(|&v| (v - 0.5).abs() < 1e-6));
    }
}
