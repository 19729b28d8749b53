//! The architecture's invariants, checked on the source (ARCHITECTURE.md,
//! "Invariants"): the protocol, call and conversation cores hold no runtime
//! and read no clock — time is passed in —, and SQL lives in `store`.
//! Comments and `#[cfg(test)]` sections are not looked at.

use std::path::{Path, PathBuf};

/// Sans-IO cores: whole folders (minus their drivers) and single files.
const CORE_DIRS: &[(&str, &[&str])] =
    &[("src/conversation", &["driver.rs", "chat.rs"]), ("src/sip", &["driver.rs", "driver_tcp.rs", "driver_udp.rs"]), ("src/media", &[])];
const CORE_FILES: &[&str] = &[
    "src/speech/endpoint.rs",
    "src/speech/fair_queue.rs",
    "src/speech/vad.rs",
    "src/escalation/policy.rs",
    "src/call/core.rs",
    "src/call/admission.rs",
];
/// What a core may not name: a runtime, or a clock.
const NOT_IN_CORES: &[&str] = &["tokio", "Instant::now()", "Utc::now()", "SystemTime::now()", "Local::now()"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// The code of a file: up to its first `#[cfg(test)]`, without comment lines.
/// Test files (`*tests.rs`) have none.
fn code(path: &Path) -> Vec<(usize, String)> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.ends_with("tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

fn cores() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (dir, drivers) in CORE_DIRS {
        files.extend(rust_files(&root().join(dir)).into_iter().filter(|p| {
            let top = p.parent() == Some(root().join(dir).as_path());
            !(top && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| drivers.contains(&n)))
        }));
    }
    files.extend(CORE_FILES.iter().map(|f| root().join(f)));
    files
}

#[test]
fn the_cores_hold_no_runtime_and_read_no_clock() {
    let files = cores();
    assert!(files.len() > 40, "the core list found only {} files", files.len());
    let mut found = Vec::new();
    for f in &files {
        for (n, line) in code(f) {
            if let Some(word) = NOT_IN_CORES.iter().find(|w| line.contains(*w)) {
                found.push(format!("{}:{n}: {word}: {}", f.strip_prefix(root()).unwrap_or(f).display(), line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "time and I/O belong to the drivers:\n{}", found.join("\n"));
}

#[test]
fn sql_lives_in_the_store() {
    let mut found = Vec::new();
    for f in rust_files(&root().join("src")) {
        let rel = f.strip_prefix(root()).unwrap_or(&f).to_path_buf();
        // The store, and the test helper that makes private schemas for it.
        if rel.starts_with("src/store") || rel == Path::new("src/testing.rs") {
            continue;
        }
        for (n, line) in code(&f) {
            if line.contains("sqlx::") || line.contains("sqlx::query") {
                found.push(format!("{}:{n}: {}", rel.display(), line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "SQL outside src/store:\n{}", found.join("\n"));
}

/// The checks would pass on an empty list; they see what they should.
#[test]
fn the_checks_see_a_violation() {
    let driver = code(&root().join("src/sip/driver.rs"));
    assert!(driver.iter().any(|(_, l)| l.contains("tokio")), "the SIP driver uses tokio and must be seen to");
    let store = code(&root().join("src/store/mod.rs"));
    assert!(store.iter().any(|(_, l)| l.contains("sqlx::")));
}
