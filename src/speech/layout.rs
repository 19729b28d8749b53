//! The tensor layout whisper.cpp's loader expects, and where each tensor
//! comes from in a CTranslate2 `WhisperSpec` model.
//!
//! CTranslate2 fuses attention projections: self-attention q/k/v are one
//! `[3d, d]` linear and cross-attention k/v one `[2d, d]` linear. They are
//! split back by rows (row-major, so each part is a contiguous byte range).
//! Key biases are dropped: whisper.cpp has none, and a key bias only adds a
//! per-query constant to the attention logits, which softmax ignores.

use super::ggml::{HParams, TensorType, Weights};

/// A tensor whisper.cpp expects: name, ggml-order shape, type.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub ne: Vec<u32>,
    pub ttype: TensorType,
}

/// The exact tensor set whisper.cpp's loader creates for `hp`
/// (11 + 15 per encoder layer + 24 per decoder layer).
pub fn expected_tensors(hp: &HParams) -> Vec<TensorSpec> {
    plan(hp).into_iter().map(|p| TensorSpec { name: p.name, ne: p.ne, ttype: p.ttype }).collect()
}

pub(super) struct PlanItem {
    pub name: String,
    pub ne: Vec<u32>,
    pub ttype: TensorType,
    pub src: String,
    pub src_dims: Vec<u32>,
    /// Row range of a fused source matrix/bias, `None` for all of it.
    pub rows: Option<(u32, u32)>,
}

/// Maps every whisper.cpp tensor to its CTranslate2 source, in the order
/// whisper.cpp creates them.
pub(super) fn plan(hp: &HParams) -> Vec<PlanItem> {
    let (d, t) = (hp.n_audio_state as u32, hp.n_text_state as u32);
    // Big matrices as the header says (f16 unless quantized); whisper.cpp
    // keeps convolutions f16 in either case.
    let w = hp.weights().map_or(TensorType::F16, Weights::tensor_type);
    let mut p = Plan { items: Vec::new(), w };
    p.push("encoder.positional_embedding", "encoder/position_encodings/encodings", &[hp.n_audio_ctx as u32, d], TensorType::F32);
    p.push("encoder.conv1.weight", "encoder/conv1/weight", &[d, hp.n_mels as u32, 3], TensorType::F16);
    p.conv_bias("encoder.conv1.bias", "encoder/conv1/bias", d);
    p.push("encoder.conv2.weight", "encoder/conv2/weight", &[d, d, 3], TensorType::F16);
    p.conv_bias("encoder.conv2.bias", "encoder/conv2/bias", d);
    p.push("encoder.ln_post.weight", "encoder/layer_norm/gamma", &[d], TensorType::F32);
    p.push("encoder.ln_post.bias", "encoder/layer_norm/beta", &[d], TensorType::F32);
    for i in 0..hp.n_audio_layer {
        p.block(&format!("encoder.blocks.{i}"), &format!("encoder/layer_{i}"), d);
    }
    p.push("decoder.positional_embedding", "decoder/position_encodings/encodings", &[hp.n_text_ctx as u32, t], TensorType::F32);
    p.push("decoder.token_embedding.weight", "decoder/embeddings/weight", &[hp.n_vocab as u32, t], w);
    p.push("decoder.ln.weight", "decoder/layer_norm/gamma", &[t], TensorType::F32);
    p.push("decoder.ln.bias", "decoder/layer_norm/beta", &[t], TensorType::F32);
    for i in 0..hp.n_text_layer {
        let (g, c) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        p.block(&g, &c, t);
        let (x, a) = (format!("{g}.cross_attn"), format!("{c}/attention"));
        p.layer_norm(&format!("{x}_ln"), &format!("{a}/layer_norm"), t);
        p.linear(&format!("{x}.query"), &format!("{a}/linear_0"), t, t);
        // Fused [2t, t] key/value projection; the key bias is dropped.
        let (kv_w, kv_b) = (format!("{a}/linear_1/weight"), format!("{a}/linear_1/bias"));
        p.rows(&format!("{x}.key.weight"), &kv_w, &[2 * t, t], (0, 2), w);
        p.rows(&format!("{x}.value.weight"), &kv_w, &[2 * t, t], (1, 2), w);
        p.rows(&format!("{x}.value.bias"), &kv_b, &[2 * t], (1, 2), TensorType::F32);
        p.linear(&format!("{x}.out"), &format!("{a}/linear_2"), t, t);
    }
    p.items
}

struct Plan {
    items: Vec<PlanItem>,
    /// Type of the big matrices.
    w: TensorType,
}

impl Plan {
    /// Whole variable; ggml order is the reversed row-major shape.
    fn push(&mut self, name: &str, src: &str, dims: &[u32], ttype: TensorType) {
        self.items.push(PlanItem {
            name: name.to_string(),
            ne: dims.iter().rev().copied().collect(),
            ttype,
            src: src.to_string(),
            src_dims: dims.to_vec(),
            rows: None,
        });
    }

    /// Part `part` of `of` equal row blocks of a fused source variable.
    fn rows(&mut self, name: &str, src: &str, dims: &[u32], (part, of): (u32, u32), ttype: TensorType) {
        let h = dims[0] / of;
        let mut ne: Vec<u32> = dims.iter().rev().copied().collect();
        *ne.last_mut().expect("non-empty shape") = h;
        self.items.push(PlanItem {
            name: name.to_string(),
            ne,
            ttype,
            src: src.to_string(),
            src_dims: dims.to_vec(),
            rows: Some((part * h, (part + 1) * h)),
        });
    }

    /// whisper.cpp adds conv biases as `[1, d]` so they broadcast over time.
    fn conv_bias(&mut self, name: &str, src: &str, d: u32) {
        self.push(name, src, &[d], TensorType::F32);
        self.items.last_mut().expect("just pushed").ne = vec![1, d];
    }

    fn layer_norm(&mut self, name: &str, src: &str, n: u32) {
        self.push(&format!("{name}.weight"), &format!("{src}/gamma"), &[n], TensorType::F32);
        self.push(&format!("{name}.bias"), &format!("{src}/beta"), &[n], TensorType::F32);
    }

    fn linear(&mut self, name: &str, src: &str, out: u32, inp: u32) {
        self.push(&format!("{name}.weight"), &format!("{src}/weight"), &[out, inp], self.w);
        self.push(&format!("{name}.bias"), &format!("{src}/bias"), &[out], TensorType::F32);
    }

    /// Layer parts shared by encoder and decoder blocks (state size `n`).
    fn block(&mut self, g: &str, c: &str, n: u32) {
        self.layer_norm(&format!("{g}.mlp_ln"), &format!("{c}/ffn/layer_norm"), n);
        self.linear(&format!("{g}.mlp.0"), &format!("{c}/ffn/linear_0"), 4 * n, n);
        self.linear(&format!("{g}.mlp.2"), &format!("{c}/ffn/linear_1"), n, 4 * n);
        let sa = format!("{c}/self_attention");
        self.layer_norm(&format!("{g}.attn_ln"), &format!("{sa}/layer_norm"), n);
        // Fused [3n, n] q/k/v projection; the key bias is dropped.
        let (w, b) = (format!("{sa}/linear_0/weight"), format!("{sa}/linear_0/bias"));
        self.rows(&format!("{g}.attn.query.weight"), &w, &[3 * n, n], (0, 3), self.w);
        self.rows(&format!("{g}.attn.query.bias"), &b, &[3 * n], (0, 3), TensorType::F32);
        self.rows(&format!("{g}.attn.key.weight"), &w, &[3 * n, n], (1, 3), self.w);
        self.rows(&format!("{g}.attn.value.weight"), &w, &[3 * n, n], (2, 3), self.w);
        self.rows(&format!("{g}.attn.value.bias"), &b, &[3 * n], (2, 3), TensorType::F32);
        self.linear(&format!("{g}.attn.out"), &format!("{sa}/linear_1"), n, n);
    }
}
