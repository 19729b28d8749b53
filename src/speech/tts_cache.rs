//! A cache in front of a [`SpeechEngine`] for fixed prompts (greetings,
//! menus, "one moment please"): a bounded in-memory LRU plus an optional
//! directory that survives restarts.
//!
//! The key is a 64-bit FNV-1a hash of the engine identity (engine, voice,
//! rate) and the text, so changing a voice or rate in config never serves
//! stale audio. Disk entries are raw little-endian i16 at 8 kHz, written to
//! a temporary name and renamed, so a crash never leaves a torn entry.
//! Entries are small (a 3-second prompt is 48 KB); nothing evicts the disk
//! directory — fixed prompts are a bounded set.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::tts::{SpeechEngine, TtsError};

pub struct CachedEngine<E> {
    inner: E,
    mem: Mutex<Lru>,
    dir: Option<PathBuf>,
}

impl<E: SpeechEngine> CachedEngine<E> {
    /// `capacity` prompts in memory; `dir` (created if missing) for the
    /// disk tier, or `None` for memory only.
    pub fn new(inner: E, capacity: usize, dir: Option<PathBuf>) -> Result<Self, TtsError> {
        if let Some(d) = &dir {
            fs::create_dir_all(d)?;
        }
        Ok(Self { inner, mem: Mutex::new(Lru::new(capacity.max(1))), dir })
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// Renders `texts` ahead of time (at start-up) so the first caller
    /// does not wait for them.
    pub fn prewarm<'a>(&self, texts: impl IntoIterator<Item = &'a str>, lang: &str) -> Result<(), TtsError> {
        for t in texts {
            self.synthesize(t, lang)?;
        }
        Ok(())
    }

    fn path(&self, key: u64) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{key:016x}.pcm")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every update is one insert), so a poisoned lock is still usable.
        self.mem.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<E: SpeechEngine> SpeechEngine for CachedEngine<E> {
    fn synthesize(&self, text: &str, lang: &str) -> Result<Vec<i16>, TtsError> {
        let key = cache_key(&self.inner.identity(lang)?, text);
        if let Some(hit) = self.lock().get(key) {
            return Ok(hit.to_vec());
        }
        if let Some(p) = self.path(key) {
            if let Some(pcm) = read_pcm(&p) {
                self.lock().put(key, Arc::new(pcm.clone()));
                return Ok(pcm);
            }
        }
        let pcm = self.inner.synthesize(text, lang)?;
        if let Some(p) = self.path(key) {
            write_pcm(&p, &pcm)?;
        }
        self.lock().put(key, Arc::new(pcm.clone()));
        Ok(pcm)
    }

    fn identity(&self, lang: &str) -> Result<String, TtsError> {
        self.inner.identity(lang)
    }
}

/// FNV-1a over identity, a NUL separator, then the text: stable across
/// Rust versions and platforms (std's hasher is not guaranteed to be).
pub fn cache_key(identity: &str, text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes().chain([0]).chain(text.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn read_pcm(p: &Path) -> Option<Vec<i16>> {
    let bytes = fs::read(p).ok()?;
    if bytes.len() % 2 != 0 {
        return None; // not one of ours; re-render and overwrite
    }
    Some(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect())
}

fn write_pcm(p: &Path, pcm: &[i16]) -> std::io::Result<()> {
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, p)
}

/// Least-recently-used map; eviction scans for the oldest tick, which is
/// fine for the few hundred prompts a clinic has.
struct Lru {
    cap: usize,
    tick: u64,
    map: HashMap<u64, (Arc<Vec<i16>>, u64)>,
}

impl Lru {
    fn new(cap: usize) -> Self {
        Self { cap, tick: 0, map: HashMap::new() }
    }

    fn get(&mut self, k: u64) -> Option<Arc<Vec<i16>>> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(&k).map(|e| {
            e.1 = tick;
            e.0.clone()
        })
    }

    fn put(&mut self, k: u64, v: Arc<Vec<i16>>) {
        self.tick += 1;
        if !self.map.contains_key(&k) && self.map.len() >= self.cap {
            if let Some(old) = self.map.iter().min_by_key(|e| e.1 .1).map(|e| *e.0) {
                self.map.remove(&old);
            }
        }
        self.map.insert(k, (v, self.tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speech::tts::{Espeak, EspeakConfig};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Deterministic fake engine that counts calls.
    struct Fake {
        rate: u32,
        calls: AtomicU64,
    }

    impl SpeechEngine for Fake {
        fn synthesize(&self, text: &str, _lang: &str) -> Result<Vec<i16>, TtsError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            Ok(text.bytes().map(|b| i16::from(b) * self.rate as i16).collect())
        }
        fn identity(&self, lang: &str) -> Result<String, TtsError> {
            Ok(format!("fake|{lang}|{}", self.rate))
        }
    }

    fn fake(rate: u32) -> Fake {
        Fake { rate, calls: AtomicU64::new(0) }
    }

    #[test]
    fn memory_hit_skips_the_engine_and_lru_evicts_oldest() {
        let c = CachedEngine::new(fake(1), 2, None).unwrap();
        let a = c.synthesize("a", "es").unwrap();
        assert_eq!(c.synthesize("a", "es").unwrap(), a);
        assert_eq!(c.inner().calls.load(Ordering::Relaxed), 1);
        c.synthesize("b", "es").unwrap();
        c.synthesize("a", "es").unwrap(); // a is now newer than b
        c.synthesize("c", "es").unwrap(); // evicts b
        assert_eq!(c.inner().calls.load(Ordering::Relaxed), 3);
        c.synthesize("a", "es").unwrap();
        assert_eq!(c.inner().calls.load(Ordering::Relaxed), 3);
        c.synthesize("b", "es").unwrap();
        assert_eq!(c.inner().calls.load(Ordering::Relaxed), 4);
        // Another language is another entry.
        c.synthesize("a", "en").unwrap();
        assert_eq!(c.inner().calls.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn disk_tier_survives_a_restart_and_keys_on_settings() {
        let dir = tempfile::tempdir().unwrap();
        let first = CachedEngine::new(fake(2), 8, Some(dir.path().into())).unwrap();
        let a = first.synthesize("hola", "es").unwrap();
        drop(first);
        let again = CachedEngine::new(fake(2), 8, Some(dir.path().into())).unwrap();
        assert_eq!(again.synthesize("hola", "es").unwrap(), a);
        assert_eq!(again.inner().calls.load(Ordering::Relaxed), 0);
        // A different rate is a different key, never stale audio.
        let other = CachedEngine::new(fake(3), 8, Some(dir.path().into())).unwrap();
        assert_ne!(other.synthesize("hola", "es").unwrap(), a);
        assert_eq!(other.inner().calls.load(Ordering::Relaxed), 1);
        // A torn file is ignored and rewritten.
        let key = cache_key("fake|es|2", "hola");
        fs::write(dir.path().join(format!("{key:016x}.pcm")), [1u8]).unwrap();
        let again = CachedEngine::new(fake(2), 8, Some(dir.path().into())).unwrap();
        assert_eq!(again.synthesize("hola", "es").unwrap(), a);
    }

    #[test]
    fn key_is_stable() {
        assert_eq!(cache_key("", ""), 0xaf63_bd4c_8601_b7df);
        assert_ne!(cache_key("ab", "c"), cache_key("a", "bc"));
    }

    #[test]
    fn espeak_cache_hit_is_identical_without_running_espeak() {
        let dir = tempfile::tempdir().unwrap();
        let c = CachedEngine::new(Espeak::new(EspeakConfig::default()), 16, Some(dir.path().into())).unwrap();
        let text = "Gracias por llamar a la Clínica San Rafael.";
        let a = c.synthesize(text, "es").unwrap();
        assert_eq!(c.inner().invocations(), 1);
        assert_eq!(c.synthesize(text, "es").unwrap(), a);
        assert_eq!(c.inner().invocations(), 1);
        let fresh = CachedEngine::new(Espeak::new(EspeakConfig::default()), 16, Some(dir.path().into())).unwrap();
        assert_eq!(fresh.synthesize(text, "es").unwrap(), a);
        assert_eq!(fresh.inner().invocations(), 0);
    }
}
