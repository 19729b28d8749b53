//! CTranslate2 `WhisperSpec` -> whisper.cpp ggml conversion and verification.
//! Which tensor comes from where is described in `layout`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use super::ct2::{self, Ct2Error, Ct2Model, DType, Variable};
use super::ggml::{self, GgmlError, GgmlTable, GgmlWriter, HParams, TensorType, Weights};
use super::layout::plan;
pub use super::layout::{expected_tensors, TensorSpec};
use super::mel;

const EOT: &str = "<|endoftext|>";

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Ct2(#[from] Ct2Error),
    #[error(transparent)]
    Ggml(#[from] GgmlError),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not a Whisper model: {0}")]
    NotWhisper(String),
    #[error("vocabulary: {0}")]
    Vocabulary(String),
    #[error("verification of {path} failed: {reason}")]
    Verify { path: String, reason: String },
}

/// What a conversion produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub hparams: HParams,
    pub tensors: usize,
    pub bytes: u64,
    /// Regular BPE tokens written (ids below `<|endoftext|>`).
    pub vocab_tokens: usize,
}

/// Reads `vocabulary.txt` (one token per line) or `vocabulary.json` (a JSON
/// array of strings) from a CTranslate2 model directory.
pub fn load_vocabulary(dir: &Path) -> Result<Vec<String>, ConvertError> {
    let txt = dir.join("vocabulary.txt");
    let json = dir.join("vocabulary.json");
    if txt.exists() {
        let s = std::fs::read_to_string(&txt).map_err(|e| io_err(&txt, e))?;
        Ok(s.lines().map(str::to_string).collect())
    } else if json.exists() {
        let s = std::fs::read_to_string(&json).map_err(|e| io_err(&json, e))?;
        serde_json::from_str(&s).map_err(|e| ConvertError::Vocabulary(format!("{}: {e}", json.display())))
    } else {
        Err(ConvertError::Vocabulary(format!("neither vocabulary.txt nor vocabulary.json in {}", dir.display())))
    }
}

/// Converts `model_dir/model.bin` (+ vocabulary) into `out` (created or
/// truncated), its big matrices stored as `weights`. `progress(done, total)`
/// is called after each tensor.
pub fn convert_dir(
    model_dir: &Path,
    out: &Path,
    weights: Weights,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Converted, ConvertError> {
    let vocab = load_vocabulary(model_dir)?;
    let bin = model_dir.join("model.bin");
    let mut r = BufReader::new(File::open(&bin).map_err(|e| io_err(&bin, e))?);
    let f = File::create(out).map_err(|e| io_err(out, e))?;
    let (done, w) = convert(&mut r, &vocab, BufWriter::new(f), weights, progress)?;
    let f = w.into_inner().map_err(|e| io_err(out, e.into_error()))?;
    f.sync_all().map_err(|e| io_err(out, e))?;
    Ok(done)
}

/// Streams a CTranslate2 Whisper model into a ggml writer.
pub fn convert<R: Read + Seek, W: Write>(
    r: &mut R,
    vocab: &[String],
    out: W,
    weights: Weights,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Converted, W), ConvertError> {
    let model = Ct2Model::read_index(r)?;
    if model.spec != "WhisperSpec" {
        return Err(ConvertError::NotWhisper(format!("spec is '{}'", model.spec)));
    }
    let hp = HParams { ftype: weights.ftype(), ..hparams(&model, r)? };
    if vocab.len() != hp.n_vocab as usize {
        return Err(ConvertError::Vocabulary(format!("{} entries but the embedding has {} rows", vocab.len(), hp.n_vocab)));
    }
    let tokens = regular_tokens(vocab)?;
    let filters = mel::mel_filters(16_000, 400, hp.n_mels as usize);
    let mut w = GgmlWriter::new(out, &hp, hp.n_mels as u32, 201, &filters, &tokens)?;

    let plan = plan(&hp);
    for (i, item) in plan.iter().enumerate() {
        let v = model.var(&item.src)?;
        if v.dims != item.src_dims {
            return Err(ConvertError::NotWhisper(format!("'{}' has shape {:?}, expected {:?}", v.name, v.dims, item.src_dims)));
        }
        if item.ttype == TensorType::Q8_0 && item.ne[0] % ggml::Q8_0_BLOCK != 0 {
            return Err(ConvertError::NotWhisper(format!(
                "'{}' has rows of {} values, which q8_0 cannot store (blocks of {})",
                item.name,
                item.ne[0],
                ggml::Q8_0_BLOCK
            )));
        }
        let raw = read_rows(r, v, item.rows)?;
        let data = cast(&raw, v, item.ttype)?;
        w.tensor(&item.name, &item.ne, item.ttype, &data)?;
        progress(i + 1, plan.len());
    }
    let converted = Converted { hparams: hp, tensors: w.tensors_written(), bytes: w.bytes_written(), vocab_tokens: tokens.len() };
    Ok((converted, w.finish()?))
}

/// Re-reads a written file and checks header, tensor set, shapes, types and
/// that the file ends exactly after the last tensor.
pub fn verify(path: &Path) -> Result<GgmlTable, ConvertError> {
    let fail = |reason: String| ConvertError::Verify { path: path.display().to_string(), reason };
    let mut f = BufReader::new(File::open(path).map_err(|e| io_err(path, e))?);
    let table = ggml::read_table(&mut f).map_err(|e| fail(e.to_string()))?;
    let hp = table.hparams;
    if !hp.is_plausible() || hp.n_audio_layer > 64 || hp.n_text_layer > 64 {
        return Err(fail(format!("implausible hyper-parameters {hp:?}")));
    }
    if table.n_mel != hp.n_mels as u32 || table.n_fft != 201 {
        return Err(fail(format!("mel filters {}x{}", table.n_mel, table.n_fft)));
    }
    if table.vocab_len == 0 || table.vocab_len as i32 > hp.n_vocab {
        return Err(fail(format!("{} vocabulary tokens for n_vocab {}", table.vocab_len, hp.n_vocab)));
    }
    let expected = expected_tensors(&hp);
    if table.tensors.len() != expected.len() {
        return Err(fail(format!(
            "{} tensors, expected {} (11 + 15 x {} + 24 x {})",
            table.tensors.len(),
            expected.len(),
            hp.n_audio_layer,
            hp.n_text_layer
        )));
    }
    for (got, want) in table.tensors.iter().zip(&expected) {
        if got.name != want.name || got.ne != want.ne || got.ttype != want.ttype {
            return Err(fail(format!(
                "tensor '{}' {:?} {:?}, expected '{}' {:?} {:?}",
                got.name, got.ne, got.ttype, want.name, want.ne, want.ttype
            )));
        }
    }
    Ok(table)
}

/// Derives whisper.cpp hparams from tensor shapes and the stored head counts.
fn hparams<R: Read + Seek>(m: &Ct2Model, r: &mut R) -> Result<HParams, ConvertError> {
    let shape2 = |name: &str| -> Result<(u32, u32), ConvertError> {
        match m.var(name)?.dims[..] {
            [a, b] => Ok((a, b)),
            ref other => Err(ConvertError::NotWhisper(format!("'{name}' has shape {other:?}"))),
        }
    };
    let (n_audio_ctx, n_audio_state) = shape2("encoder/position_encodings/encodings")?;
    let (n_text_ctx, n_text_state) = shape2("decoder/position_encodings/encodings")?;
    let (n_vocab, _) = shape2("decoder/embeddings/weight")?;
    let n_mels = match m.var("encoder/conv1/weight")?.dims[..] {
        [_, mels, 3] => mels,
        ref other => return Err(ConvertError::NotWhisper(format!("conv1 shape {other:?}"))),
    };
    let layers = |side: &str| (0..).take_while(|i| m.get(&format!("{side}/layer_{i}/ffn/linear_0/weight")).is_some()).count() as i32;
    let heads = |name: &str, r: &mut R| -> Result<i32, ConvertError> {
        let h = m.read_int_scalar(r, name)?;
        if h <= 0 || h > 1024 {
            return Err(ConvertError::NotWhisper(format!("{name} = {h}")));
        }
        Ok(h as i32)
    };
    let hp = HParams {
        n_vocab: n_vocab as i32,
        n_audio_ctx: n_audio_ctx as i32,
        n_audio_state: n_audio_state as i32,
        n_audio_head: heads("encoder/num_heads", r)?,
        n_audio_layer: layers("encoder"),
        n_text_ctx: n_text_ctx as i32,
        n_text_state: n_text_state as i32,
        n_text_head: heads("decoder/num_heads", r)?,
        n_text_layer: layers("decoder"),
        n_mels: n_mels as i32,
        ftype: Weights::F16.ftype(),
    };
    if hp.n_audio_layer == 0 || hp.n_text_layer == 0 || n_audio_state != n_text_state {
        return Err(ConvertError::NotWhisper(format!("inconsistent dimensions {hp:?}")));
    }
    Ok(hp)
}

/// Regular tokens (ids before `<|endoftext|>`) as raw bytes; whisper.cpp
/// synthesises the special tokens itself.
fn regular_tokens(vocab: &[String]) -> Result<Vec<Vec<u8>>, ConvertError> {
    let eot = vocab.iter().position(|t| t == EOT).ok_or_else(|| ConvertError::Vocabulary(format!("no {EOT} token")))?;
    vocab[..eot]
        .iter()
        .enumerate()
        .map(|(id, tok)| token_bytes(tok).ok_or_else(|| ConvertError::Vocabulary(format!("token {id} {tok:?} is not byte-level BPE"))))
        .collect()
}

/// Undoes GPT-2's bytes-to-unicode mapping: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100.. in byte order.
pub fn token_bytes(token: &str) -> Option<Vec<u8>> {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    token
        .chars()
        .map(|c| {
            let c = c as u32;
            if printable(c) {
                Some(c as u8)
            } else if (0x100..0x100 + 68).contains(&c) {
                (0u32..256).filter(|&b| !printable(b)).nth((c - 0x100) as usize).map(|b| b as u8)
            } else {
                None
            }
        })
        .collect()
}

fn read_rows<R: Read + Seek>(r: &mut R, v: &Variable, rows: Option<(u32, u32)>) -> Result<Vec<u8>, ConvertError> {
    let all = ct2::read_raw(r, v)?;
    let Some((a, b)) = rows else { return Ok(all) };
    // Bytes per row = total / rows; dims[0] > 0 is guaranteed by the reader.
    let row = all.len() / v.dims[0] as usize;
    Ok(all[a as usize * row..b as usize * row].to_vec())
}

fn cast(raw: &[u8], v: &Variable, to: TensorType) -> Result<Vec<u8>, ConvertError> {
    Ok(match (v.dtype, to) {
        (DType::F16, TensorType::F16) | (DType::F32, TensorType::F32) => raw.to_vec(),
        (_, TensorType::F32) => floats(raw, v)?.iter().flat_map(|x| x.to_le_bytes()).collect(),
        (_, TensorType::F16) => floats(raw, v)?.iter().flat_map(|&x| ct2::f32_to_f16(x).to_le_bytes()).collect(),
        // Rows are whole blocks: the layout only quantizes matrices whose
        // rows are multiples of 32 (the writer checks the size).
        (_, TensorType::Q8_0) => ggml::quantize_q8_0(&floats(raw, v)?),
    })
}

/// A float variable's values as f32.
fn floats(raw: &[u8], v: &Variable) -> Result<Vec<f32>, ConvertError> {
    Ok(match v.dtype {
        DType::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        DType::F16 => raw.chunks_exact(2).map(|c| ct2::f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        DType::BF16 => raw.chunks_exact(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)).collect(),
        other => {
            return Err(ConvertError::NotWhisper(format!("'{}' is {other:?}; only float16/float32/bfloat16 models are supported", v.name)))
        }
    })
}

fn io_err(path: &Path, source: std::io::Error) -> ConvertError {
    ConvertError::Io { path: path.display().to_string(), source }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
