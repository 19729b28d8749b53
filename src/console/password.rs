//! Staff passwords: argon2id (the `argon2` crate's defaults, OWASP's
//! recommended 19 MiB, 2 passes), stored as PHC strings, and the rule
//! every new password must meet.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted (as for SIP extensions, issue 13).
pub const MIN_LEN: usize = 12;
/// Longest: argon2 takes any length, a form field should not.
pub const MAX_LEN: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("a password must have at least {MIN_LEN} characters")]
    TooShort,
    #[error("a password must have at most {MAX_LEN} characters")]
    TooLong,
    #[error("a password must not be the user name")]
    IsUserName,
    #[error("the password could not be hashed: {0}")]
    Hash(String),
}

/// The PHC string of `password`, after checking it against the rules.
pub fn hash(username: &str, password: &str) -> Result<String, PasswordError> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if n > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    if password.trim().eq_ignore_ascii_case(username.trim()) {
        return Err(PasswordError::IsUserName);
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches `phc` (a stored hash; a corrupt one matches nothing).
pub fn verify(phc: &str, password: &str) -> bool {
    if password.len() > MAX_LEN * 4 {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Checks running at once: each takes argon2's 19 MiB and tens of
/// milliseconds, so a flood of logins waits here instead of filling the
/// blocking pool's threads and the memory.
const CONCURRENT_CHECKS: usize = 2;

/// [`verify`] on the blocking pool, at most [`CONCURRENT_CHECKS`] at once.
pub async fn verify_bounded(phc: String, password: String) -> bool {
    static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_CHECKS);
    let Ok(_permit) = PERMITS.acquire().await else { return false };
    tokio::task::spawn_blocking(move || verify(&phc, &password)).await.unwrap_or(false)
}

/// A hash no password matches, verified against when the user name is
/// unknown so that the answer takes as long as for a real account.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random: String = (0..32).map(|_| char::from(b'a' + rand::random::<u8>() % 26)).collect();
        hash("", &random).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_rules_hold() {
        let h = hash("marta", "correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(&h, "correct horse battery"));
        assert!(!verify(&h, "correct horse batterY"));
        assert!(!verify("not a hash", "correct horse battery"));
        assert_eq!(hash("marta", "short"), Err(PasswordError::TooShort));
        assert_eq!(hash("marta.lopez.1", "Marta.Lopez.1"), Err(PasswordError::IsUserName));
        assert_eq!(hash("m", &"x".repeat(MAX_LEN + 1)), Err(PasswordError::TooLong));
        assert!(!verify(decoy(), ""));
    }
}
