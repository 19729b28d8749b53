//! whisper.cpp's legacy ggml model file: writer and header/table reader.
//!
//! Layout (little endian, all integers `i32`/`u32`): magic `"ggml"`, eleven
//! hparams, mel filters (`n_mel`, `n_fft`, `n_mel*n_fft` f32), vocabulary
//! (`n`, then `len` + bytes per token), then tensors until end of file:
//! `n_dims, name_len, ttype, ne[n_dims], name, data`. `ne` is in ggml order
//! (fastest-varying dimension first), i.e. the reverse of a row-major shape.
//! There is no alignment padding.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// `"ggml"` read as a little-endian u32.
pub const GGML_MAGIC: u32 = 0x6767_6d6c;

// Limits for the reader so a corrupt header is reported, not allocated.
const MAX_NAME: u32 = 1024;
const MAX_TOKEN: u32 = 1024;
const MAX_VOCAB: u32 = 1 << 20;
const MAX_MEL: u32 = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum GgmlError {
    #[error("I/O error on ggml model: {0}")]
    Io(#[from] io::Error),
    #[error("not a ggml model (magic {0:#010x})")]
    BadMagic(u32),
    #[error("ggml model truncated: {what} at byte {offset}")]
    Truncated { what: String, offset: u64 },
    #[error("ggml model header is corrupt: {0}")]
    Corrupt(String),
    #[error("tensor '{name}': {got} data bytes for shape {ne:?} {ttype:?}, expected {expected}")]
    DataSize { name: String, ne: Vec<u32>, ttype: TensorType, got: usize, expected: u64 },
}

/// whisper.cpp hyper-parameters, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HParams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    /// 0 = all f32, 1 = big matrices f16, 7 = big matrices q8_0; written
    /// as whisper.cpp's quantizer does, plus 1000 × the quantization format
    /// version for quantized files ([`Weights::ftype`]).
    pub ftype: i32,
}

impl HParams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    fn from_array(a: [i32; 11]) -> Self {
        Self {
            n_vocab: a[0],
            n_audio_ctx: a[1],
            n_audio_state: a[2],
            n_audio_head: a[3],
            n_audio_layer: a[4],
            n_text_ctx: a[5],
            n_text_state: a[6],
            n_text_head: a[7],
            n_text_layer: a[8],
            n_mels: a[9],
            ftype: a[10],
        }
    }

    /// All sizes positive and small enough that shape arithmetic (such as
    /// `4 * n_state`) cannot overflow; `ftype` is one this project writes.
    pub fn is_plausible(&self) -> bool {
        let a = self.to_array();
        a[..10].iter().all(|&v| v > 0 && v <= 1 << 20) && self.weights().is_some()
    }

    /// The type of the big matrices, from `ftype` (`None`: one this project
    /// does not write).
    pub fn weights(&self) -> Option<Weights> {
        [Weights::F16, Weights::Q8_0].into_iter().find(|w| w.ftype() == self.ftype)
    }

    /// whisper.cpp treats a model as multilingual from this vocabulary size.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }
}

/// ggml's quantization format version, written into a quantized file's
/// `ftype` (`ftype + 1000 × version`), as whisper.cpp's quantizer does.
const QNT_VERSION: i32 = 2;

/// How a model's big matrices (linear weights, token embedding) are stored;
/// convolutions stay f16, biases, norms and position tables f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    F16,
    /// 8-bit blocks ([`TensorType::Q8_0`]): half the size, and faster to
    /// multiply on CPUs.
    Q8_0,
}

impl Weights {
    pub fn ftype(self) -> i32 {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => 7 + 1000 * QNT_VERSION,
        }
    }

    pub fn tensor_type(self) -> TensorType {
        match self {
            Self::F16 => TensorType::F16,
            Self::Q8_0 => TensorType::Q8_0,
        }
    }
}

/// Tensor element types used by whisper models (ggml type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32 = 0,
    F16 = 1,
    /// Blocks of [`Q8_0_BLOCK`] values along a row: an f16 scale `d` and
    /// 32 signed bytes `q`, each value being `d × q`.
    Q8_0 = 8,
}

/// Values per `Q8_0` block.
pub const Q8_0_BLOCK: u32 = 32;
/// Bytes per `Q8_0` block: the f16 scale and the 32 quants.
const Q8_0_BLOCK_BYTES: u64 = 2 + Q8_0_BLOCK as u64;

impl TensorType {
    fn from_id(id: i32) -> Option<Self> {
        match id {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            8 => Some(Self::Q8_0),
            _ => None,
        }
    }
}

/// Byte size of a tensor, `None` on overflow or when a quantized tensor's
/// rows (`ne[0]`) are not whole blocks.
pub fn tensor_bytes(ne: &[u32], ttype: TensorType) -> Option<u64> {
    let (&row, rest) = ne.split_first()?;
    let row_bytes = match ttype {
        TensorType::F32 => 4 * u64::from(row),
        TensorType::F16 => 2 * u64::from(row),
        TensorType::Q8_0 if row % Q8_0_BLOCK == 0 => u64::from(row / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES,
        TensorType::Q8_0 => return None,
    };
    rest.iter().try_fold(row_bytes, |acc, &d| acc.checked_mul(u64::from(d)))
}

/// Quantizes `values` (whole rows of a multiple of [`Q8_0_BLOCK`] values)
/// to `Q8_0` blocks as ggml's reference quantizer does: the scale is the
/// block's largest magnitude over 127, each quant the value over the scale,
/// rounded half away from zero.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / Q8_0_BLOCK as usize * Q8_0_BLOCK_BYTES as usize);
    for block in values.chunks(Q8_0_BLOCK as usize) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&super::ct2::f32_to_f16(d).to_le_bytes());
        out.extend(block.iter().map(|x| (x * inv).round().clamp(-127.0, 127.0) as i8 as u8));
    }
    out
}

/// The values of `Q8_0` blocks (the inverse of [`quantize_q8_0`], up to
/// rounding).
pub fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(Q8_0_BLOCK_BYTES as usize)
        .flat_map(|b| {
            let d = super::ct2::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            b[2..].iter().map(move |&q| d * f32::from(q as i8))
        })
        .collect()
}

/// Streams a model file: header first via [`GgmlWriter::new`], then tensors.
pub struct GgmlWriter<W: Write> {
    w: W,
    tensors: usize,
    bytes: u64,
}

impl<W: Write> GgmlWriter<W> {
    /// Writes magic, hparams, the `n_mel x n_fft` filterbank and the
    /// vocabulary (raw token bytes, in id order).
    pub fn new(mut w: W, hp: &HParams, n_mel: u32, n_fft: u32, filters: &[f32], vocab: &[Vec<u8>]) -> Result<Self, GgmlError> {
        if filters.len() as u64 != u64::from(n_mel) * u64::from(n_fft) {
            return Err(GgmlError::Corrupt(format!("{} filter values for {n_mel}x{n_fft}", filters.len())));
        }
        let mut head = Vec::with_capacity(64 + filters.len() * 4);
        head.extend_from_slice(&GGML_MAGIC.to_le_bytes());
        for v in hp.to_array() {
            head.extend_from_slice(&v.to_le_bytes());
        }
        head.extend_from_slice(&n_mel.to_le_bytes());
        head.extend_from_slice(&n_fft.to_le_bytes());
        for f in filters {
            head.extend_from_slice(&f.to_le_bytes());
        }
        head.extend_from_slice(&(vocab.len() as u32).to_le_bytes());
        for tok in vocab {
            head.extend_from_slice(&(tok.len() as u32).to_le_bytes());
            head.extend_from_slice(tok);
        }
        w.write_all(&head)?;
        Ok(Self { w, tensors: 0, bytes: head.len() as u64 })
    }

    /// Appends one tensor; `ne` is in ggml order, `data` little endian.
    pub fn tensor(&mut self, name: &str, ne: &[u32], ttype: TensorType, data: &[u8]) -> Result<(), GgmlError> {
        let expected = tensor_bytes(ne, ttype).unwrap_or(u64::MAX);
        if ne.is_empty() || ne.len() > 4 || data.len() as u64 != expected {
            return Err(GgmlError::DataSize { name: name.to_string(), ne: ne.to_vec(), ttype, got: data.len(), expected });
        }
        let mut head = Vec::with_capacity(12 + 4 * ne.len() + name.len());
        head.extend_from_slice(&(ne.len() as i32).to_le_bytes());
        head.extend_from_slice(&(name.len() as i32).to_le_bytes());
        head.extend_from_slice(&(ttype as i32).to_le_bytes());
        for d in ne {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(name.as_bytes());
        self.w.write_all(&head)?;
        self.w.write_all(data)?;
        self.tensors += 1;
        self.bytes += (head.len() + data.len()) as u64;
        Ok(())
    }

    pub fn tensors_written(&self) -> usize {
        self.tensors
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, GgmlError> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// One tensor record found by [`read_table`].
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub ne: Vec<u32>,
    pub ttype: TensorType,
    pub offset: u64,
    pub nbytes: u64,
}

/// Header and tensor table of a ggml model file.
#[derive(Debug, Clone)]
pub struct GgmlTable {
    pub hparams: HParams,
    pub n_mel: u32,
    pub n_fft: u32,
    pub vocab_len: u32,
    pub tensors: Vec<TensorEntry>,
    pub file_len: u64,
}

/// Reads the header and every tensor record (seeking over data), checking
/// that each record fits inside the file.
pub fn read_table<R: Read + Seek>(r: &mut R) -> Result<GgmlTable, GgmlError> {
    let file_len = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    let mut p = Reader { r, pos: 0, len: file_len };
    let magic = p.u32("magic")?;
    if magic != GGML_MAGIC {
        return Err(GgmlError::BadMagic(magic));
    }
    let mut a = [0i32; 11];
    for v in &mut a {
        *v = p.u32("hparams")? as i32;
    }
    let hparams = HParams::from_array(a);
    let n_mel = p.u32("mel filter rows")?;
    let n_fft = p.u32("mel filter columns")?;
    if n_mel > MAX_MEL || n_fft > MAX_MEL {
        return Err(GgmlError::Corrupt(format!("mel filters {n_mel}x{n_fft}")));
    }
    p.skip("mel filters", u64::from(n_mel) * u64::from(n_fft) * 4)?;
    let vocab_len = p.u32("vocabulary size")?;
    if vocab_len > MAX_VOCAB {
        return Err(GgmlError::Corrupt(format!("vocabulary of {vocab_len}")));
    }
    for i in 0..vocab_len {
        let n = p.u32("token length")?;
        if n > MAX_TOKEN {
            return Err(GgmlError::Corrupt(format!("token {i} has length {n}")));
        }
        p.skip("token", u64::from(n))?;
    }
    let mut tensors = Vec::new();
    while p.pos < file_len {
        let n_dims = p.u32("tensor header")?;
        let name_len = p.u32("tensor header")?;
        let tid = p.u32("tensor header")? as i32;
        if n_dims == 0 || n_dims > 4 || name_len == 0 || name_len > MAX_NAME {
            return Err(GgmlError::Corrupt(format!("tensor record at byte {} has n_dims {n_dims}, name length {name_len}", p.pos - 12)));
        }
        let ttype = TensorType::from_id(tid).ok_or_else(|| GgmlError::Corrupt(format!("tensor type {tid}")))?;
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(p.u32("tensor dims")?);
        }
        let name = String::from_utf8(p.bytes("tensor name", name_len as usize)?)
            .map_err(|_| GgmlError::Corrupt("tensor name is not UTF-8".into()))?;
        let nbytes = tensor_bytes(&ne, ttype).ok_or_else(|| GgmlError::Corrupt(format!("tensor '{name}' shape {ne:?}")))?;
        let offset = p.pos;
        p.skip(&format!("data of tensor '{name}'"), nbytes)?;
        tensors.push(TensorEntry { name, ne, ttype, offset, nbytes });
    }
    Ok(GgmlTable { hparams, n_mel, n_fft, vocab_len, tensors, file_len })
}

struct Reader<'a, R> {
    r: &'a mut R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Reader<'_, R> {
    fn skip(&mut self, what: &str, n: u64) -> Result<(), GgmlError> {
        if self.len.saturating_sub(self.pos) < n {
            return Err(GgmlError::Truncated { what: what.to_string(), offset: self.pos });
        }
        self.pos += n;
        self.r.seek(SeekFrom::Start(self.pos))?;
        Ok(())
    }

    fn bytes(&mut self, what: &str, n: usize) -> Result<Vec<u8>, GgmlError> {
        if self.len.saturating_sub(self.pos) < n as u64 {
            return Err(GgmlError::Truncated { what: what.to_string(), offset: self.pos });
        }
        let mut b = vec![0; n];
        self.r.read_exact(&mut b)?;
        self.pos += n as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgmlError> {
        let b = self.bytes(what, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn hp() -> HParams {
        HParams { n_vocab: 3, n_mels: 2, ftype: 1, ..Default::default() }
    }

    fn sample() -> Vec<u8> {
        let vocab = vec![b"a".to_vec(), vec![0xff, 0x20], Vec::new()];
        let mut w = GgmlWriter::new(Vec::new(), &hp(), 2, 3, &[0.5; 6], &vocab).unwrap();
        w.tensor("x.bias", &[1, 2], TensorType::F32, &[0; 8]).unwrap();
        w.tensor("x.weight", &[2, 2], TensorType::F16, &[1; 8]).unwrap();
        assert_eq!(w.tensors_written(), 2);
        let n = w.bytes_written();
        let out = w.finish().unwrap();
        assert_eq!(out.len() as u64, n);
        out
    }

    #[test]
    fn write_then_read_table() {
        let buf = sample();
        assert_eq!(&buf[..4], b"lmgg"); // the magic as stored on disk
        let t = read_table(&mut Cursor::new(&buf)).unwrap();
        assert_eq!(t.hparams, hp());
        assert_eq!((t.n_mel, t.n_fft, t.vocab_len), (2, 3, 3));
        assert_eq!(t.tensors.len(), 2);
        assert_eq!(t.tensors[0].name, "x.bias");
        assert_eq!(t.tensors[0].ne, vec![1, 2]);
        assert_eq!(t.tensors[1].ttype, TensorType::F16);
        assert_eq!(t.tensors[1].offset + 8, buf.len() as u64);
        // header: magic + 11 hparams + 2 + 6 floats + vocab (4 + 5 + 6 + 4)
        let header = 4 + 44 + 8 + 24 + 4 + 5 + 6 + 4;
        assert_eq!(t.tensors[0].offset, header + 12 + 8 + 6);
    }

    #[test]
    fn rejects_wrong_data_size() {
        let mut w = GgmlWriter::new(Vec::new(), &hp(), 0, 0, &[], &[]).unwrap();
        let e = w.tensor("t", &[4], TensorType::F32, &[0; 12]).unwrap_err();
        assert!(matches!(e, GgmlError::DataSize { expected: 16, .. }), "{e}");
    }

    #[test]
    fn detects_truncation_and_bad_magic() {
        let buf = sample();
        let e = read_table(&mut Cursor::new(&buf[..buf.len() - 1])).unwrap_err();
        assert!(matches!(&e, GgmlError::Truncated { what, .. } if what.contains("x.weight")), "{e}");
        let e = read_table(&mut Cursor::new(&buf[..30])).unwrap_err();
        assert!(matches!(e, GgmlError::Truncated { .. }), "{e}");
        let mut bad = buf.clone();
        bad[0] = b'x';
        assert!(matches!(read_table(&mut Cursor::new(&bad)), Err(GgmlError::BadMagic(_))));
    }

    #[test]
    fn rejects_corrupt_tensor_header() {
        let mut buf = sample();
        let first = read_table(&mut Cursor::new(&buf)).unwrap().tensors[0].offset as usize;
        // n_dims of the first tensor record sits 12 + 8 + 6 bytes before data.
        buf[first - 26] = 9;
        let e = read_table(&mut Cursor::new(&buf)).unwrap_err();
        assert!(matches!(e, GgmlError::Corrupt(_)), "{e}");
    }

    #[test]
    fn q8_0_blocks_hold_each_value_within_half_a_step() {
        let values: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.37).sin() * if i < 32 { 0.02 } else { 3.0 }).collect();
        let bytes = quantize_q8_0(&values);
        assert_eq!(bytes.len(), 2 * 34);
        let back = dequantize_q8_0(&bytes);
        for (block, (v, b)) in values.chunks(32).zip(back.chunks(32)).enumerate() {
            let amax = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            // Half a quantization step, plus the f16 scale's own rounding.
            let tolerance = amax / 127.0 * 0.5 + amax * 1e-3;
            for (x, y) in v.iter().zip(b) {
                assert!((x - y).abs() <= tolerance, "block {block}: {x} came back as {y}");
            }
            // The largest magnitude is a full-scale quant.
            let top = v.iter().position(|x| x.abs() == amax).unwrap();
            assert_eq!(bytes[block * 34 + 2 + top] as i8, if v[top] > 0.0 { 127 } else { -127 });
        }
        // A block of zeros has scale 0 and stays zero (no division by zero).
        assert_eq!(dequantize_q8_0(&quantize_q8_0(&[0.0; 32])), vec![0.0; 32]);
    }

    #[test]
    fn q8_0_tensors_are_sized_in_blocks_and_read_back() {
        assert_eq!(tensor_bytes(&[64, 3], TensorType::Q8_0), Some(2 * 34 * 3));
        assert_eq!(tensor_bytes(&[48, 3], TensorType::Q8_0), None, "rows must be whole blocks");
        let hp = HParams { ftype: Weights::Q8_0.ftype(), ..hp() };
        assert_eq!(hp.ftype, 2007, "as whisper.cpp's quantizer writes it");
        assert_eq!(hp.weights(), Some(Weights::Q8_0));
        let mut w = GgmlWriter::new(Vec::new(), &hp, 0, 0, &[], &[]).unwrap();
        let data = quantize_q8_0(&[0.5; 64]);
        w.tensor("m.weight", &[32, 2], TensorType::Q8_0, &data).unwrap();
        let e = w.tensor("n.weight", &[32, 2], TensorType::Q8_0, &data[..67]).unwrap_err();
        assert!(matches!(e, GgmlError::DataSize { expected: 68, .. }), "{e}");
        let buf = w.finish().unwrap();
        let t = read_table(&mut Cursor::new(&buf)).unwrap();
        assert_eq!(t.hparams.weights(), Some(Weights::Q8_0));
        assert_eq!((t.tensors[0].ttype, t.tensors[0].nbytes), (TensorType::Q8_0, 68));
        assert_eq!(HParams { ftype: 3, ..hp }.weights(), None, "q4_1 is not one of ours");
    }
}
