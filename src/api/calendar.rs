//! Providers' calendar feeds (RFC 5545): a doctor subscribes any calendar
//! app to a secret URL and sees their appointments there.
//!
//! Calendar apps cannot send a bearer token, so the URL is the secret:
//! `/calendar/{provider}/{token}.ics`, the token an HMAC-SHA256 of the
//! provider's id under `[calendar] key` (128 bits shown). Changing the key
//! changes every URL; `clinivox calendar-urls` prints them. A wrong token,
//! an unknown provider or feeds turned off all answer the same 404, so a
//! stranger learns nothing about which providers exist.
//!
//! Events carry the specialty and the appointment's status (cancelled
//! ones stay, marked CANCELLED, so that calendar apps remove them), never
//! the patient unless the clinic sets `patient_names` — and then every
//! fetch is a read of those patients' data, recorded in the access log.
//! The iCalendar text (escaping, line folding) is the `icalendar` crate's.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use icalendar::{Calendar, Component, Event, EventLike, EventStatus};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{AppState, Problem};
use crate::config::{CalendarConfig, Config};
use crate::store::{Appointment, AppointmentStatus};

/// Events in one feed at most (a busy provider's half year is far less).
const MAX_EVENTS: i64 = 5_000;

/// The token in provider `provider_id`'s feed URL.
pub fn feed_token(key: &str, provider_id: &str) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else { return String::new() };
    mac.update(b"clinivox calendar feed\0");
    mac.update(provider_id.as_bytes());
    mac.finalize().into_bytes()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The path of provider `provider_id`'s feed.
pub fn feed_path(key: &str, provider_id: &str) -> String {
    format!("/calendar/{provider_id}/{}.ics", feed_token(key, provider_id))
}

/// `GET /calendar/{provider}/{file}`: the feed, or 404.
pub async fn feed(State(state): State<AppState>, Path((provider, file)): Path<(String, String)>) -> Response {
    let Some(cal) = state.config.calendar.as_ref() else { return Problem::not_found("route").into_response() };
    let token = file.strip_suffix(".ics").unwrap_or_default();
    let expected = feed_token(&cal.key, &provider);
    let known = state.config.providers.iter().any(|p| p.id == provider);
    if !known || !bool::from(token.as_bytes().ct_eq(expected.as_bytes())) {
        return Problem::not_found("route").into_response();
    }
    let now = state.clock.now();
    let (from, to) = (now - Duration::days(cal.days_back), now + Duration::days(cal.days_ahead));
    let appointments = match state.store.appointments_for_provider(&provider, from, to, MAX_EVENTS).await {
        Ok(a) => a,
        Err(e) => return Problem::from(e).into_response(),
    };
    let mut names = HashMap::new();
    if cal.patient_names {
        let mut ids: Vec<String> = appointments.iter().map(|a| a.patient_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        // Erased since: their events stay, nameless.
        names = match state.store.patient_names(&ids).await {
            Ok(n) => n,
            Err(e) => return Problem::from(e).into_response(),
        };
        let reads: Vec<(String, Option<String>)> = appointments.iter().map(|a| (a.patient_id.clone(), Some(a.id.clone()))).collect();
        if !reads.is_empty() {
            if let Err(e) = state.store.record_access(&format!("calendar:{provider}"), "calendar feed", &reads, now).await {
                return Problem::from(e).into_response();
            }
        }
    }
    let body = render(&state.config, cal, &provider, &appointments, &names, now);
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/calendar; charset=utf-8"), (header::CACHE_CONTROL, "private, max-age=300")], body)
        .into_response()
}

/// The feed's text: one VEVENT per appointment.
pub fn render(
    config: &Config,
    cal: &CalendarConfig,
    provider_id: &str,
    appointments: &[Appointment],
    names: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> String {
    let provider = config.providers.iter().find(|p| p.id == provider_id).map_or(provider_id, |p| p.name.as_str());
    let language = config.clinic.languages.first().map(String::as_str).unwrap_or("es");
    let specialty = |id: &str| -> String {
        let name = config.specialties.iter().find(|s| s.id == id).and_then(|s| s.names.get(language)).and_then(|n| n.first());
        name.map_or(id, |n| n.as_str()).to_string()
    };
    let mut calendar = Calendar::new();
    calendar.name(&format!("{} — {provider}", config.clinic.name));
    for a in appointments {
        let mut summary = capitalized(&specialty(&a.specialty_id));
        if cal.patient_names {
            if let Some(name) = names.get(&a.patient_id) {
                summary = format!("{summary}: {name}");
            }
        }
        let status = match a.status {
            AppointmentStatus::Booked => EventStatus::Tentative,
            AppointmentStatus::Cancelled => EventStatus::Cancelled,
            AppointmentStatus::Confirmed | AppointmentStatus::Completed | AppointmentStatus::NoShow => EventStatus::Confirmed,
        };
        let event = Event::new()
            .uid(&format!("{}@clinivox", a.id))
            .timestamp(now)
            .starts(a.starts_at)
            .ends(a.ends_at)
            .summary(&summary)
            .description(&format!("{} · {}", a.status.as_str(), a.created_channel.as_str()))
            .add_property("LAST-MODIFIED", a.updated_at.format("%Y%m%dT%H%M%SZ").to_string())
            .status(status)
            .done();
        calendar.push(event);
    }
    calendar.done().to_string()
}

/// "dermatología" → "Dermatología", as a calendar shows a title.
fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
#[path = "calendar_tests.rs"]
mod tests;
