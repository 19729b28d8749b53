//! WAV input and output for the command line and tests: PCM via `hound`,
//! and G.711 µ-law WAV (format tag 7, what phone systems record), which
//! `hound` cannot read, parsed here. The µ-law codec is the textbook one;
//! the media layer owns the product's codec and this copy only serves
//! files and tests.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error("WAV: {0}")]
    Hound(#[from] hound::Error),
}

/// Mono audio in [-1, 1] at its own rate.
#[derive(Debug, Clone)]
pub struct Audio {
    pub rate: u32,
    pub samples: Vec<f32>,
}

/// Reads a PCM (8–32 bit int, float) or µ-law WAV file, downmixed to mono.
pub fn read(path: &Path) -> Result<Audio, WavError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| WavError::Io { path: p.clone(), source })?;
    let bad = |reason: &str| WavError::Format { path: p.clone(), reason: reason.into() };
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    // Walk the chunks for fmt and data.
    let (mut fmt, mut data) = (None, None);
    let mut i = 12;
    while i + 8 <= bytes.len() {
        let id = &bytes[i..i + 4];
        let len = u32::from_le_bytes([bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]]) as usize;
        let body = &bytes[i + 8..(i + 8).saturating_add(len).min(bytes.len())];
        match id {
            b"fmt " => fmt = Some(body),
            b"data" => data = Some(body),
            _ => {}
        }
        i = i.saturating_add(8 + len + (len & 1));
    }
    let (fmt, data) = (fmt.ok_or_else(|| bad("no fmt chunk"))?, data.ok_or_else(|| bad("no data chunk"))?);
    if fmt.len() < 16 {
        return Err(bad("short fmt chunk"));
    }
    let tag = u16::from_le_bytes([fmt[0], fmt[1]]);
    let channels = usize::from(u16::from_le_bytes([fmt[2], fmt[3]]).max(1));
    let rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
    if rate == 0 {
        return Err(bad("sample rate 0"));
    }
    let interleaved: Vec<f32> = match tag {
        7 => data.iter().map(|&c| f32::from(ulaw_decode(c)) / 32768.0).collect(),
        // Everything else (PCM, float, extensible) goes through hound.
        _ => {
            let mut r = hound::WavReader::new(std::io::Cursor::new(&bytes))?;
            let spec = r.spec();
            match spec.sample_format {
                hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>()?,
                hound::SampleFormat::Int => {
                    if !(1..=32).contains(&spec.bits_per_sample) {
                        return Err(bad("unsupported bit depth"));
                    }
                    let scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
                    r.samples::<i32>().map(|s| s.map(|v| v as f32 / scale)).collect::<Result<_, _>>()?
                }
            }
        }
    };
    let samples = interleaved.chunks(channels).map(|c| c.iter().sum::<f32>() / c.len() as f32).collect();
    Ok(Audio { rate, samples })
}

/// Writes 16-bit mono PCM.
pub fn write_i16(path: &Path, rate: u32, pcm: &[i16]) -> Result<(), WavError> {
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec)?;
    for &s in pcm {
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}

/// Writes G.711 µ-law mono (format tag 7) — for tests of the reader and
/// for producing phone-like fixtures.
pub fn write_ulaw(path: &Path, rate: u32, pcm: &[i16]) -> Result<(), WavError> {
    let mut b = Vec::with_capacity(58 + pcm.len());
    let n = pcm.len() as u32;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(50 + n + (n & 1)).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&18u32.to_le_bytes());
    for v in [7u16, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    for v in [1u16, 8, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(b"fact");
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&n.to_le_bytes());
    b.extend(pcm.iter().map(|&s| ulaw_encode(s)));
    if n & 1 == 1 {
        b.push(0);
    }
    std::fs::write(path, b).map_err(|source| WavError::Io { path: path.display().to_string(), source })
}

/// µ-law comes from the media layer's G.711 codec: one implementation.
pub use crate::media::g711::{ulaw_decode, ulaw_encode};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ulaw_and_pcm_files() {
        let dir = tempfile::tempdir().unwrap();
        let pcm: Vec<i16> = (0..801).map(|i| ((i as f32 * 0.1).sin() * 8000.0) as i16).collect();
        let u = dir.path().join("u.wav");
        write_ulaw(&u, 8_000, &pcm).unwrap();
        let a = read(&u).unwrap();
        assert_eq!((a.rate, a.samples.len()), (8_000, 801));
        assert!((a.samples[15] - f32::from(pcm[15]) / 32768.0).abs() < 0.01);
        let p = dir.path().join("p.wav");
        write_i16(&p, 16_000, &pcm).unwrap();
        let a = read(&p).unwrap();
        assert_eq!((a.rate, a.samples.len()), (16_000, 801));
        std::fs::write(&p, b"RIFF\0\0\0\0WAVE").unwrap();
        assert!(read(&p).is_err());
        std::fs::write(&p, b"junk").unwrap();
        assert!(read(&p).is_err());
    }
}
