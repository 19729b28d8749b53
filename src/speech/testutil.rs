//! Builders for synthetic CTranslate2 Whisper files used by unit tests.

use super::ct2::f32_to_f16;

/// A variable for [`Ct2Builder`]: name, dims, dtype id, raw bytes.
pub struct Var(pub String, pub Vec<u32>, pub u8, pub Vec<u8>);

#[derive(Default)]
pub struct Ct2Builder {
    pub version: u32,
    pub vars: Vec<Var>,
    pub aliases: Vec<(String, String)>,
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Deterministic values `seed + (i % 1024) / 1024`; tests compare stored
/// bytes, so f16 rounding does not matter.
pub fn pattern(seed: f32, n: usize) -> Vec<f32> {
    (0..n).map(|i| seed + (i % 1024) as f32 / 1024.0).collect()
}

impl Ct2Builder {
    pub fn f16(&mut self, name: &str, dims: &[u32], vals: &[f32]) -> &mut Self {
        let data = vals.iter().flat_map(|&v| f32_to_f16(v).to_le_bytes()).collect();
        self.vars.push(Var(name.into(), dims.to_vec(), 4, data));
        self
    }

    pub fn i16_scalar(&mut self, name: &str, v: i16) -> &mut Self {
        self.vars.push(Var(name.into(), vec![], 2, v.to_le_bytes().to_vec()));
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.version.to_le_bytes());
        put_str(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
        for Var(name, dims, dtype, data) in &self.vars {
            put_str(&mut out, name);
            out.push(dims.len() as u8);
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.push(*dtype);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
        for (a, t) in &self.aliases {
            put_str(&mut out, a);
            put_str(&mut out, t);
        }
        out
    }
}

pub const D: u32 = 8;
pub const N_MELS: u32 = 4;
pub const AUDIO_CTX: u32 = 6;
pub const TEXT_CTX: u32 = 5;

/// Vocabulary of the fake model: 8 regular tokens, then specials.
pub fn fake_vocab() -> Vec<String> {
    ["a", "b", "Ġthe", "Ċ", "Ā", "é", "Ã©", "!", "<|endoftext|>", "<|startoftranscript|>"].iter().map(|s| s.to_string()).collect()
}

/// A complete fake WhisperSpec model: d=8, 2 heads, 1 encoder and 1
/// decoder layer. Every variable gets a distinct seed.
pub fn fake_whisper() -> Ct2Builder {
    let mut b = Ct2Builder { version: 6, ..Default::default() };
    let mut seed = 0.0f32;
    let mut add = |b: &mut Ct2Builder, name: &str, dims: &[u32]| {
        seed += 1.0;
        let n = dims.iter().product::<u32>() as usize;
        b.f16(name, dims, &pattern(seed, n));
    };
    let v = fake_vocab().len() as u32;
    add(&mut b, "encoder/conv1/weight", &[D, N_MELS, 3]);
    add(&mut b, "encoder/conv1/bias", &[D]);
    add(&mut b, "encoder/conv2/weight", &[D, D, 3]);
    add(&mut b, "encoder/conv2/bias", &[D]);
    add(&mut b, "encoder/position_encodings/encodings", &[AUDIO_CTX, D]);
    add(&mut b, "encoder/layer_norm/gamma", &[D]);
    add(&mut b, "encoder/layer_norm/beta", &[D]);
    b.i16_scalar("encoder/num_heads", 2);
    add(&mut b, "decoder/embeddings/weight", &[v, D]);
    add(&mut b, "decoder/position_encodings/encodings", &[TEXT_CTX, D]);
    add(&mut b, "decoder/layer_norm/gamma", &[D]);
    add(&mut b, "decoder/layer_norm/beta", &[D]);
    b.i16_scalar("decoder/num_heads", 2);
    for side in ["encoder", "decoder"] {
        let l = format!("{side}/layer_0");
        for ln in ["self_attention", "ffn"] {
            add(&mut b, &format!("{l}/{ln}/layer_norm/gamma"), &[D]);
            add(&mut b, &format!("{l}/{ln}/layer_norm/beta"), &[D]);
        }
        add(&mut b, &format!("{l}/self_attention/linear_0/weight"), &[3 * D, D]);
        add(&mut b, &format!("{l}/self_attention/linear_0/bias"), &[3 * D]);
        add(&mut b, &format!("{l}/self_attention/linear_1/weight"), &[D, D]);
        add(&mut b, &format!("{l}/self_attention/linear_1/bias"), &[D]);
        add(&mut b, &format!("{l}/ffn/linear_0/weight"), &[4 * D, D]);
        add(&mut b, &format!("{l}/ffn/linear_0/bias"), &[4 * D]);
        add(&mut b, &format!("{l}/ffn/linear_1/weight"), &[D, 4 * D]);
        add(&mut b, &format!("{l}/ffn/linear_1/bias"), &[D]);
    }
    let a = "decoder/layer_0/attention";
    add(&mut b, &format!("{a}/layer_norm/gamma"), &[D]);
    add(&mut b, &format!("{a}/layer_norm/beta"), &[D]);
    add(&mut b, &format!("{a}/linear_0/weight"), &[D, D]);
    add(&mut b, &format!("{a}/linear_0/bias"), &[D]);
    add(&mut b, &format!("{a}/linear_1/weight"), &[2 * D, D]);
    add(&mut b, &format!("{a}/linear_1/bias"), &[2 * D]);
    add(&mut b, &format!("{a}/linear_2/weight"), &[D, D]);
    add(&mut b, &format!("{a}/linear_2/bias"), &[D]);
    b.aliases.push(("decoder/projection/weight".into(), "decoder/embeddings/weight".into()));
    b
}
