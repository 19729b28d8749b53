//! Failed identity checks on the phone, counted across calls (table
//! `identity_failures`). Within one call a wrong date of birth already ends
//! in a refusal; these counts stop a stranger from trying again and again on
//! later calls, one guess per call, against one patient or from one number.
//!
//! A subject is a patient (`patient:<id>`) or a calling number, kept only as
//! a SHA-256 digest (`phone:<hex>`): the table answers "how many failures
//! lately", never "who called".

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Result, Store};
use crate::phone::E164;

/// Most patients a name search returns (the conversation then matches
/// fuzzily among them).
const NAME_SEARCH_LIMIT: i64 = 50;

/// The subjects an identity check is about.
pub fn identity_subjects(patients: &[String], phone: Option<&E164>) -> Vec<String> {
    let mut out: Vec<String> = patients.iter().map(|id| format!("patient:{id}")).collect();
    out.extend(phone.map(phone_subject));
    out.sort();
    out.dedup();
    out
}

fn phone_subject(phone: &E164) -> String {
    format!("phone:{}", hex::encode(Sha256::digest(phone.as_str().as_bytes())))
}

impl Store {
    /// The most failures any of `subjects` has had since `since`.
    pub async fn identity_failures_since(&self, subjects: &[String], since: DateTime<Utc>) -> Result<i64> {
        let mut most = 0;
        for s in subjects {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identity_failures WHERE subject = $1 AND at >= $2")
                .bind(s)
                .bind(since.timestamp())
                .fetch_one(&self.pool)
                .await?;
            most = most.max(n);
        }
        Ok(most)
    }

    /// Counts one failed check against each of `subjects`.
    pub async fn record_identity_failure(&self, subjects: &[String], now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for s in subjects {
            sqlx::query("INSERT INTO identity_failures (subject, at) VALUES ($1, $2)")
                .bind(s)
                .bind(now.timestamp())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Failures counted against one patient (for their data export).
    pub async fn identity_failures_of(&self, patient_id: &str) -> Result<Vec<DateTime<Utc>>> {
        let at: Vec<i64> = sqlx::query_scalar("SELECT at FROM identity_failures WHERE subject = $1 ORDER BY at")
            .bind(format!("patient:{patient_id}"))
            .fetch_all(&self.pool)
            .await?;
        Ok(at.into_iter().filter_map(|t| DateTime::from_timestamp(t, 0)).collect())
    }

    /// Forgets failures older than `window` (they no longer count).
    pub(super) async fn purge_identity_failures(&self, window: Duration, now: DateTime<Utc>, dry_run: bool) -> Result<u64> {
        let t = (now - window).timestamp();
        if dry_run {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identity_failures WHERE at < $1").bind(t).fetch_one(&self.pool).await?;
            return Ok(n as u64);
        }
        Ok(sqlx::query("DELETE FROM identity_failures WHERE at < $1").bind(t).execute(&self.pool).await?.rows_affected())
    }

    /// (id, name) of live patients one of whose name words looks like
    /// `word`, vowels and accents aside ("Lopez" finds "López"); at most 50.
    /// Words shorter than three letters find nothing.
    pub async fn patients_with_name_like(&self, word: &str) -> Result<Vec<(String, String)>> {
        let Some(pattern) = name_pattern(word) else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT id, name FROM patients WHERE erased_at IS NULL AND LOWER(name) LIKE $1 ESCAPE '\\' ORDER BY created_at, id LIMIT $2",
        )
        .bind(pattern)
        .bind(NAME_SEARCH_LIMIT)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("name")?))).collect()
    }
}

/// `%l_p_z%` for "López": every vowel (accented or not) matches any one
/// character, so spelling and accents heard loosely still match; letters
/// only, lower case, no other wildcard.
fn name_pattern(word: &str) -> Option<String> {
    let letters: Vec<char> = word.chars().filter(|c| c.is_alphabetic()).flat_map(char::to_lowercase).collect();
    if letters.len() < 3 {
        return None;
    }
    let vowel = |c: char| "aeiouyáàâäãåéèêëíìîïóòôöõúùûüý".contains(c);
    let body: String = letters.into_iter().map(|c| if vowel(c) { '_' } else { c }).collect();
    Some(format!("%{body}%"))
}

/// Subjects of a patient being erased: their id and each of their numbers.
pub(super) fn subjects_of(patient_id: &str, phones: &[String]) -> Vec<String> {
    let phones: Vec<E164> = phones.iter().filter_map(|p| E164::parse(p).ok()).collect();
    let mut out = identity_subjects(&[patient_id.to_string()], None);
    out.extend(phones.iter().map(phone_subject));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns_ignore_vowels_and_case() {
        assert_eq!(name_pattern("López").as_deref(), Some("%l_p_z%"));
        assert_eq!(name_pattern("LOPEZ").as_deref(), Some("%l_p_z%"));
        // No SQL wildcard or escape from the caller's words survives.
        assert_eq!(name_pattern("a%b_c\\d").as_deref(), Some("%_bcd%"));
        assert_eq!(name_pattern("Al"), None);
    }

    #[test]
    fn numbers_are_kept_as_digests() {
        let phone = E164::parse("+34600111222").unwrap();
        let s = identity_subjects(&["p1".into()], Some(&phone));
        assert_eq!(s.len(), 2);
        assert!(s.contains(&"patient:p1".to_string()));
        assert!(s.iter().all(|x| !x.contains("600111222")), "{s:?}");
        assert_eq!(subjects_of("p1", &["+34600111222".into()]), s);
    }
}
