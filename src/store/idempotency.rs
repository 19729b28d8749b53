//! `Idempotency-Key` bookkeeping: the first request with a key claims it
//! (a row with status 0), runs, and stores its response; a retry with the same
//! key and the same request gets that response again instead of acting twice.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{is_unique_violation, Result, Store};

/// Longer than any API request runs with the default `[http]
/// request_timeout_s` (30 s): a claim still in flight after this was
/// abandoned. The service sets its store's limit from its own timeout
/// ([`Store::with_in_flight_limit`]).
pub const IN_FLIGHT_LIMIT: chrono::Duration = chrono::Duration::seconds(45);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyStart {
    /// First time: go ahead, then call [`Store::idempotency_finish`].
    Proceed,
    /// Seen before with the same request: replay this response.
    Replay { status: u16, body: String },
    /// Seen before with a different request.
    Mismatch,
    /// The first request with this key has not finished yet.
    InFlight,
    /// The first request never finished (abandoned past the store's
    /// in-flight limit, [`IN_FLIGHT_LIMIT`] by default): go ahead as its retry, then finish. It may
    /// have committed before it died, so writes it repeats must recognise
    /// their own effect ([`Store::book_retry`]).
    Resume,
}

impl Store {
    pub async fn idempotency_start(&self, actor: &str, key: &str, request_hash: &str, now: DateTime<Utc>) -> Result<IdempotencyStart> {
        let claimed = sqlx::query("INSERT INTO idempotency_keys (actor, key, request_hash, status, created_at) VALUES ($1, $2, $3, 0, $4)")
            .bind(actor)
            .bind(key)
            .bind(request_hash)
            .bind(now.timestamp())
            .execute(&self.pool)
            .await;
        match claimed {
            Ok(_) => return Ok(IdempotencyStart::Proceed),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let row = sqlx::query("SELECT request_hash, status, body FROM idempotency_keys WHERE actor = $1 AND key = $2")
            .bind(actor)
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        let hash: String = row.try_get("request_hash")?;
        let status: i64 = row.try_get("status")?;
        Ok(if hash != request_hash {
            IdempotencyStart::Mismatch
        } else if status == 0 {
            // A first request that never finished (its client gone, the
            // process killed between its commit and its answer) is taken
            // over once it is older than any request runs: the retry runs
            // again, and the writes it repeats are idempotent (a booking the
            // patient already holds answers with that booking). One retry
            // wins the takeover; the others still see it in flight.
            let cutoff = (now - self.in_flight_limit).timestamp();
            let taken =
                sqlx::query("UPDATE idempotency_keys SET created_at = $1 WHERE actor = $2 AND key = $3 AND status = 0 AND created_at < $4")
                    .bind(now.timestamp())
                    .bind(actor)
                    .bind(key)
                    .bind(cutoff)
                    .execute(&self.pool)
                    .await?;
            if taken.rows_affected() == 1 {
                IdempotencyStart::Resume
            } else {
                IdempotencyStart::InFlight
            }
        } else {
            IdempotencyStart::Replay { status: status as u16, body: row.try_get::<Option<String>, _>("body")?.unwrap_or_default() }
        })
    }

    pub async fn idempotency_finish(&self, actor: &str, key: &str, status: u16, body: &str) -> Result<()> {
        sqlx::query("UPDATE idempotency_keys SET status = $1, body = $2 WHERE actor = $3 AND key = $4")
            .bind(i64::from(status))
            .bind(body)
            .bind(actor)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets a claim whose request failed on the server side, so a retry runs.
    pub async fn idempotency_abandon(&self, actor: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE actor = $1 AND key = $2 AND status = 0")
            .bind(actor)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
