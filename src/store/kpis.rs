//! The facts behind the clinic's figures (the console's KPI page): the
//! rows of a period, few columns each, read in one pass per table. Sums,
//! rates and percentiles are made from them by `console::kpis`, a pure
//! function tested without a database.

use chrono::{DateTime, Duration, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use sqlx::Row;

use super::availability::{day_start, local_date};
use super::{ts, Backend, Result, Store};

/// Calls of one clinic-local day alike in what the figures count.
#[derive(Debug, Clone, PartialEq)]
pub struct CallFact {
    /// The clinic-local day the calls started.
    pub day: NaiveDate,
    pub direction: String,
    pub language: Option<String>,
    pub outcome: Option<String>,
    /// They were transferred (to a ring group).
    pub transferred: bool,
    /// A transferred call's reason, the head of its summary ("wants: cancel").
    pub transfer_reason: Option<String>,
    pub count: u64,
}

/// Waits before the assistant's replies on the phone, on one clinic-local
/// day, in [`LATENCY_BIN_MS`] bins.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyFact {
    pub day: NaiveDate,
    /// The calls' language; `None` when not asked for by language.
    pub language: Option<String>,
    /// The bin's lower bound.
    pub latency_ms: i64,
    pub count: u64,
}

/// Width of the latency histogram's bins: percentiles are read to this.
pub const LATENCY_BIN_MS: i64 = 50;

/// A booking, confirmation, cancellation or move, by whom it came.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeFact {
    pub at: DateTime<Utc>,
    /// book, confirm, cancel, reschedule.
    pub action: String,
    /// phone, sms, whatsapp, api, staff… (`Channel`).
    pub channel: String,
}

/// A reminder sent, and the patient's reply if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ReminderFact {
    pub sent_at: DateTime<Utc>,
    pub reply: Option<String>,
}

/// An escalation or refill job that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFact {
    /// escalation or refill.
    pub kind: String,
    pub ended_at: DateTime<Utc>,
    pub outcome: Option<String>,
}

/// A callback request.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackFact {
    pub created_at: DateTime<Utc>,
    pub language: String,
    pub done_at: Option<DateTime<Utc>>,
}

/// Everything of a period the figures are made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KpiFacts {
    pub calls: Vec<CallFact>,
    pub latencies: Vec<LatencyFact>,
    pub changes: Vec<ChangeFact>,
    pub reminders: Vec<ReminderFact>,
    pub jobs: Vec<JobFact>,
    /// Appointments whose patient did not come, by when they were due.
    pub no_shows: Vec<DateTime<Utc>>,
    pub callbacks: Vec<CallbackFact>,
}

impl Store {
    /// The facts of `[from, until)`: calls by when they started, replies'
    /// waits (by when they were answered, or of calls in `language` by when
    /// the call started), changes, reminders and callbacks by when they
    /// happened, jobs by when they ended, no-shows by when the appointment
    /// was. Calls and waits of days closed by `now` (before yesterday,
    /// clinic time) come from their roll-ups, written on first need.
    pub async fn kpi_facts(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        language: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<KpiFacts> {
        let (a, b) = (from.timestamp(), until.timestamp());
        let mut f = KpiFacts::default();
        let first = local_date(self.tz, from);
        let last = local_date(self.tz, until - Duration::seconds(1));
        // Yesterday stays live: a call may still be written after midnight.
        let open_from = local_date(self.tz, now) - Duration::days(1);
        let mut live_from = from;
        if first < open_from && first <= last {
            let closed_last = last.min(open_from - Duration::days(1));
            self.roll_up(first, closed_last, now).await?;
            self.rolled(first, closed_last, language, &mut f).await?;
            live_from = day_start(self.tz, closed_last + Duration::days(1)).max(from);
        }
        if live_from < until {
            self.count_calls(live_from, until, language, &mut f).await?;
        }
        let rows = sqlx::query(
            "SELECT at, action, channel FROM audit_log WHERE entity = 'appointment' \
             AND action IN ('book', 'confirm', 'cancel', 'reschedule') AND at >= $1 AND at < $2",
        )
        .bind(a)
        .bind(b)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            f.changes.push(ChangeFact { at: ts(r.try_get("at")?)?, action: r.try_get("action")?, channel: r.try_get("channel")? });
        }
        let rows = sqlx::query("SELECT sent_at, reply FROM reminders WHERE sent_at >= $1 AND sent_at < $2")
            .bind(a)
            .bind(b)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            f.reminders.push(ReminderFact { sent_at: ts(r.try_get("sent_at")?)?, reply: r.try_get("reply")? });
        }
        let rows = sqlx::query(
            "SELECT kind, updated_at, last_outcome FROM jobs WHERE status IN ('done', 'cancelled') AND updated_at >= $1 AND updated_at < $2",
        )
        .bind(a)
        .bind(b)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            f.jobs.push(JobFact { kind: r.try_get("kind")?, ended_at: ts(r.try_get("updated_at")?)?, outcome: r.try_get("last_outcome")? });
        }
        let rows = sqlx::query("SELECT starts_at FROM appointments WHERE status = 'no_show' AND starts_at >= $1 AND starts_at < $2")
            .bind(a)
            .bind(b)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            f.no_shows.push(ts(r.try_get("starts_at")?)?);
        }
        let rows = sqlx::query("SELECT created_at, language, done_at FROM callback_requests WHERE created_at >= $1 AND created_at < $2")
            .bind(a)
            .bind(b)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            f.callbacks.push(CallbackFact {
                created_at: ts(r.try_get("created_at")?)?,
                language: r.try_get("language")?,
                done_at: r.try_get::<Option<i64>, _>("done_at")?.map(ts).transpose()?,
            });
        }
        Ok(f)
    }
}

impl Store {
    /// Calls and waits of `[from, until)` counted by the database per
    /// local day (a busy clinic's year: 100,000 calls, 200,000 replies).
    /// Waits by the reply's own time from an index of (at, latency_ms)
    /// alone; of one language's calls, through the call.
    async fn count_calls(&self, from: DateTime<Utc>, until: DateTime<Utc>, language: Option<&str>, f: &mut KpiFacts) -> Result<()> {
        let (a, b) = (from.timestamp(), until.timestamp());
        let day = local_day_sql(self.tz, "c.started_at", from, until);
        let head = match self.backend {
            Backend::Sqlite => "substr(c.summary, 1, instr(c.summary || ';', ';') - 1)",
            Backend::Postgres => "substr(c.summary, 1, strpos(c.summary || ';', ';') - 1)",
        };
        let sql = format!(
            "SELECT {day} AS day, c.direction, c.language, c.outcome, \
             CAST(CASE WHEN c.transfer_target IS NOT NULL THEN 1 ELSE 0 END AS BIGINT) AS transferred, \
             CASE WHEN c.transfer_target IS NOT NULL THEN {head} END AS reason, COUNT(*) AS n \
             FROM calls c WHERE c.started_at >= $1 AND c.started_at < $2 {} \
             GROUP BY 1, c.direction, c.language, c.outcome, 5, 6",
            if language.is_some() { "AND c.language = $3" } else { "" }
        );
        let mut q = sqlx::query(&sql).bind(a).bind(b);
        if let Some(l) = language {
            q = q.bind(l);
        }
        for r in q.fetch_all(&self.pool).await? {
            f.calls.push(call_fact(&r, r.try_get("day")?)?);
        }
        let sql = match language {
            None => format!(
                "SELECT {} AS day, CAST(NULL AS TEXT) AS language, (t.latency_ms / {LATENCY_BIN_MS}) * {LATENCY_BIN_MS} AS bin, COUNT(*) AS n \
                 FROM call_turns t WHERE t.at >= $1 AND t.at < $2 AND t.latency_ms IS NOT NULL GROUP BY 1, 3",
                local_day_sql(self.tz, "t.at", from, until)
            ),
            Some(_) => format!(
                "SELECT {day} AS day, c.language, (t.latency_ms / {LATENCY_BIN_MS}) * {LATENCY_BIN_MS} AS bin, COUNT(*) AS n \
                 FROM call_turns t JOIN calls c ON c.id = t.call_id \
                 WHERE c.started_at >= $1 AND c.started_at < $2 AND t.latency_ms IS NOT NULL AND c.language = $3 GROUP BY 1, c.language, 3"
            ),
        };
        let mut q = sqlx::query(&sql).bind(a).bind(b);
        if let Some(l) = language {
            q = q.bind(l);
        }
        for r in q.fetch_all(&self.pool).await? {
            f.latencies.push(wait_fact(&r)?);
        }
        Ok(())
    }

    /// Writes the roll-ups of the closed days among the last `days` (those
    /// before yesterday, clinic time) that have none. The service does this
    /// hourly, so that no console view waits for it; a view that finds a
    /// day without one writes it itself.
    pub async fn roll_up_closed_days(&self, days: i64, now: DateTime<Utc>) -> Result<()> {
        let last = local_date(self.tz, now) - Duration::days(2);
        self.roll_up(last - Duration::days(days.max(1) - 1), last, now).await
    }

    /// Which of the days `first..=last` have their roll-up.
    pub async fn rolled_up_days(&self, first: NaiveDate, last: NaiveDate) -> Result<Vec<NaiveDate>> {
        let days: Vec<i64> = sqlx::query_scalar("SELECT day FROM kpi_closed_days WHERE day >= $1 AND day <= $2 ORDER BY day")
            .bind(days_since_epoch(first))
            .bind(days_since_epoch(last))
            .fetch_all(&self.pool)
            .await?;
        days.into_iter().map(epoch_day).collect()
    }

    /// Writes the roll-ups of the closed days `first..=last` that have none:
    /// the calls, and the waits by the call's day and language, counted
    /// once. A day is claimed by its marker row, so two nodes never write
    /// the same day twice.
    async fn roll_up(&self, first: NaiveDate, last: NaiveDate, now: DateTime<Utc>) -> Result<()> {
        let (lo, hi) = (days_since_epoch(first), days_since_epoch(last));
        let done: Vec<i64> = sqlx::query_scalar("SELECT day FROM kpi_closed_days WHERE day >= $1 AND day <= $2")
            .bind(lo)
            .bind(hi)
            .fetch_all(&self.pool)
            .await?;
        let missing: Vec<i64> = (lo..=hi).filter(|d| !done.contains(d)).collect();
        let (Some(&m0), Some(&m1)) = (missing.first(), missing.last()) else { return Ok(()) };
        let (from, until) = (day_start(self.tz, epoch_day(m0)?), day_start(self.tz, epoch_day(m1)? + Duration::days(1)));
        let mut counted = KpiFacts::default();
        self.count_calls(from, until, None, &mut counted).await?;
        // Waits by the call's day and language (the live path counts them by
        // the reply's time when no language is asked: the same day but for
        // a call across midnight).
        let day = local_day_sql(self.tz, "c.started_at", from, until);
        let sql = format!(
            "SELECT {day} AS day, c.language, (t.latency_ms / {LATENCY_BIN_MS}) * {LATENCY_BIN_MS} AS bin, COUNT(*) AS n \
             FROM call_turns t JOIN calls c ON c.id = t.call_id \
             WHERE c.started_at >= $1 AND c.started_at < $2 AND t.latency_ms IS NOT NULL GROUP BY 1, c.language, 3"
        );
        let waits: Vec<LatencyFact> = sqlx::query(&sql)
            .bind(from.timestamp())
            .bind(until.timestamp())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(wait_fact)
            .collect::<Result<_>>()?;
        let mut tx = self.pool.begin().await?;
        for d in missing {
            let claimed = sqlx::query("INSERT INTO kpi_closed_days (day, rolled_at) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING")
                .bind(d)
                .bind(now.timestamp())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if claimed == 0 {
                continue;
            }
            let date = epoch_day(d)?;
            for c in counted.calls.iter().filter(|c| c.day == date) {
                sqlx::query(
                    "INSERT INTO kpi_call_days (day, direction, language, outcome, transferred, reason, n) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(d)
                .bind(&c.direction)
                .bind(&c.language)
                .bind(&c.outcome)
                .bind(i64::from(c.transferred))
                .bind(&c.transfer_reason)
                .bind(c.count as i64)
                .execute(&mut *tx)
                .await?;
            }
            // One row per language: its histogram as "bin:count,…".
            let mut histograms: std::collections::BTreeMap<Option<&str>, String> = std::collections::BTreeMap::new();
            for w in waits.iter().filter(|w| w.day == date) {
                let h = histograms.entry(w.language.as_deref()).or_default();
                if !h.is_empty() {
                    h.push(',');
                }
                h.push_str(&format!("{}:{}", w.latency_ms, w.count));
            }
            for (language, histogram) in histograms {
                sqlx::query("INSERT INTO kpi_wait_days (day, language, histogram) VALUES ($1, $2, $3)")
                    .bind(d)
                    .bind(language)
                    .bind(histogram)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The roll-ups of `first..=last`, of one language's calls when given.
    async fn rolled(&self, first: NaiveDate, last: NaiveDate, language: Option<&str>, f: &mut KpiFacts) -> Result<()> {
        let (lo, hi) = (days_since_epoch(first), days_since_epoch(last));
        let filter = if language.is_some() { " AND language = $3" } else { "" };
        let sql = format!(
            "SELECT day, direction, language, outcome, transferred, reason, n FROM kpi_call_days WHERE day >= $1 AND day <= $2{filter}"
        );
        let mut q = sqlx::query(&sql).bind(lo).bind(hi);
        if let Some(l) = language {
            q = q.bind(l);
        }
        for r in q.fetch_all(&self.pool).await? {
            f.calls.push(call_fact(&r, r.try_get("day")?)?);
        }
        let sql = format!("SELECT day, language, histogram FROM kpi_wait_days WHERE day >= $1 AND day <= $2{filter}");
        let mut q = sqlx::query(&sql).bind(lo).bind(hi);
        if let Some(l) = language {
            q = q.bind(l);
        }
        for r in q.fetch_all(&self.pool).await? {
            let day = epoch_day(r.try_get("day")?)?;
            // Read for every language, the waits carry none (as live).
            let lang: Option<String> = if language.is_some() { r.try_get("language")? } else { None };
            let histogram: String = r.try_get("histogram")?;
            for pair in histogram.split(',').filter(|p| !p.is_empty()) {
                let parsed = pair.split_once(':').and_then(|(b, n)| Some((b.parse::<i64>().ok()?, n.parse::<u64>().ok()?)));
                let Some((bin, count)) = parsed else {
                    return Err(super::StoreError::Corrupt(format!("wait histogram {pair:?}")));
                };
                f.latencies.push(LatencyFact { day, language: lang.clone(), latency_ms: bin, count });
            }
        }
        Ok(())
    }
}

fn call_fact(r: &sqlx::any::AnyRow, day: i64) -> Result<CallFact> {
    Ok(CallFact {
        day: epoch_day(day)?,
        direction: r.try_get("direction")?,
        language: r.try_get("language")?,
        outcome: r.try_get("outcome")?,
        transferred: r.try_get::<i64, _>("transferred")? != 0,
        transfer_reason: r.try_get("reason")?,
        count: r.try_get::<i64, _>("n")?.max(0) as u64,
    })
}

fn wait_fact(r: &sqlx::any::AnyRow) -> Result<LatencyFact> {
    Ok(LatencyFact {
        day: epoch_day(r.try_get("day")?)?,
        language: r.try_get("language")?,
        latency_ms: r.try_get("bin")?,
        count: r.try_get::<i64, _>("n")?.max(0) as u64,
    })
}

fn days_since_epoch(d: NaiveDate) -> i64 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days()
}

/// SQL for the clinic-local day of `column` (seconds since the epoch), as
/// days since 1970-01-01: the column plus the zone's offset, divided by a
/// day, with one branch per offset the zone has within `[from, until)`
/// (summer time: a few). Integers only, so both engines read it alike.
fn local_day_sql(tz: Tz, column: &str, from: DateTime<Utc>, until: DateTime<Utc>) -> String {
    let offset = |t: DateTime<Utc>| i64::from(tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc());
    // (from when, offset): the offset at `from`, then each change, found hour by hour.
    let mut spans = vec![(from, offset(from))];
    let mut t = from;
    while t < until {
        let next = t + Duration::hours(1);
        let o = offset(next);
        if spans.last().is_some_and(|&(_, last)| last != o) {
            spans.push((next, o));
        }
        t = next;
    }
    let day = |o: i64| format!("(({column} + {o}) / 86400)");
    if spans.len() == 1 {
        return day(spans[0].1);
    }
    let mut sql = String::from("CASE");
    for w in spans.windows(2) {
        sql.push_str(&format!(" WHEN {column} < {} THEN {}", w[1].0.timestamp(), day(w[0].1)));
    }
    sql.push_str(&format!(" ELSE {} END", day(spans[spans.len() - 1].1)));
    sql
}

fn epoch_day(days: i64) -> Result<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|e| e.checked_add_signed(Duration::days(days)))
        .ok_or_else(|| super::StoreError::Corrupt(format!("day {days} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_days_follow_summer_time() {
        let tz: Tz = "Europe/Madrid".parse().unwrap();
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // Summer time ends on 25 October 2026.
        let sql = local_day_sql(tz, "x", t("2026-10-01T00:00:00Z"), t("2026-11-01T00:00:00Z"));
        assert_eq!(
            sql,
            format!("CASE WHEN x < {} THEN ((x + 7200) / 86400) ELSE ((x + 3600) / 86400) END", t("2026-10-25T01:00:00Z").timestamp())
        );
        assert_eq!(local_day_sql(tz, "x", t("2026-11-01T00:00:00Z"), t("2026-11-30T00:00:00Z")), "((x + 3600) / 86400)");
        // 23:30 UTC on 24 November is the 25th in Madrid.
        let at = t("2026-11-24T23:30:00Z").timestamp();
        assert_eq!(epoch_day((at + 3600) / 86400).unwrap(), NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
    }
}
