//! Files that hold patients' data — the SQLite database and its WAL, call
//! recordings, registrar bindings — readable by the service's user alone
//! (GDPR Art. 32: no other account on the clinic's machine reads them).
//! Created with these modes whatever the umask, and tightened when an older
//! version left them wider. `main` also sets the umask to 077 so that
//! nothing else the process writes is world-readable either.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of a file holding personal data.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a directory of such files.
pub const DIR_MODE: u32 = 0o700;

/// Creates (or truncates) `path`, owner read-write only.
pub fn create(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(path)?;
    // `mode` applies only when the file is new: an existing one is tightened.
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Creates `dir` (and its parents) as needed; `dir` itself ends owner-only.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
}

/// Tightens `path` to owner-only if it exists (a file left by an older
/// version, or created by a library that knows no modes).
pub fn restrict(path: &Path) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(m) => {
            let mode = if m.is_dir() { DIR_MODE } else { FILE_MODE };
            if m.permissions().mode() & 0o777 != mode {
                fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets the process umask to 077: every file the process creates without
/// an explicit mode is owner-only. Called once by `main`.
pub fn owner_only_umask() {
    // SAFETY: umask(2) only swaps the process's file-creation mask; it
    // cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_directories_are_owner_only_whatever_existed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("recordings/2026");
        create_dir(&sub).unwrap();
        assert_eq!(mode(&sub), DIR_MODE);
        let f = sub.join("call.wav");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        create(&f).unwrap();
        assert_eq!(mode(&f), FILE_MODE);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o664)).unwrap();
        restrict(&f).unwrap();
        assert_eq!(mode(&f), FILE_MODE);
        restrict(&dir.path().join("absent")).unwrap();
    }
}
