//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) companding.
//!
//! Linear samples are 16-bit signed PCM. G.711 itself works on 14-bit
//! (µ-law) and 13-bit (A-law) magnitudes; we scale so that decoded values use
//! the full 16-bit range (µ-law peaks at ±32124, A-law at ±32256), which is
//! what virtually every VoIP stack does.
//!
//! µ-law has two codes for zero: 0xFF (+0) and 0x7F (−0). Both decode to 0.
//! The encoder emits 0xFF for 0 and 0x7F for the tiny negatives −1..−3 that
//! round to −0, so `encode(decode(0x7F)) == 0xFF`; every other code
//! round-trips exactly. A-law has no negative zero (0xD5 = +8, 0x55 = −8).

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// The two G.711 laws, i.e. the audio codecs we negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, static RTP payload type 0.
    Pcmu,
    /// A-law, static RTP payload type 8.
    Pcma,
}

impl Codec {
    /// Static payload type from RFC 3551 table 4.
    pub fn static_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// Encoding name as used in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Encode one sample.
    #[inline]
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => ulaw_encode(sample),
            Codec::Pcma => alaw_encode(sample),
        }
    }

    /// Decode one code.
    #[inline]
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => ULAW_TABLE[code as usize],
            Codec::Pcma => ALAW_TABLE[code as usize],
        }
    }

    /// Encode `min(pcm.len(), out.len())` samples into `out`; returns the count.
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) -> usize {
        let n = pcm.len().min(out.len());
        // Matching once outside the loop lets the compiler vectorise each arm.
        match self {
            Codec::Pcmu => out[..n].iter_mut().zip(pcm).for_each(|(o, &s)| *o = ulaw_encode(s)),
            Codec::Pcma => out[..n].iter_mut().zip(pcm).for_each(|(o, &s)| *o = alaw_encode(s)),
        }
        n
    }

    /// Decode `min(codes.len(), out.len())` codes into `out`; returns the count.
    pub fn decode_into(self, codes: &[u8], out: &mut [i16]) -> usize {
        let n = codes.len().min(out.len());
        let table = match self {
            Codec::Pcmu => &ULAW_TABLE,
            Codec::Pcma => &ALAW_TABLE,
        };
        out[..n].iter_mut().zip(codes).for_each(|(o, &c)| *o = table[c as usize]);
        n
    }
}

/// Encode a 20 ms frame (160 samples) without allocating.
pub fn encode_frame(codec: Codec, pcm: &[i16; FRAME_SAMPLES], out: &mut [u8; FRAME_SAMPLES]) {
    codec.encode_into(pcm, out);
}

/// Decode a 20 ms frame (160 codes) without allocating.
pub fn decode_frame(codec: Codec, codes: &[u8; FRAME_SAMPLES], out: &mut [i16; FRAME_SAMPLES]) {
    codec.decode_into(codes, out);
}

/// µ-law bias: G.711 adds 33 to the 14-bit magnitude; ×4 for 16-bit input.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude that still fits after adding the bias.
const ULAW_CLIP: i32 = 32635;

/// Encode one 16-bit sample to µ-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let s = sample as i32;
    // Sign bit set in the code means positive (codes are transmitted inverted).
    let (mag, mask) = if s < 0 { (-s, 0x7F) } else { (s, 0xFF) };
    let biased = mag.min(ULAW_CLIP) + ULAW_BIAS;
    // Segment = position of the leading one above bit 7 (biased >= 0x84 > 0x80).
    let seg = (31 - biased.leading_zeros() as i32) - 7;
    let mantissa = (biased >> (seg + 3)) & 0x0F;
    ((seg << 4) as u8 | mantissa as u8) ^ mask
}

/// Decode one µ-law code to 16-bit PCM.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[code as usize]
}

/// Encode one 16-bit sample to A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    // Work on the 13-bit value G.711 specifies. Negative values use the
    // one's-complement magnitude so −8 (decoded 0x55) maps back to 0x55.
    let v = (sample as i32) >> 3;
    let (mag, mask) = if v < 0 { (-v - 1, 0x55) } else { (v, 0xD5) };
    let code = if mag >= 0x1000 {
        0x7F // clip to the largest segment/mantissa
    } else if mag < 0x20 {
        // Segment 0 has the same step (2) as segment 1: the linear region.
        (mag >> 1) as u8
    } else {
        let seg = (31 - mag.leading_zeros() as i32) - 4;
        ((seg << 4) as u8) | ((mag >> seg) & 0x0F) as u8
    };
    code ^ mask
}

/// Decode one A-law code to 16-bit PCM.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[code as usize]
}

const fn ulaw_decode_calc(code: u8) -> i16 {
    let u = !code;
    let mantissa = (u & 0x0F) as i32;
    let seg = ((u & 0x70) >> 4) as i32;
    // Reconstruct at the middle of the quantisation interval, then unbias.
    let t = ((mantissa << 3) + ULAW_BIAS) << seg;
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

const fn alaw_decode_calc(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mantissa = (a & 0x0F) as i32;
    let seg = ((a & 0x70) >> 4) as i32;
    // Mid-interval reconstruction: +8 (half step) in the 16-bit domain.
    let t = match seg {
        0 => (mantissa << 4) + 8,
        _ => ((mantissa << 4) + 0x108) << (seg - 1),
    };
    // After the 0x55 toggle, bit 7 set means positive.
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn build_table(ulaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if ulaw { ulaw_decode_calc(i as u8) } else { alaw_decode_calc(i as u8) };
        i += 1;
    }
    t
}

/// Decode tables are built at compile time: decoding is one load per sample.
static ULAW_TABLE: [i16; 256] = build_table(true);
static ALAW_TABLE: [i16; 256] = build_table(false);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_all_codes_round_trip() {
        for c in 0..=255u8 {
            let back = ulaw_encode(ulaw_decode(c));
            if c == 0x7F {
                // −0 decodes to 0, which G.711 encodes as +0.
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, c, "code {c:#04x}");
            }
        }
    }

    #[test]
    fn alaw_all_codes_round_trip() {
        for c in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "code {c:#04x}");
        }
    }

    #[test]
    fn reference_vectors() {
        // µ-law: zero, extremes, segment boundaries.
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0xEF), 132);
        // A-law: no zero code, ±8 around it, extremes 0xAA / 0x2A.
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        // Silence patterns commonly seen on the wire.
        assert_eq!(Codec::Pcmu.encode(0), 0xFF);
        assert_eq!(Codec::Pcma.encode(0), 0xD5);
    }

    #[test]
    fn encoders_are_monotonic_over_all_inputs() {
        // Map codes to their decoded value; that must never decrease as input grows.
        let (mut pu, mut pa) = (i16::MIN, i16::MIN);
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            assert!(u >= pu && a >= pa, "non-monotonic at {s}");
            (pu, pa) = (u, a);
        }
    }

    #[test]
    fn quantisation_error_is_bounded() {
        // Error never exceeds half the largest step (µ: 1024, A: 1024) plus clipping.
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            for law in [Codec::Pcmu, Codec::Pcma] {
                let d = law.decode(law.encode(s)) as i32;
                assert!((d - s as i32).abs() <= 1024, "{law:?} {s} -> {d}");
            }
        }
    }

    #[test]
    fn decode_tables_are_symmetric() {
        for c in 0..128u8 {
            assert_eq!(ulaw_decode(c), -ulaw_decode(c | 0x80));
            assert_eq!(alaw_decode(c), -alaw_decode(c | 0x80));
        }
    }

    #[test]
    fn frame_helpers() {
        let mut pcm = [0i16; FRAME_SAMPLES];
        for (i, s) in pcm.iter_mut().enumerate() {
            *s = ((i as i32 - 80) * 400) as i16;
        }
        for law in [Codec::Pcmu, Codec::Pcma] {
            let mut codes = [0u8; FRAME_SAMPLES];
            let mut back = [0i16; FRAME_SAMPLES];
            encode_frame(law, &pcm, &mut codes);
            decode_frame(law, &codes, &mut back);
            for (a, b) in pcm.iter().zip(back.iter()) {
                assert!((*a as i32 - *b as i32).abs() <= 1024);
            }
            // Mismatched lengths process the shorter one.
            assert_eq!(law.encode_into(&pcm[..10], &mut codes), 10);
            assert_eq!(law.decode_into(&codes, &mut back[..5]), 5);
        }
    }
}
