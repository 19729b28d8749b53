//! Reader for CTranslate2 `model.bin` files (binary format version 6).
//!
//! Layout (little endian): `u32 version`, `str spec`, `u32 revision`,
//! `u32 n_vars`, then per variable `str name, u8 rank, u32 dims[rank],
//! u8 dtype, u32 nbytes, data`, then `u32 n_aliases` and `str alias, str
//! target` pairs. Strings are a `u16` length followed by that many bytes,
//! the last one a NUL.
//!
//! The index is built by seeking over the data, so a 500 MB model costs a
//! few KB of memory until a variable is actually read.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};

/// Format versions this reader understands.
pub const SUPPORTED_VERSIONS: &[u32] = &[6];

// Sanity limits: far above any real Whisper model, low enough that a corrupt
// length field is reported instead of triggering a huge allocation.
const MAX_VARS: u32 = 100_000;
const MAX_RANK: u8 = 8;
const MAX_DIM: u32 = 1 << 24;

/// Everything that can be wrong with a CTranslate2 model file.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    #[error("I/O error reading CTranslate2 model: {0}")]
    Io(#[from] io::Error),
    #[error("CTranslate2 model is truncated: {what} at byte {offset} needs {needed} bytes, file ends at {len}")]
    Truncated { what: String, offset: u64, needed: u64, len: u64 },
    #[error("unsupported CTranslate2 model version {0} (supported: {SUPPORTED_VERSIONS:?})")]
    UnsupportedVersion(u32),
    #[error("bad string at byte {offset}: {reason}")]
    BadString { offset: u64, reason: &'static str },
    #[error("variable '{name}': unknown dtype id {id}")]
    UnknownDtype { name: String, id: u8 },
    #[error("variable '{name}': implausible shape {dims:?}")]
    AbsurdShape { name: String, dims: Vec<u32> },
    #[error("variable '{name}': {nbytes} bytes stored but shape {dims:?} of {dtype:?} needs {expected}")]
    SizeMismatch { name: String, dims: Vec<u32>, dtype: DType, nbytes: u32, expected: u64 },
    #[error("implausible {what} count {count}")]
    TooMany { what: &'static str, count: u32 },
    #[error("duplicate variable '{0}'")]
    Duplicate(String),
    #[error("alias '{alias}' points to missing variable '{target}'")]
    DanglingAlias { alias: String, target: String },
    #[error("{bytes} unexpected trailing bytes after the alias table at byte {offset}")]
    TrailingData { offset: u64, bytes: u64 },
    #[error("variable '{0}' not found in model")]
    Missing(String),
    #[error("variable '{name}': expected {expected}, found {found}")]
    Unexpected { name: String, expected: String, found: String },
}

/// Element types, by their on-disk id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    pub fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            _ => return None,
        })
    }

    pub fn id(self) -> u8 {
        match self {
            Self::F32 => 0,
            Self::I8 => 1,
            Self::I16 => 2,
            Self::I32 => 3,
            Self::F16 => 4,
            Self::BF16 => 5,
        }
    }

    pub fn size(self) -> u64 {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One variable of the index; `offset` is where its data starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: String,
    pub dims: Vec<u32>,
    pub dtype: DType,
    pub offset: u64,
    pub nbytes: u32,
}

impl Variable {
    pub fn numel(&self) -> u64 {
        self.dims.iter().map(|&d| u64::from(d)).product()
    }
}

/// Parsed index of a model file.
#[derive(Debug, Clone)]
pub struct Ct2Model {
    pub version: u32,
    pub spec: String,
    pub revision: u32,
    pub variables: Vec<Variable>,
    /// alias name -> target name (e.g. the decoder projection shares the
    /// token embedding).
    pub aliases: HashMap<String, String>,
    by_name: HashMap<String, usize>,
}

impl Ct2Model {
    /// Reads and validates the whole index (not the data) from `r`.
    pub fn read_index<R: Read + Seek>(r: &mut R) -> Result<Self, Ct2Error> {
        let len = r.seek(SeekFrom::End(0))?;
        r.seek(SeekFrom::Start(0))?;
        let mut p = Parser { r, pos: 0, len };

        let version = p.u32("format version")?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(Ct2Error::UnsupportedVersion(version));
        }
        let spec = p.string()?;
        let revision = p.u32("spec revision")?;
        let n_vars = p.u32("variable count")?;
        if n_vars > MAX_VARS {
            return Err(Ct2Error::TooMany { what: "variable", count: n_vars });
        }

        let mut variables = Vec::with_capacity(n_vars as usize);
        let mut by_name = HashMap::new();
        for _ in 0..n_vars {
            let v = p.variable()?;
            if by_name.insert(v.name.clone(), variables.len()).is_some() {
                return Err(Ct2Error::Duplicate(v.name));
            }
            variables.push(v);
        }

        let n_aliases = p.u32("alias count")?;
        if n_aliases > MAX_VARS {
            return Err(Ct2Error::TooMany { what: "alias", count: n_aliases });
        }
        let mut aliases = HashMap::new();
        for _ in 0..n_aliases {
            let alias = p.string()?;
            let target = p.string()?;
            if !by_name.contains_key(&target) {
                return Err(Ct2Error::DanglingAlias { alias, target });
            }
            aliases.insert(alias, target);
        }
        if p.pos != len {
            return Err(Ct2Error::TrailingData { offset: p.pos, bytes: len - p.pos });
        }
        Ok(Self { version, spec, revision, variables, aliases, by_name })
    }

    /// Looks a variable up by name, following aliases.
    pub fn get(&self, name: &str) -> Option<&Variable> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.by_name.get(name).map(|&i| &self.variables[i])
    }

    /// Like [`Self::get`] but a missing variable is an error.
    pub fn var(&self, name: &str) -> Result<&Variable, Ct2Error> {
        self.get(name).ok_or_else(|| Ct2Error::Missing(name.to_string()))
    }

    /// Reads a scalar integer variable such as `encoder/num_heads`.
    pub fn read_int_scalar<R: Read + Seek>(&self, r: &mut R, name: &str) -> Result<i64, Ct2Error> {
        let v = self.var(name)?;
        if v.numel() != 1 {
            return Err(unexpected(v, "a scalar", format!("shape {:?}", v.dims)));
        }
        let b = read_raw(r, v)?;
        Ok(match v.dtype {
            DType::I8 => i64::from(b[0] as i8),
            DType::I16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            DType::I32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            other => return Err(unexpected(v, "an integer", format!("{other:?}"))),
        })
    }
}

/// Reads a variable's raw little-endian bytes.
pub fn read_raw<R: Read + Seek>(r: &mut R, v: &Variable) -> Result<Vec<u8>, Ct2Error> {
    r.seek(SeekFrom::Start(v.offset))?;
    let mut buf = vec![0u8; v.nbytes as usize];
    r.read_exact(&mut buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            Ct2Error::Truncated { what: format!("data of '{}'", v.name), offset: v.offset, needed: u64::from(v.nbytes), len: 0 }
        }
        _ => Ct2Error::Io(e),
    })?;
    Ok(buf)
}

/// Reads a floating point variable as `f32`, whatever its stored float type.
pub fn read_f32<R: Read + Seek>(r: &mut R, v: &Variable) -> Result<Vec<f32>, Ct2Error> {
    let raw = read_raw(r, v)?;
    Ok(match v.dtype {
        DType::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        DType::F16 => raw.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        DType::BF16 => raw.chunks_exact(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)).collect(),
        // Quantized CTranslate2 models carry separate scale variables; they
        // are not supported (the catalogue only lists float16 packages).
        other => return Err(unexpected(v, "a float type", format!("{other:?}"))),
    })
}

/// IEEE half -> single precision (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal: renormalise the mantissa.
        (0, _) => {
            let shift = man.leading_zeros() - 21;
            let man = (man << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (man << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Single -> half precision, round to nearest even (used when a model ships
/// float32 weights but whisper.cpp wants F16 matrices).
pub fn f32_to_f16(f: f32) -> u16 {
    let x = f.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x7f_ffff;
    if exp == 0xff {
        let nan = if man != 0 { 0x200 } else { 0 };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut r = m >> shift;
        let rem = m & ((1 << shift) - 1);
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1; // may carry into the exponent, which is the correct result
    }
    sign | r as u16
}

fn unexpected(v: &Variable, expected: &str, found: String) -> Ct2Error {
    Ct2Error::Unexpected { name: v.name.clone(), expected: expected.to_string(), found }
}

/// Position-tracking reader that turns short reads into `Truncated`.
struct Parser<'a, R> {
    r: &'a mut R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Parser<'_, R> {
    fn need(&self, what: &str, n: u64) -> Result<(), Ct2Error> {
        if self.len.saturating_sub(self.pos) < n {
            return Err(Ct2Error::Truncated { what: what.to_string(), offset: self.pos, needed: n, len: self.len });
        }
        Ok(())
    }

    fn bytes(&mut self, what: &str, n: usize) -> Result<Vec<u8>, Ct2Error> {
        self.need(what, n as u64)?;
        let mut b = vec![0; n];
        self.r.read_exact(&mut b)?;
        self.pos += n as u64;
        Ok(b)
    }

    fn u8(&mut self, what: &str) -> Result<u8, Ct2Error> {
        Ok(self.bytes(what, 1)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, Ct2Error> {
        let b = self.bytes(what, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, Ct2Error> {
        let b = self.bytes(what, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, Ct2Error> {
        let offset = self.pos;
        let n = self.u16("string length")?;
        let mut b = self.bytes("string", usize::from(n))?;
        if b.pop() != Some(0) {
            return Err(Ct2Error::BadString { offset, reason: "missing trailing NUL" });
        }
        String::from_utf8(b).map_err(|_| Ct2Error::BadString { offset, reason: "not UTF-8" })
    }

    fn variable(&mut self) -> Result<Variable, Ct2Error> {
        let name = self.string()?;
        let rank = self.u8(&format!("rank of '{name}'"))?;
        let mut dims = Vec::with_capacity(usize::from(rank.min(MAX_RANK)));
        if rank > MAX_RANK {
            return Err(Ct2Error::AbsurdShape { name, dims: vec![u32::from(rank)] });
        }
        for _ in 0..rank {
            dims.push(self.u32(&format!("dims of '{name}'"))?);
        }
        if dims.iter().any(|&d| d == 0 || d > MAX_DIM) {
            return Err(Ct2Error::AbsurdShape { name, dims });
        }
        let id = self.u8(&format!("dtype of '{name}'"))?;
        let dtype = DType::from_id(id).ok_or(Ct2Error::UnknownDtype { name: name.clone(), id })?;
        let nbytes = self.u32(&format!("byte count of '{name}'"))?;
        let expected = dims
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(u64::from(d)))
            .ok_or_else(|| Ct2Error::AbsurdShape { name: name.clone(), dims: dims.clone() })?;
        if expected != u64::from(nbytes) {
            return Err(Ct2Error::SizeMismatch { name, dims, dtype, nbytes, expected });
        }
        self.need(&format!("data of '{name}'"), expected)?;
        let offset = self.pos;
        self.r.seek(SeekFrom::Current(expected as i64))?;
        self.pos += expected;
        Ok(Variable { name, dims, dtype, offset, nbytes })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{fake_whisper, put_str, Ct2Builder, Var};
    use super::*;
    use std::io::Cursor;

    fn parse(b: &[u8]) -> Result<Ct2Model, Ct2Error> {
        Ct2Model::read_index(&mut Cursor::new(b))
    }

    #[test]
    fn parses_fake_whisper() {
        let bytes = fake_whisper().bytes();
        let m = parse(&bytes).unwrap();
        assert_eq!((m.version, m.spec.as_str(), m.revision), (6, "WhisperSpec", 3));
        let v = m.var("encoder/layer_0/self_attention/linear_0/weight").unwrap();
        assert_eq!((v.dims.clone(), v.dtype, v.nbytes), (vec![24, 8], DType::F16, 384));
        // Aliases resolve to their target.
        let p = m.var("decoder/projection/weight").unwrap();
        assert_eq!(p.name, "decoder/embeddings/weight");
        let mut c = Cursor::new(&bytes);
        assert_eq!(m.read_int_scalar(&mut c, "encoder/num_heads").unwrap(), 2);
        let g = read_f32(&mut c, m.var("encoder/conv1/bias").unwrap()).unwrap();
        assert_eq!((g.len(), g[0]), (8, 2.0));
        assert!(matches!(m.var("nope"), Err(Ct2Error::Missing(_))));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = fake_whisper().bytes();
        // Every prefix must fail cleanly (no panic), and mid-data cuts must
        // name the variable being read.
        for cut in (0..bytes.len()).step_by(7) {
            assert!(parse(&bytes[..cut]).is_err(), "prefix {cut} parsed");
        }
        match parse(&bytes[..200]) {
            Err(Ct2Error::Truncated { what, offset, .. }) => {
                assert!(what.contains("encoder/conv1/weight"), "{what}");
                assert!(offset < 200);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_headers_and_sizes() {
        let mut b = fake_whisper();
        b.version = 5;
        assert!(matches!(parse(&b.bytes()), Err(Ct2Error::UnsupportedVersion(5))));

        let mut b = Ct2Builder { version: 6, ..Default::default() };
        b.vars.push(Var("w".into(), vec![2, 3], 4, vec![0; 10]));
        let e = parse(&b.bytes()).unwrap_err();
        assert!(matches!(e, Ct2Error::SizeMismatch { expected: 12, nbytes: 10, .. }), "{e}");
        assert!(e.to_string().contains("'w'"));

        b.vars[0] = Var("w".into(), vec![2, 0], 4, vec![]);
        assert!(matches!(parse(&b.bytes()), Err(Ct2Error::AbsurdShape { .. })));
        b.vars[0] = Var("w".into(), vec![1 << 25], 1, vec![]);
        assert!(matches!(parse(&b.bytes()), Err(Ct2Error::AbsurdShape { .. })));
        b.vars[0] = Var("w".into(), vec![1; 9], 1, vec![0]);
        assert!(matches!(parse(&b.bytes()), Err(Ct2Error::AbsurdShape { .. })));
        b.vars[0] = Var("w".into(), vec![2], 9, vec![0; 2]);
        assert!(matches!(parse(&b.bytes()), Err(Ct2Error::UnknownDtype { id: 9, .. })));

        b.vars[0] = Var("w".into(), vec![2], 1, vec![0; 2]);
        b.aliases.push(("a".into(), "missing".into()));
        assert!(matches!(parse(&b.bytes()), Err(Ct2Error::DanglingAlias { .. })));
        b.aliases.clear();
        let mut bytes = b.bytes();
        bytes.push(0);
        assert!(matches!(parse(&bytes), Err(Ct2Error::TrailingData { bytes: 1, .. })));
    }

    #[test]
    fn rejects_bad_strings_and_counts() {
        let mut bytes = 6u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&3u16.to_le_bytes());
        bytes.extend_from_slice(b"abc"); // no NUL
        assert!(matches!(parse(&bytes), Err(Ct2Error::BadString { offset: 4, .. })));

        let mut bytes = 6u32.to_le_bytes().to_vec();
        put_str(&mut bytes, "WhisperSpec");
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&bytes), Err(Ct2Error::TooMany { .. })));
    }

    #[test]
    fn half_precision_round_trips() {
        for v in [0.0f32, -0.0, 1.0, -2.5, 65504.0, 6.1e-5, 5.96e-8, 1e-3] {
            let h = f32_to_f16(v);
            let back = f16_to_f32(h);
            assert!((back - v).abs() <= v.abs() * 1e-3 + 6e-8, "{v} -> {h:#x} -> {back}");
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(1e9), 0x7c00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        // All finite halves survive the round trip exactly.
        for h in (0u16..0x7c00).chain(0x8000..0xfc00) {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#x}");
        }
    }
}
