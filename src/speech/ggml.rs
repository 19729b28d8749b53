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
    /// 0 = all f32, 1 = big matrices f16.
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
    /// `4 * n_state`) cannot overflow; `ftype` is 0 or 1.
    pub fn is_plausible(&self) -> bool {
        let a = self.to_array();
        a[..10].iter().all(|&v| v > 0 && v <= 1 << 20) && matches!(self.ftype, 0 | 1)
    }

    /// whisper.cpp treats a model as multilingual from this vocabulary size.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }
}

/// Tensor element types used by whisper models (ggml type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32 = 0,
    F16 = 1,
}

impl TensorType {
    pub fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }

    fn from_id(id: i32) -> Option<Self> {
        match id {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            _ => None,
        }
    }
}

/// Byte size of a tensor, `None` on overflow.
pub fn tensor_bytes(ne: &[u32], ttype: TensorType) -> Option<u64> {
    ne.iter().try_fold(ttype.size(), |acc, &d| acc.checked_mul(u64::from(d)))
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
}
