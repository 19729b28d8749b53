//! Band-limited sample-rate conversion between the rates the speech layer
//! meets: 8 kHz (the phone), 16 kHz (whisper.cpp) and 22,050 Hz (espeak-ng).
//!
//! A rational polyphase resampler with a Kaiser-windowed sinc low-pass. The
//! filter cuts at the lower of the two Nyquist rates, so one design serves
//! both directions: upsampling 8 → 16 kHz removes the spectral images that
//! plain interpolation leaves above 4 kHz (they confuse the recogniser), and
//! downsampling 22,050 Hz → 8 kHz removes what would otherwise alias into
//! the phone band. It is not a streaming resampler: the speech layer always
//! converts whole utterances or whole TTS sentences, and the filter is
//! symmetric (linear phase) with the input zero-padded at both ends.

use std::f64::consts::PI;

/// Passband edge as a fraction of the lower Nyquist rate (3.4 kHz of the
/// 4 kHz phone band: the telephone channel carries nothing above that).
const PASS: f64 = 0.85;
/// Stop-band attenuation the Kaiser window is designed for, in dB.
const STOP_DB: f64 = 80.0;
/// Above this many phases the kernel is computed per sample instead of
/// tabulated (only for odd, nearly coprime rate pairs; never on our paths).
const MAX_TABLE_PHASES: u64 = 4096;

/// A reusable converter for one rate pair. Cheap to build (a table of
/// `phases × taps` floats); build once per pair and reuse.
#[derive(Debug, Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    /// Up factor L and down factor M after dividing both rates by their gcd.
    up: u64,
    down: u64,
    /// Half the kernel length in input samples.
    half: i64,
    /// Cutoff in cycles per input sample.
    cutoff: f64,
    beta: f64,
    /// `table[phase * taps + k]`, or empty when computed on the fly.
    table: Vec<f32>,
}

impl Resampler {
    /// A converter from `from` Hz to `to` Hz. Rates of 0 are treated as 1
    /// so that bad input can never divide by zero.
    pub fn new(from: u32, to: u32) -> Self {
        let (from, to) = (from.max(1), to.max(1));
        let g = gcd(u64::from(from), u64::from(to));
        let (up, down) = (u64::from(to) / g, u64::from(from) / g);
        let low = f64::from(from.min(to));
        // Transition band from PASS·Nyq to Nyq, so the stop band starts at
        // the target Nyquist: what would alias is attenuated by STOP_DB.
        let cutoff = 0.5 * low * (1.0 + PASS) / 2.0 / f64::from(from);
        let width = 0.5 * low * (1.0 - PASS) / f64::from(from);
        // Kaiser's formula for the length of a filter with this transition.
        let taps = (STOP_DB - 8.0) / (2.285 * 2.0 * PI * width);
        let half = (taps / 2.0).ceil() as i64 + 1;
        let beta = 0.1102 * (STOP_DB - 8.7);
        let mut r = Self { from, to, up, down, half, cutoff, beta, table: Vec::new() };
        if up <= MAX_TABLE_PHASES && from != to {
            let n = r.taps();
            let mut table = Vec::with_capacity(up as usize * n);
            for phase in 0..up {
                let frac = phase as f64 / up as f64;
                table.extend((0..n).map(|k| r.kernel(k as i64 - half + 1, frac)));
            }
            r.table = table;
        }
        r
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.from, self.to)
    }

    /// Output length for `n` input samples (rounded down).
    pub fn output_len(&self, n: usize) -> usize {
        (n as u64 * self.up / self.down) as usize
    }

    /// Converts a whole signal.
    pub fn process(&self, x: &[f32]) -> Vec<f32> {
        if self.from == self.to {
            return x.to_vec();
        }
        let n_out = self.output_len(x.len());
        let taps = self.taps();
        let mut out = Vec::with_capacity(n_out);
        for n in 0..n_out as u64 {
            // Output n sits at input time n·M/L = base + phase/L.
            let pos = n * self.down;
            let base = (pos / self.up) as i64;
            let phase = pos % self.up;
            let mut acc = 0.0f32;
            let first = base - self.half + 1;
            if self.table.is_empty() {
                let frac = phase as f64 / self.up as f64;
                for k in 0..taps as i64 {
                    if let Some(&s) = usize::try_from(first + k).ok().and_then(|i| x.get(i)) {
                        acc += s * self.kernel(k - self.half + 1, frac);
                    }
                }
            } else {
                let row = &self.table[phase as usize * taps..][..taps];
                // Clip the kernel to the signal instead of padding it.
                let lo = (-first).max(0) as usize;
                let hi = ((x.len() as i64 - first).min(taps as i64)).max(0) as usize;
                if lo < hi {
                    let start = (first + lo as i64) as usize;
                    acc = row[lo..hi].iter().zip(&x[start..start + (hi - lo)]).map(|(h, s)| h * s).sum();
                }
            }
            out.push(acc);
        }
        out
    }

    /// Converts 16-bit PCM, saturating on overshoot (Gibbs ringing can
    /// exceed full scale by a few percent on clipped input).
    pub fn process_i16(&self, x: &[i16]) -> Vec<i16> {
        let f: Vec<f32> = x.iter().map(|&s| f32::from(s)).collect();
        self.process(&f).into_iter().map(|v| v.round().clamp(-32768.0, 32767.0) as i16).collect()
    }

    fn taps(&self) -> usize {
        (2 * self.half) as usize
    }

    /// Windowed-sinc tap at input offset `k` from the base sample, for an
    /// output that lies `frac` of a sample after the base.
    fn kernel(&self, k: i64, frac: f64) -> f32 {
        let t = k as f64 - frac;
        let half = self.half as f64;
        if t.abs() >= half {
            return 0.0;
        }
        let w = bessel_i0(self.beta * (1.0 - (t / half).powi(2)).sqrt()) / bessel_i0(self.beta);
        let fc = self.cutoff;
        let sinc = if t.abs() < 1e-12 { 2.0 * fc } else { (2.0 * PI * fc * t).sin() / (PI * t) };
        // The sum of these taps is 1 at any phase (the kernel is sampled
        // once per input sample), so the level is kept in both directions.
        (sinc * w) as f32
    }
}

/// Converts a whole f32 signal in one call (builds a [`Resampler`]).
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    Resampler::new(from, to).process(x)
}

/// Phone audio (8 kHz, 16-bit) to whisper.cpp input (16 kHz, f32 in [-1, 1]).
pub fn phone_to_asr(pcm: &[i16]) -> Vec<f32> {
    let f: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
    resample(&f, 8_000, 16_000)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Modified Bessel function of the first kind, order 0 (power series; the
/// terms fall fast for the β ≈ 8 used here).
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, q) = (1.0, 1.0, x * x / 4.0);
    for k in 1..64 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-16 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64, amp: f64) -> Vec<f32> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n).map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32).collect()
    }

    /// Amplitude of the `freq` component (Goertzel-style correlation) over
    /// the middle of the signal, away from the zero-padded edges.
    fn amplitude(x: &[f32], freq: f64, rate: u32) -> f64 {
        let x = &x[x.len() / 8..x.len() * 7 / 8];
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let ph = 2.0 * PI * freq * i as f64 / f64::from(rate);
            re += f64::from(s) * ph.cos();
            im += f64::from(s) * ph.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    fn rms(x: &[f32]) -> f64 {
        let x = &x[x.len() / 8..x.len() * 7 / 8];
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    #[test]
    fn tone_keeps_frequency_and_level_on_all_paths() {
        for (from, to) in [(8_000, 16_000), (22_050, 8_000), (16_000, 8_000), (22_050, 16_000)] {
            let y = resample(&tone(1000.0, from, 1.0, 0.5), from, to);
            assert_eq!(y.len(), to as usize, "{from}->{to}");
            let a = amplitude(&y, 1000.0, to);
            assert!((a - 0.5).abs() < 0.005, "{from}->{to}: level {a}");
            // All of the energy is at 1 kHz: nothing leaked elsewhere.
            let total = rms(&y) * 2f64.sqrt();
            assert!(db(total / a).abs() < 0.05, "{from}->{to}: {total} vs {a}");
        }
    }

    #[test]
    fn passband_is_flat_to_3400_hz() {
        for f in [300.0, 2000.0, 3400.0] {
            let y = resample(&tone(f, 22_050, 0.5, 0.5), 22_050, 8_000);
            let a = amplitude(&y, f, 8_000);
            assert!(db(a / 0.5).abs() < 0.2, "{f} Hz: {:.2} dB", db(a / 0.5));
        }
    }

    #[test]
    fn downsampling_rejects_content_above_target_nyquist() {
        // 4.1–10 kHz would alias into the phone band; it must drop ≥ 40 dB.
        for f in [4_100.0, 5_000.0, 7_000.0, 10_000.0] {
            let y = resample(&tone(f, 22_050, 0.5, 0.5), 22_050, 8_000);
            let att = db(rms(&y) / (0.5 / 2f64.sqrt()));
            assert!(att < -40.0, "{f} Hz only {att:.1} dB down");
        }
    }

    #[test]
    fn upsampling_rejects_images() {
        // A 1 kHz tone at 8 kHz has an image at 7 kHz once zero-stuffed;
        // linear interpolation leaves it about 25 dB down, we need ≥ 40 dB.
        for f in [1_000.0, 3_000.0] {
            let y = resample(&tone(f, 8_000, 0.5, 0.5), 8_000, 16_000);
            let image = amplitude(&y, 8_000.0 - f, 16_000);
            assert!(db(image / 0.5) < -40.0, "{f} Hz image {:.1} dB", db(image / 0.5));
            let above = amplitude(&y, 8_000.0 + f, 16_000).max(image);
            assert!(db(above / 0.5) < -40.0);
        }
    }

    #[test]
    fn edge_cases_do_not_panic() {
        assert!(resample(&[], 8_000, 16_000).is_empty());
        assert_eq!(resample(&[1.0], 8_000, 16_000).len(), 2);
        assert_eq!(resample(&[0.25; 10], 8_000, 8_000), vec![0.25; 10]);
        assert_eq!(resample(&[0.0; 10], 0, 0).len(), 10);
        // Coprime rates take the untabulated path.
        let y = resample(&tone(440.0, 44_101, 0.1, 0.5), 44_101, 8_000);
        assert_eq!(y.len(), 800 - 1);
        let r = Resampler::new(22_050, 8_000);
        assert_eq!(r.process_i16(&[i16::MAX; 500]).len(), 181);
    }

    #[test]
    fn phone_to_asr_scales_to_unit_range() {
        let pcm: Vec<i16> = (0..8_000).map(|i| if i % 2 == 0 { 16_384 } else { 16_384 }).collect();
        let y = phone_to_asr(&pcm);
        assert_eq!(y.len(), 16_000);
        assert!((y[8_000] - 0.5).abs() < 1e-3);
    }
}
