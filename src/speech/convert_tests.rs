//! Unit tests for `convert`, on the synthetic model from `testutil`.
use super::super::testutil::{self, fake_vocab, fake_whisper, AUDIO_CTX, D, N_MELS, TEXT_CTX};
use super::*;
use std::io::Cursor;

fn converted() -> (Converted, Vec<u8>, Vec<u8>) {
    let src = fake_whisper().bytes();
    let mut calls = 0;
    let (c, out) = convert(&mut Cursor::new(&src), &fake_vocab(), Vec::new(), Weights::F16, &mut |_, _| calls += 1).unwrap();
    assert_eq!(calls, c.tensors);
    (c, src, out)
}

fn tensor<'a>(out: &'a [u8], t: &GgmlTable, name: &str) -> &'a [u8] {
    let e = t.tensors.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name}"));
    &out[e.offset as usize..(e.offset + e.nbytes) as usize]
}

fn source<'a>(src: &'a [u8], name: &str) -> &'a [u8] {
    let m = Ct2Model::read_index(&mut Cursor::new(src)).unwrap();
    let v = m.var(name).unwrap();
    &src[v.offset as usize..v.offset as usize + v.nbytes as usize]
}

#[test]
fn fake_model_converts_with_expected_layout() {
    let (c, _, out) = converted();
    let hp = c.hparams;
    assert_eq!((hp.n_audio_state, hp.n_audio_head, hp.n_audio_layer, hp.n_text_layer), (8, 2, 1, 1));
    assert_eq!((hp.n_audio_ctx, hp.n_text_ctx, hp.n_mels, hp.n_vocab), (6, 5, 4, 10));
    assert_eq!(c.tensors, 11 + 15 + 24);
    assert_eq!(c.vocab_tokens, 8);
    assert_eq!(c.bytes, out.len() as u64);
    let t = ggml::read_table(&mut Cursor::new(&out)).unwrap();
    assert_eq!((t.n_mel, t.n_fft, t.vocab_len), (N_MELS, 201, 8));
    let want = expected_tensors(&hp);
    let got: Vec<_> = t.tensors.iter().map(|e| (e.name.as_str(), e.ne.clone(), e.ttype)).collect();
    let want: Vec<_> = want.iter().map(|e| (e.name.as_str(), e.ne.clone(), e.ttype)).collect();
    assert_eq!(got, want);
    let ne = |n: &str| t.tensors.iter().find(|e| e.name == n).unwrap().ne.clone();
    assert_eq!(ne("encoder.conv1.weight"), vec![3, N_MELS, D]);
    assert_eq!(ne("encoder.conv1.bias"), vec![1, D]);
    assert_eq!(ne("encoder.positional_embedding"), vec![D, AUDIO_CTX]);
    assert_eq!(ne("decoder.positional_embedding"), vec![D, TEXT_CTX]);
    assert_eq!(ne("decoder.token_embedding.weight"), vec![D, 10]);
    assert!(!t.tensors.iter().any(|e| e.name.ends_with("key.bias")));
}

#[test]
fn fused_projections_are_split_by_rows() {
    let (_, src, out) = converted();
    let t = ggml::read_table(&mut Cursor::new(&out)).unwrap();
    let m = (D * D * 2) as usize; // bytes of one d x d f16 block
    let qkv = source(&src, "encoder/layer_0/self_attention/linear_0/weight");
    assert_eq!(tensor(&out, &t, "encoder.blocks.0.attn.query.weight"), &qkv[..m]);
    assert_eq!(tensor(&out, &t, "encoder.blocks.0.attn.key.weight"), &qkv[m..2 * m]);
    assert_eq!(tensor(&out, &t, "encoder.blocks.0.attn.value.weight"), &qkv[2 * m..]);
    let kv = source(&src, "decoder/layer_0/attention/linear_1/weight");
    assert_eq!(tensor(&out, &t, "decoder.blocks.0.cross_attn.key.weight"), &kv[..m]);
    assert_eq!(tensor(&out, &t, "decoder.blocks.0.cross_attn.value.weight"), &kv[m..]);

    // Biases become f32: the value bias is the last third of the fused one.
    let b = source(&src, "encoder/layer_0/self_attention/linear_0/bias");
    let want: Vec<u8> =
        b[2 * D as usize * 2..].chunks_exact(2).flat_map(|c| ct2::f16_to_f32(u16::from_le_bytes([c[0], c[1]])).to_le_bytes()).collect();
    assert_eq!(tensor(&out, &t, "encoder.blocks.0.attn.value.bias"), &want[..]);
}

#[test]
fn vocabulary_is_raw_bytes_before_eot() {
    let (_, _, out) = converted();
    // Header: magic + 11 hparams + 2 mel dims + filters, then the vocab.
    let mut pos = 4 + 44 + 8 + (N_MELS as usize * 201 * 4);
    let n = u32::from_le_bytes(out[pos..pos + 4].try_into().unwrap());
    pos += 4;
    let mut toks = Vec::new();
    for _ in 0..n {
        let l = u32::from_le_bytes(out[pos..pos + 4].try_into().unwrap()) as usize;
        toks.push(out[pos + 4..pos + 4 + l].to_vec());
        pos += 4 + l;
    }
    let want: Vec<&[u8]> = vec![b"a", b"b", b" the", b"\n", &[0], &[0xe9], &[0xc3, 0xa9], b"!"];
    assert_eq!(toks, want);
    assert_eq!(token_bytes("Ġ"), Some(vec![b' ']));
    // Unprintable bytes 0x00-0x20, 0x7f-0xa0, 0xad map to U+0100 + index.
    assert_eq!(token_bytes("ġ"), Some(vec![0x7f]));
    assert_eq!(token_bytes("Ń"), Some(vec![0xad]));
    assert_eq!(token_bytes("中"), None);
}

#[test]
fn bad_inputs_are_reported() {
    let src = fake_whisper().bytes();
    let run = |src: &[u8], vocab: &[String]| convert(&mut Cursor::new(src), vocab, Vec::new(), Weights::F16, &mut |_, _| {});
    let e = run(&src, &fake_vocab()[..9]).unwrap_err();
    assert!(e.to_string().contains("9 entries"), "{e}");
    let mut v = fake_vocab();
    v[8] = "x".into();
    assert!(matches!(run(&src, &v), Err(ConvertError::Vocabulary(_))));
    v = fake_vocab();
    v[0] = "中".into();
    assert!(run(&src, &v).unwrap_err().to_string().contains("token 0"));
    let e = run(&src[..src.len() - 3], &fake_vocab()).unwrap_err();
    assert!(matches!(e, ConvertError::Ct2(Ct2Error::Truncated { .. })), "{e}");

    // A model missing a layer variable names it.
    let mut b = fake_whisper();
    b.vars.retain(|v| v.0 != "decoder/layer_0/attention/linear_2/bias");
    let e = run(&b.bytes(), &fake_vocab()).unwrap_err();
    assert!(e.to_string().contains("decoder/layer_0/attention/linear_2/bias"), "{e}");
}

#[test]
fn verify_accepts_good_and_rejects_incomplete_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, out) = converted();
    let good = dir.path().join("good.bin");
    std::fs::write(&good, &out).unwrap();
    assert_eq!(verify(&good).unwrap().tensors.len(), 50);

    let short = dir.path().join("short.bin");
    std::fs::write(&short, &out[..out.len() - 1]).unwrap();
    assert!(matches!(verify(&short), Err(ConvertError::Verify { .. })));

    // Drop the last tensor record entirely: the count check catches it.
    let t = ggml::read_table(&mut Cursor::new(&out)).unwrap();
    let last = t.tensors.last().unwrap();
    let record = 12 + 4 * last.ne.len() + last.name.len();
    let cut = dir.path().join("cut.bin");
    std::fs::write(&cut, &out[..last.offset as usize - record]).unwrap();
    let e = verify(&cut).unwrap_err().to_string();
    assert!(e.contains("49 tensors, expected 50"), "{e}");
}

#[test]
fn convert_dir_reads_vocabulary_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.bin"), fake_whisper().bytes()).unwrap();
    std::fs::write(dir.path().join("vocabulary.json"), serde_json::to_string(&fake_vocab()).unwrap()).unwrap();
    let out = dir.path().join("out.bin");
    let c = convert_dir(dir.path(), &out, Weights::F16, &mut |_, _| {}).unwrap();
    assert_eq!(c.tensors, verify(&out).unwrap().tensors.len());
    let _ = testutil::pattern(0.0, 1);
}

#[test]
fn rows_that_are_not_whole_q8_0_blocks_are_refused() {
    // The fake model's state is 8 wide: its matrices cannot be quantized.
    let src = fake_whisper().bytes();
    let e = convert(&mut Cursor::new(&src), &fake_vocab(), Vec::new(), Weights::Q8_0, &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("q8_0 cannot store"), "{e}");
}
