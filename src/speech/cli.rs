//! The speech commands of `clinivox` (`models`, `transcribe`, `say`,
//! `bench speech`): argument handling and printing around the library.
//!   models fetch <name> [--models DIR] [--cache DIR]
//!   models list [--models DIR]
//!   models convert <ct2-model-dir> <out.bin>
//!   transcribe <file.wav> [--name base] [--models DIR] [--lang es]   (PCM or µ-law WAV)
//!   transcribe <model.bin> <file.wav> [--lang es] [--threads 2] [--audio-ctx N] [--repeat N]
//!   say --lang es "texto" -o out.wav [--voice es] [--wpm 145]        (8 kHz 16-bit)
//!   bench [--models DIR] [--runs 5]

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::speech::tts::SpeechEngine;
use crate::speech::{convert, models, resample, stt, tts, wav};

pub type Res = Result<(), Box<dyn std::error::Error>>;

/// Runs one speech command; `args` as typed after `clinivox`.
pub fn run(args: &[String]) -> Res {
    let (pos, flags) = split(args);
    let flag = |k: &str| flags.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    let models_dir = PathBuf::from(flag("--models").unwrap_or_else(|| "models".into()));
    let cache_dir = PathBuf::from(flag("--cache").unwrap_or_else(|| "models/cache".into()));
    match pos.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["fetch", name] => fetch(name, &cache_dir, &models_dir),
        ["list"] => {
            for m in models::list(&models_dir)? {
                println!("{:10} {:>12} bytes  {}", m.name, m.bytes, m.path.display());
            }
            Ok(())
        }
        ["convert", dir, out] => {
            let t = Instant::now();
            // --weights q8_0: quantize the big matrices (default f16).
            let weights = match flag("--weights").as_deref() {
                None | Some("f16") => crate::speech::ggml::Weights::F16,
                Some("q8_0") => crate::speech::ggml::Weights::Q8_0,
                Some(other) => return Err(format!("--weights {other:?}: f16 or q8_0").into()),
            };
            let c = convert::convert_dir(Path::new(dir), Path::new(out), weights, &mut |_, _| {})?;
            let table = convert::verify(Path::new(out))?;
            println!(
                "{} tensors, {} bytes, {:?} in {:.1?} (verified {} tensors)",
                c.tensors,
                c.bytes,
                c.hparams,
                t.elapsed(),
                table.tensors.len()
            );
            Ok(())
        }
        ["transcribe", file] => {
            let name = flag("--name").unwrap_or_else(|| models::DEFAULT_MODEL.into());
            let model = models::installed_path(&models_dir, &name)?;
            let opts = stt::TranscribeOptions {
                language: flag("--lang"),
                threads: flag("--threads").map_or(Ok(2), |v| v.parse())?,
                ..Default::default()
            };
            transcribe(&model, Path::new(file), &opts, 1)
        }
        ["say", text] => {
            let lang = flag("--lang").unwrap_or_else(|| "es".into());
            let out = flag("-o").ok_or("say needs -o out.wav")?;
            let mut cfg = tts::EspeakConfig::default();
            // --voice / --wpm: another espeak-ng voice or speed for this language.
            if let Some(v) = cfg.voices.get_mut(&lang) {
                if let Some(name) = flag("--voice") {
                    v.name = name;
                }
                if let Some(wpm) = flag("--wpm") {
                    v.rate_wpm = wpm.parse().map_err(|_| format!("--wpm {wpm:?}: words per minute, a whole number"))?;
                }
            }
            let engine = tts::Espeak::new(cfg);
            let t = Instant::now();
            let pcm = engine.synthesize(text, &lang)?;
            wav::write_i16(Path::new(&out), tts::RATE, &pcm)?;
            println!("{out}: {:.2} s of 8 kHz audio, rendered in {} ms", pcm.len() as f64 / f64::from(tts::RATE), t.elapsed().as_millis());
            Ok(())
        }
        ["bench"] => {
            let runs: usize = flag("--runs").map_or(Ok(5), |v| v.parse())?;
            bench(&models_dir, runs.max(1))
        }
        ["transcribe", model, wav] => {
            let opts = stt::TranscribeOptions {
                language: flag("--lang"),
                threads: flag("--threads").map_or(Ok(2), |v| v.parse())?,
                audio_ctx: flag("--audio-ctx").map(|v| v.parse()).transpose()?,
                initial_prompt: flag("--prompt"),
                candidates: Vec::new(),
                switch_language: None,
            };
            let repeat: u32 = flag("--repeat").map_or(Ok(1), |v| v.parse())?;
            transcribe(Path::new(model), Path::new(wav), &opts, repeat)
        }
        _ => Err("usage: speech fetch <name> [--models DIR] [--cache DIR] | list | \
                  convert <dir> <out> [--weights f16|q8_0] | transcribe <model> <wav> [--lang L] [--threads N] \
                  [--audio-ctx N] [--repeat N] | transcribe <wav> [--name base] [--lang L] | \
                  say --lang L TEXT -o OUT.wav | bench [--runs N]"
            .into()),
    }
}

fn fetch(name: &str, cache: &Path, models_dir: &Path) -> Res {
    let t = Instant::now();
    let mut last = 0;
    let path = models::fetch(name, cache, models_dir, &mut |p| match p {
        models::Progress::Converting { done, total } => {
            let pct = done * 100 / total.max(1);
            if pct / 10 != last / 10 || done == total {
                eprintln!("converting {pct}%");
                last = pct;
            }
        }
        other => eprintln!("{other:?}"),
    })?;
    let table = convert::verify(&path)?;
    println!("{}: {} tensors, {} bytes, {:?} ({:.1?})", path.display(), table.tensors.len(), table.file_len, table.hparams, t.elapsed());
    Ok(())
}

fn transcribe(model: &Path, file: &Path, opts: &stt::TranscribeOptions, repeat: u32) -> Res {
    // Any PCM or µ-law WAV, any rate, band-limited to 16 kHz.
    let audio = wav::read(file)?;
    let pcm = resample::resample(&audio.samples, audio.rate, stt::SAMPLE_RATE);
    let m = stt::Transcriber::load(model)?;
    println!("audio {:.2} s, model load {} ms", pcm.len() as f64 / f64::from(stt::SAMPLE_RATE), m.load_time.as_millis());
    for _ in 0..repeat.max(1) {
        let t = m.transcribe(&pcm, opts)?;
        println!(
            "audio_ctx {} threads {} lang {}: {} ms  \"{}\"",
            t.audio_ctx,
            opts.threads,
            t.language.as_deref().unwrap_or("?"),
            t.elapsed.as_millis(),
            t.text
        );
    }
    Ok(())
}

/// Median time per model × threads × utterance length, real-time factor,
/// memory, and TTS time-to-first-audio. Audio is espeak speech through the
/// product's own 8 kHz → 16 kHz path.
fn bench(models_dir: &Path, runs: usize) -> Res {
    let engine = tts::Espeak::new(tts::EspeakConfig::default());
    println!("model      thr  audio  median ms   RTF   RSS MiB  peak MiB");
    let es = "Quisiera pedir una cita con el cardiólogo para el martes por la mañana, si es posible después de las diez, y también cancelar la que tengo con la dermatóloga.";
    for (name, lang, text) in [
        ("tiny.en", "en", "I would like to book an appointment with the cardiologist next Tuesday morning, if possible after ten, and I also need to cancel the one I have with the dermatologist."),
        ("base", "es", es),
        ("base-q8_0", "es", es),
    ] {
        let path = match models::installed_path(models_dir, name) {
            Ok(p) => p,
            Err(e) => {
                println!("{name:10} skipped: {e}");
                continue;
            }
        };
        let m = stt::Transcriber::load(&path)?;
        let speech8k = engine.synthesize(text, lang)?;
        for threads in [1, 2] {
            for secs in [1usize, 3, 8] {
                let mut clip = speech8k.clone();
                clip.resize(secs * 8_000, 0);
                let pcm = resample::phone_to_asr(&clip);
                let opts = stt::TranscribeOptions {
                    language: Some(lang.into()),
                    threads,
                    ..Default::default()
                };
                let mut times: Vec<f64> = (0..runs)
                    .map(|_| m.transcribe(&pcm, &opts).map(|t| t.elapsed.as_secs_f64()))
                    .collect::<Result<_, _>>()?;
                times.sort_by(f64::total_cmp);
                let med = times[times.len() / 2];
                let (rss, peak) = memory_mib();
                println!(
                    "{name:10} {threads:3} {secs:4} s {:10.0} {:6.3} {rss:8.0} {peak:9.0}",
                    med * 1000.0,
                    med / secs as f64
                );
            }
        }
    }
    let reply = "Su cita queda confirmada para el martes a las diez. ¿Necesita algo más?";
    let (mut first, mut whole) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let mut it = tts::sentences(&engine, reply, "es");
        it.next().transpose()?;
        first.push(t.elapsed().as_secs_f64());
        for s in it {
            s?;
        }
        whole.push(t.elapsed().as_secs_f64());
    }
    first.sort_by(f64::total_cmp);
    whole.sort_by(f64::total_cmp);
    println!(
        "TTS two-sentence reply (espeak-ng, es): first audio {:.0} ms, whole reply {:.0} ms (median of {runs})",
        first[runs / 2] * 1000.0,
        whole[runs / 2] * 1000.0
    );
    Ok(())
}

/// Current and peak resident memory of this process (Linux).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Positional arguments and `--flag value` pairs.
fn split(args: &[String]) -> (Vec<String>, Vec<(String, String)>) {
    let (mut pos, mut flags) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a.starts_with("--") || a == "-o" {
            flags.push((a.clone(), it.next().cloned().unwrap_or_default()));
        } else {
            pos.push(a.clone());
        }
    }
    (pos, flags)
}
