//! The clinic's figures (the console's KPI page and its CSV): made from
//! the store's facts of a period (`Store::kpi_facts`) by [`compute`], a
//! pure function, per day, week or month in the clinic's time zone.
//!
//! Definitions (the page says them too):
//! - **handled**: inbound calls the assistant answered (not refused
//!   because every line was busy);
//! - **contained**: handled calls that ended booked, confirmed, cancelled,
//!   rescheduled or answered (info), with no staff;
//! - **transfer reason**: what the caller wanted, from the transfer's
//!   summary ("wants: cancel; …"), bookings of any specialty as one;
//! - **turn latency**: end of the caller's speech → first reply audio,
//!   nearest-rank percentiles of every reply on the phone;
//! - **recovered**: escalation calls (unanswered reminders) that ended
//!   with the appointment confirmed, cancelled or moved;
//! - **refilled**: freed slots a waiting-list patient accepted;
//! - callbacks are counted by the day they were asked for; "closed" is how
//!   many of those are done, with the median hours it took.
//!
//! Per language: calls, latency and callbacks carry a language; bookings,
//! reminders, escalations, refills and no-shows are clinic-wide.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::pages::{message, Frame};
use super::{render, Staff};
use crate::api::AppState;
use crate::store::availability::day_start;
use crate::store::{KpiFacts, Role};

/// Outcomes of a call the assistant resolved alone.
const CONTAINED: [&str; 5] = ["booked", "confirmed", "cancelled", "rescheduled", "info"];
/// Escalation outcomes that settled the appointment.
const RECOVERED: [&str; 3] = ["confirmed", "cancelled", "rescheduled"];
/// Longest period one page covers.
const MAX_DAYS: i64 = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    fn parse(s: &str) -> Option<Period> {
        match s {
            "" | "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    /// The first day of the period `d` falls in.
    fn start(self, d: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => d,
            Period::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
            Period::Month => d.with_day(1).unwrap_or(d),
        }
    }

    fn next(self, d: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => d + Duration::days(1),
            Period::Week => d + Duration::days(7),
            Period::Month => {
                let (y, m) = if d.month() == 12 { (d.year() + 1, 1) } else { (d.year(), d.month() + 1) };
                NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(d)
            }
        }
    }

    fn label(self, d: NaiveDate) -> String {
        match self {
            Period::Day => d.format("%Y-%m-%d").to_string(),
            Period::Week => format!("{} (W{:02})", d.format("%Y-%m-%d"), d.iso_week().week()),
            Period::Month => d.format("%Y-%m").to_string(),
        }
    }
}

/// One period's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub label: String,
    pub handled: u64,
    pub contained: u64,
    pub transferred: u64,
    pub abandoned: u64,
    pub busy: u64,
    pub outbound: u64,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    pub booked: u64,
    pub confirmed: u64,
    pub cancelled: u64,
    pub rescheduled: u64,
    pub reminders: u64,
    pub reminders_confirmed: u64,
    pub escalations: u64,
    pub recovered: u64,
    pub refilled: u64,
    pub no_shows: u64,
    pub callbacks_opened: u64,
    pub callbacks_closed: u64,
    pub callback_hours_median: Option<f64>,
    /// (bin, count): the waits' histogram.
    latencies: Vec<(i64, u64)>,
    close_hours: Vec<f64>,
}

impl Row {
    /// Containment, %.
    pub fn containment(&self) -> Option<f64> {
        share(self.contained, self.handled)
    }

    /// Reminders confirmed by the patient's reply, %.
    pub fn reminder_rate(&self) -> Option<f64> {
        share(self.reminders_confirmed, self.reminders)
    }

    fn close(&mut self) {
        self.latencies.sort_unstable();
        self.latency_p50_ms = percentile(&self.latencies, 0.50);
        self.latency_p95_ms = percentile(&self.latencies, 0.95);
        self.close_hours.sort_by(f64::total_cmp);
        self.callback_hours_median = (!self.close_hours.is_empty()).then(|| self.close_hours[(self.close_hours.len() - 1) / 2]);
    }
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// Nearest rank over a sorted histogram of (value, count): the smallest
/// value with at least `q` of all counts at or below it.
fn percentile(sorted: &[(i64, u64)], q: f64) -> Option<i64> {
    let total: u64 = sorted.iter().map(|&(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for &(v, n) in sorted {
        seen += n;
        if seen >= rank {
            return Some(v);
        }
    }
    sorted.last().map(|&(v, _)| v)
}

/// The figures of a span: one row per period, the whole span's, and two breakdowns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub rows: Vec<Row>,
    pub total: Row,
    /// Transferred calls by what the caller wanted, most first.
    pub transfers_by_reason: Vec<(String, u64)>,
    /// (action, channel) → count, over the span.
    pub changes_by_channel: BTreeMap<(String, String), u64>,
}

/// The clinic-local days `[from, until]` as UTC instants `[start, end)`.
pub fn span(tz: Tz, from: NaiveDate, until: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    (day_start(tz, from), day_start(tz, until + Duration::days(1)))
}

/// Figures per `period` for the clinic-local days `from..=until`;
/// `language` keeps only calls and callbacks in that language.
pub fn compute(facts: &KpiFacts, tz: Tz, period: Period, from: NaiveDate, until: NaiveDate, language: Option<&str>) -> Report {
    let mut rows: BTreeMap<NaiveDate, Row> = BTreeMap::new();
    let mut d = period.start(from);
    while d <= until {
        rows.insert(d, Row { label: period.label(d), ..Row::default() });
        d = period.next(d);
    }
    let day = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
    let lang_ok = |l: Option<&str>| language.is_none_or(|want| l == Some(want));
    let mut report = Report::default();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    // The row of a clinic-local day, if the day is in the span. Calls and
    // waits come counted per day; the rest by instant (`day` of it).
    let on = |rows: &mut BTreeMap<NaiveDate, Row>, d: NaiveDate, f: &mut dyn FnMut(&mut Row)| {
        if (from..=until).contains(&d) {
            if let Some(r) = rows.get_mut(&period.start(d)) {
                f(r);
            }
        }
    };
    for c in facts.calls.iter().filter(|c| lang_ok(c.language.as_deref())) {
        let (outcome, n) = (c.outcome.as_deref().unwrap_or(""), c.count);
        if c.direction != "inbound" {
            on(&mut rows, c.day, &mut |r| r.outbound += n);
            continue;
        }
        if outcome == "busy" {
            on(&mut rows, c.day, &mut |r| r.busy += n);
            continue;
        }
        let transferred = c.transferred || outcome == "transferred";
        on(&mut rows, c.day, &mut |r| {
            r.handled += n;
            r.contained += if CONTAINED.contains(&outcome) && !transferred { n } else { 0 };
            r.transferred += if transferred { n } else { 0 };
            r.abandoned += if outcome == "abandoned" { n } else { 0 };
        });
        if transferred && (from..=until).contains(&c.day) {
            *reasons.entry(reason(c.transfer_reason.as_deref())).or_default() += n;
        }
    }
    // Waits read by language carry it; read for every language, none.
    for l in facts.latencies.iter().filter(|l| l.language.is_none() || lang_ok(l.language.as_deref())) {
        on(&mut rows, l.day, &mut |r| r.latencies.push((l.latency_ms, l.count)));
    }
    for c in &facts.changes {
        on(&mut rows, day(c.at), &mut |r| match c.action.as_str() {
            "book" => r.booked += 1,
            "confirm" => r.confirmed += 1,
            "cancel" => r.cancelled += 1,
            "reschedule" => r.rescheduled += 1,
            _ => {}
        });
        if (from..=until).contains(&day(c.at)) {
            *report.changes_by_channel.entry((c.action.clone(), c.channel.clone())).or_default() += 1;
        }
    }
    for m in &facts.reminders {
        on(&mut rows, day(m.sent_at), &mut |r| {
            r.reminders += 1;
            r.reminders_confirmed += u64::from(m.reply.as_deref() == Some("confirmed"));
        });
    }
    for j in &facts.jobs {
        let outcome = j.outcome.as_deref().unwrap_or("");
        on(&mut rows, day(j.ended_at), &mut |r| match j.kind.as_str() {
            "escalation" => {
                r.escalations += 1;
                r.recovered += u64::from(RECOVERED.contains(&outcome));
            }
            "refill" => r.refilled += u64::from(outcome == "accepted"),
            _ => {}
        });
    }
    for &t in &facts.no_shows {
        on(&mut rows, day(t), &mut |r| r.no_shows += 1);
    }
    for c in facts.callbacks.iter().filter(|c| lang_ok(Some(&c.language))) {
        on(&mut rows, day(c.created_at), &mut |r| {
            r.callbacks_opened += 1;
            if let Some(done) = c.done_at {
                r.callbacks_closed += 1;
                r.close_hours.push((done - c.created_at).num_seconds().max(0) as f64 / 3600.0);
            }
        });
    }
    let mut total = Row { label: "total".into(), ..Row::default() };
    for r in rows.values_mut() {
        add(&mut total, r);
        r.close();
    }
    total.close();
    report.rows = rows.into_values().collect();
    report.total = total;
    report.transfers_by_reason = reasons.into_iter().collect();
    report.transfers_by_reason.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    report
}

fn add(total: &mut Row, r: &Row) {
    total.handled += r.handled;
    total.contained += r.contained;
    total.transferred += r.transferred;
    total.abandoned += r.abandoned;
    total.busy += r.busy;
    total.outbound += r.outbound;
    total.booked += r.booked;
    total.confirmed += r.confirmed;
    total.cancelled += r.cancelled;
    total.rescheduled += r.rescheduled;
    total.reminders += r.reminders;
    total.reminders_confirmed += r.reminders_confirmed;
    total.escalations += r.escalations;
    total.recovered += r.recovered;
    total.refilled += r.refilled;
    total.no_shows += r.no_shows;
    total.callbacks_opened += r.callbacks_opened;
    total.callbacks_closed += r.callbacks_closed;
    total.latencies.extend_from_slice(&r.latencies);
    total.close_hours.extend_from_slice(&r.close_hours);
}

/// What a transferred caller wanted, from the head of the summary ("wants: …").
fn reason(summary: Option<&str>) -> String {
    let wants = summary.and_then(|s| s.strip_prefix("wants: ")).and_then(|s| s.split(';').next()).map(str::trim).unwrap_or("unclear");
    if wants.starts_with("book") {
        "book".into()
    } else if wants.is_empty() {
        "unclear".into()
    } else {
        wants.to_string()
    }
}

/// The CSV of a report: a header, one line per period, the total.
pub fn csv(report: &Report) -> String {
    let mut out = String::from(
        "period,handled,contained,containment_pct,transferred,abandoned,busy,outbound,latency_p50_ms,latency_p95_ms,\
         booked,confirmed,cancelled,rescheduled,reminders,reminders_confirmed,reminder_confirmation_pct,\
         escalation_calls,recovered,refilled,no_shows,callbacks_opened,callbacks_closed,callback_hours_median\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    let opt_i = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in report.rows.iter().chain(std::iter::once(&report.total)) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.label.split(' ').next().unwrap_or(""),
            r.handled,
            r.contained,
            opt(r.containment()),
            r.transferred,
            r.abandoned,
            r.busy,
            r.outbound,
            opt_i(r.latency_p50_ms),
            opt_i(r.latency_p95_ms),
            r.booked,
            r.confirmed,
            r.cancelled,
            r.rescheduled,
            r.reminders,
            r.reminders_confirmed,
            opt(r.reminder_rate()),
            r.escalations,
            r.recovered,
            r.refilled,
            r.no_shows,
            r.callbacks_opened,
            r.callbacks_closed,
            opt(r.callback_hours_median)
        );
    }
    out
}

/// A bar chart of handled calls per period, the contained part darker.
/// Drawn here as SVG: no script, nothing loaded.
pub fn chart(report: &Report, title: &str) -> String {
    let (w, h, pad) = (720.0_f64, 220.0_f64, 28.0_f64);
    let n = report.rows.len().max(1) as f64;
    let max = report.rows.iter().map(|r| r.handled).max().unwrap_or(0).max(1) as f64;
    let bar = (w - 2.0 * pad) / n;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="{title}" class="chart"><title>{title}</title>"##
    );
    let _ = write!(svg, r##"<text x="{pad}" y="14" font-size="11" fill="#555">{}</text>"##, max as u64);
    for (i, r) in report.rows.iter().enumerate() {
        let x = pad + i as f64 * bar;
        let all = (h - 2.0 * pad) * r.handled as f64 / max;
        let inner = (h - 2.0 * pad) * r.contained as f64 / max;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{all:.1}" fill="#9db8d3"><title>{}: {}</title></rect><rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{inner:.1}" fill="#1f4e79"/>"##,
            h - pad - all,
            (bar * 0.8).max(1.0),
            r.label,
            r.handled,
            h - pad - inner,
            (bar * 0.8).max(1.0)
        );
    }
    if let (Some(first), Some(last)) = (report.rows.first(), report.rows.last()) {
        let _ = write!(
            svg,
            r##"<text x="{pad}" y="{}" font-size="11" fill="#555">{}</text><text x="{}" y="{}" font-size="11" fill="#555" text-anchor="end">{}</text>"##,
            h - 8.0,
            first.label,
            w - pad,
            h - 8.0,
            last.label
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The page's query, as its form sends it.
#[derive(Deserialize, Default)]
pub struct KpiQuery {
    #[serde(default)]
    pub period: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub language: String,
}

/// A checked query: the report's parameters.
struct Asked {
    period: Period,
    from: NaiveDate,
    until: NaiveDate,
    language: Option<String>,
}

fn asked(state: &AppState, q: &KpiQuery) -> Result<Asked, String> {
    let today = state.clock.now().with_timezone(&state.store.timezone()).date_naive();
    let date = |s: &str, default: NaiveDate, field: &str| {
        if s.is_empty() {
            Ok(default)
        } else {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("{field}: a date as YYYY-MM-DD"))
        }
    };
    let until = date(&q.to, today, "to")?;
    let from = date(&q.from, until - Duration::days(29), "from")?;
    if from > until {
        return Err("from: on or before to".into());
    }
    if (until - from).num_days() >= MAX_DAYS {
        return Err(format!("at most {MAX_DAYS} days at once"));
    }
    let period = Period::parse(&q.period).ok_or("period: day, week or month")?;
    let language = match q.language.as_str() {
        "" => None,
        l if state.config.clinic.languages.iter().any(|c| c == l) => Some(l.to_string()),
        _ => return Err(format!("language: one of {}", state.config.clinic.languages.join(", "))),
    };
    Ok(Asked { period, from, until, language })
}

async fn report(state: &AppState, a: &Asked) -> Result<Report, crate::store::StoreError> {
    let tz = state.store.timezone();
    let (start, end) = span(tz, a.from, a.until);
    let facts = state.store.kpi_facts(start, end, a.language.as_deref(), state.clock.now()).await?;
    Ok(compute(&facts, tz, a.period, a.from, a.until, a.language.as_deref()))
}

/// One row as the template shows it.
pub struct ShownRow {
    pub label: String,
    pub cells: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/kpis.html")]
struct KpiPage {
    f: Frame,
    q: KpiQuery,
    languages: Vec<String>,
    chart: String,
    headers: Vec<&'static str>,
    rows: Vec<ShownRow>,
    reasons: Vec<(String, u64)>,
    channels: Vec<(String, String, u64)>,
    csv_link: String,
}

pub async fn page(State(state): State<AppState>, staff: Staff, Query(mut q): Query<KpiQuery>) -> Response {
    if let Err(r) = staff.require(Role::Manager, &state) {
        return r;
    }
    let a = match asked(&state, &q) {
        Ok(a) => a,
        Err(problem) => return message(&staff, &state, StatusCode::BAD_REQUEST, &problem),
    };
    let r = match report(&state, &a).await {
        Ok(r) => r,
        Err(e) => return super::pages::failed(&staff, &state, e),
    };
    (q.from, q.to) = (a.from.format("%Y-%m-%d").to_string(), a.until.format("%Y-%m-%d").to_string());
    let pct = |v: Option<f64>| v.map(|v| format!("{v:.0} %")).unwrap_or_else(|| "–".into());
    let ms = |v: Option<i64>| v.map(|v| format!("{:.1} s", v as f64 / 1000.0)).unwrap_or_else(|| "–".into());
    let shown = |r: &Row| ShownRow {
        label: r.label.clone(),
        cells: vec![
            r.handled.to_string(),
            pct(r.containment()),
            r.transferred.to_string(),
            r.abandoned.to_string(),
            ms(r.latency_p50_ms),
            ms(r.latency_p95_ms),
            format!("{} / {} / {} / {}", r.booked, r.confirmed, r.cancelled, r.rescheduled),
            pct(r.reminder_rate()),
            format!("{} / {}", r.recovered, r.escalations),
            r.refilled.to_string(),
            r.no_shows.to_string(),
            format!("{} / {}", r.callbacks_closed, r.callbacks_opened),
            r.callback_hours_median.map(|h| format!("{h:.1} h")).unwrap_or_else(|| "–".into()),
        ],
    };
    let mut rows: Vec<ShownRow> = r.rows.iter().map(shown).collect();
    rows.push(shown(&r.total));
    let csv_link = format!(
        "/console/kpis.csv?{}",
        serde_urlencoded::to_string([("period", q.period.as_str()), ("from", &q.from), ("to", &q.to), ("language", &q.language)])
            .unwrap_or_default()
    );
    let page = KpiPage {
        f: Frame::new(&staff, &state, "kpis"),
        chart: chart(&r, staff.texts(&state).kpis),
        languages: state.config.clinic.languages.clone(),
        headers: staff.texts(&state).kpi_columns.to_vec(),
        rows,
        reasons: r.transfers_by_reason.clone(),
        channels: r.changes_by_channel.iter().map(|((a, c), n)| (a.clone(), c.clone(), *n)).collect(),
        csv_link,
        q,
    };
    render(&page)
}

pub async fn csv_file(State(state): State<AppState>, staff: Staff, Query(q): Query<KpiQuery>) -> Response {
    if let Err(r) = staff.require(Role::Manager, &state) {
        return r;
    }
    let a = match asked(&state, &q) {
        Ok(a) => a,
        Err(problem) => return (StatusCode::BAD_REQUEST, problem).into_response(),
    };
    match report(&state, &a).await {
        Ok(r) => {
            let name = format!("attachment; filename=\"clinivox-kpis-{}-{}.csv\"", a.from, a.until);
            ([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, name)], csv(&r)).into_response()
        }
        Err(e) => super::pages::failed(&staff, &state, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallFact, CallbackFact, ChangeFact, JobFact, LatencyFact, ReminderFact};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn call(day: &str, direction: &str, lang: &str, outcome: &str, reason: Option<&str>) -> CallFact {
        CallFact {
            day: NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap(),
            direction: direction.into(),
            language: Some(lang.into()),
            outcome: Some(outcome.into()),
            transferred: reason.is_some(),
            transfer_reason: reason.map(str::to_string),
            count: 1,
        }
    }

    fn facts() -> KpiFacts {
        KpiFacts {
            calls: vec![
                call("2026-11-23", "inbound", "es", "booked", None),
                call("2026-11-23", "inbound", "es", "info", None),
                call("2026-11-23", "inbound", "en", "transferred", Some("wants: book dermatology")),
                call("2026-11-23", "inbound", "es", "abandoned", None),
                call("2026-11-23", "inbound", "es", "busy", None),
                call("2026-11-23", "outbound", "es", "confirmed", None),
                call("2026-11-25", "inbound", "es", "transferred", Some("wants: cancel")),
                // Outside the span.
                call("2026-11-22", "inbound", "es", "booked", None),
            ],
            latencies: [(900, 1), (1100, 1), (1500, 1), (4000, 1)]
                .into_iter()
                .map(|(ms, count)| LatencyFact {
                    day: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
                    language: Some("es".into()),
                    latency_ms: ms,
                    count,
                })
                .collect(),
            changes: vec![
                ChangeFact { at: t("2026-11-23T08:01:00Z"), action: "book".into(), channel: "phone".into() },
                ChangeFact { at: t("2026-11-23T08:02:00Z"), action: "confirm".into(), channel: "sms".into() },
                ChangeFact { at: t("2026-11-25T08:02:00Z"), action: "cancel".into(), channel: "phone".into() },
            ],
            reminders: vec![
                ReminderFact { sent_at: t("2026-11-23T07:00:00Z"), reply: Some("confirmed".into()) },
                ReminderFact { sent_at: t("2026-11-23T07:00:00Z"), reply: None },
                ReminderFact { sent_at: t("2026-11-23T07:00:00Z"), reply: Some("cancelled".into()) },
            ],
            jobs: vec![
                JobFact { kind: "escalation".into(), ended_at: t("2026-11-23T15:00:00Z"), outcome: Some("confirmed".into()) },
                JobFact { kind: "escalation".into(), ended_at: t("2026-11-23T15:00:00Z"), outcome: Some("no_answer".into()) },
                JobFact { kind: "refill".into(), ended_at: t("2026-11-24T15:00:00Z"), outcome: Some("accepted".into()) },
            ],
            no_shows: vec![t("2026-11-24T09:00:00Z")],
            callbacks: vec![
                CallbackFact { created_at: t("2026-11-23T08:00:00Z"), language: "es".into(), done_at: Some(t("2026-11-23T10:00:00Z")) },
                CallbackFact { created_at: t("2026-11-23T09:00:00Z"), language: "es".into(), done_at: None },
            ],
        }
    }

    #[test]
    fn figures_per_day_in_the_clinics_zone() {
        let tz: Tz = "Europe/Madrid".parse().unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let r = compute(&facts(), tz, Period::Day, d("2026-11-23"), d("2026-11-25"), None);
        assert_eq!(r.rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["2026-11-23", "2026-11-24", "2026-11-25"]);
        let mon = &r.rows[0];
        assert_eq!((mon.handled, mon.contained, mon.transferred, mon.abandoned, mon.busy, mon.outbound), (4, 2, 1, 1, 1, 1));
        assert_eq!(mon.containment(), Some(50.0));
        assert_eq!((mon.latency_p50_ms, mon.latency_p95_ms), (Some(1100), Some(4000)));
        assert_eq!((mon.booked, mon.confirmed), (1, 1));
        assert_eq!((mon.reminders, mon.reminders_confirmed), (3, 1));
        assert_eq!((mon.escalations, mon.recovered), (2, 1));
        assert_eq!((mon.callbacks_opened, mon.callbacks_closed, mon.callback_hours_median), (2, 1, Some(2.0)));
        assert_eq!((r.rows[1].refilled, r.rows[1].no_shows), (1, 1));
        assert_eq!((r.rows[2].handled, r.rows[2].transferred, r.rows[2].cancelled), (1, 1, 1));
        assert_eq!(r.total.handled, 5);
        assert_eq!(r.transfers_by_reason, [("book".to_string(), 1), ("cancel".to_string(), 1)]);
        assert_eq!(r.changes_by_channel[&("book".to_string(), "phone".to_string())], 1);

        // Spanish calls only; the clinic-wide figures stay.
        let es = compute(&facts(), tz, Period::Day, d("2026-11-23"), d("2026-11-25"), Some("es"));
        assert_eq!((es.rows[0].handled, es.rows[0].transferred, es.rows[0].reminders), (3, 0, 3));

        // By week and month: one row each holds it all.
        let w = compute(&facts(), tz, Period::Week, d("2026-11-23"), d("2026-11-25"), None);
        assert_eq!(w.rows.len(), 1);
        assert_eq!((w.rows[0].handled, w.rows[0].label.as_str()), (5, "2026-11-23 (W48)"));
        let m = compute(&facts(), tz, Period::Month, d("2026-11-01"), d("2026-11-30"), None);
        assert_eq!((m.rows.len(), m.rows[0].handled), (1, 6));

        let csv = csv(&r);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[1].starts_with("2026-11-23,4,2,50.0,1,1,1,1,1100,4000,1,1,0,0,3,1,33.3,2,1,0,0,2,1,2.0"), "{}", lines[1]);
        assert!(lines[4].starts_with("total,5,"));
        assert!(chart(&r, "x").starts_with("<svg"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[(7, 1)], 0.95), Some(7));
        let v: Vec<(i64, u64)> = (1..=100).map(|v| (v, 1)).collect();
        assert_eq!((percentile(&v, 0.5), percentile(&v, 0.95)), (Some(50), Some(95)));
        // 90 fast replies and 10 slow: the p95 is a slow one.
        assert_eq!(percentile(&[(800, 90), (5000, 10)], 0.95), Some(5000));
        assert_eq!(percentile(&[(800, 90), (5000, 10)], 0.90), Some(800));
    }
}
