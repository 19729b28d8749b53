//! Slaney-style mel filterbank, as `librosa.filters.mel(sr, n_fft, n_mels)`
//! (htk=False, norm="slaney") computes it; that is what Whisper's
//! `mel_filters.npz` contains and what whisper.cpp expects in the model file.

/// Row-major `n_mels x (n_fft / 2 + 1)` filterbank for 0 Hz .. sr/2.
pub fn mel_filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let sr = f64::from(sample_rate);
    let n_bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_bins).map(|i| i as f64 * sr / n_fft as f64).collect();

    // n_mels + 2 band edges, evenly spaced on the mel scale.
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let edges: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();

    let mut out = Vec::with_capacity(n_mels * n_bins);
    for m in 0..n_mels {
        let (left, center, right) = (edges[m], edges[m + 1], edges[m + 2]);
        // Slaney normalisation: each triangle has unit area in Hz.
        let norm = 2.0 / (right - left);
        for &f in &fft_freqs {
            let rising = (f - left) / (center - left);
            let falling = (right - f) / (right - center);
            // librosa stores the triangle as f32 before scaling; round the
            // same way so the values match the reference bit for bit.
            let tri = rising.min(falling).max(0.0) as f32;
            out.push((f64::from(tri) * norm) as f32);
        }
    }
    out
}

// Slaney mel scale: linear below 1 kHz (3 bands per 200 Hz), log above.
const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        mel * F_SP
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from openai-whisper's assets/mel_filters.npz
    // ("mel_80"): (row, column, value) for non-zero entries.
    const REFERENCE: &[(usize, usize, f32)] = &[
        (0, 1, 0.024_862_595),
        (1, 1, 0.001_990_822),
        (1, 2, 0.022_871_772),
        (10, 10, 0.019_908_218),
        (10, 11, 0.004_954_375),
        (40, 42, 0.005_411_105),
        (40, 43, 0.014_735_566),
        (40, 44, 0.006_518_19),
        (79, 186, 0.000_366_741_7),
        (79, 192, 0.003_164_711_9),
        (79, 199, 0.000_448_759),
    ];

    #[test]
    fn matches_whisper_reference() {
        let m = mel_filters(16_000, 400, 80);
        assert_eq!(m.len(), 80 * 201);
        for &(r, c, v) in REFERENCE {
            let got = m[r * 201 + c];
            assert!((got - v).abs() < 1e-7, "[{r},{c}] = {got}, want {v}");
        }
        // Row 0 has a single non-zero bin and row 79 stops before Nyquist.
        assert_eq!(m[..201].iter().filter(|&&x| x != 0.0).count(), 1);
        assert_eq!(m[79 * 201 + 200], 0.0);
        let sum40: f32 = m[40 * 201..41 * 201].iter().sum();
        assert!((sum40 - 0.026_664_86).abs() < 1e-6, "row 40 sum {sum40}");
    }

    #[test]
    fn scale_round_trips() {
        for hz in [0.0, 300.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
    }
}
