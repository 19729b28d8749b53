//! The console's record pages: a day's appointments per provider and one
//! appointment's history, patients (search and one patient's
//! appointments, calls and reminders), and the escalation and waiting-list
//! calls the clinic places.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::NaiveDate;
use serde::Deserialize;

use super::pages::{failed, local, message, outcome_name, seen, CallRow, Frame};
use super::{render, Staff};
use crate::api::AppState;
use crate::phone::E164;
use crate::store::{Appointment, Page, StoreError};

/// Patients a search shows at most.
const SEARCH_LIMIT: i64 = 50;
/// Jobs the escalations page lists per status.
const JOBS_SHOWN: i64 = 100;

/// One appointment in a list.
pub struct AppointmentRow {
    pub id: String,
    pub time: String,
    pub patient_id: String,
    pub patient: String,
    pub provider: String,
    pub status: &'static str,
    pub booked_by: String,
}

fn appointment_row(state: &AppState, a: &Appointment, patient: String) -> AppointmentRow {
    let provider = state.config.providers.iter().find(|p| p.id == a.provider_id).map_or_else(|| a.provider_id.clone(), |p| p.name.clone());
    AppointmentRow {
        id: a.id.clone(),
        time: local(state, a.starts_at),
        patient_id: a.patient_id.clone(),
        patient,
        provider,
        status: a.status.as_str(),
        booked_by: format!("{} ({})", a.created_by, a.created_channel.as_str()),
    }
}

/// A provider's column of the day view.
pub struct ProviderDay {
    pub name: String,
    pub appointments: Vec<AppointmentRow>,
}

#[derive(Deserialize, Default)]
pub struct DayQuery {
    #[serde(default)]
    pub day: String,
}

#[derive(Template)]
#[template(path = "console/appointments.html")]
struct AppointmentsPage {
    f: Frame,
    day: String,
    providers: Vec<ProviderDay>,
}

pub async fn appointments(State(state): State<AppState>, staff: Staff, Query(q): Query<DayQuery>) -> Response {
    let day = if q.day.is_empty() {
        state.clock.now().with_timezone(&state.store.timezone()).date_naive()
    } else {
        match NaiveDate::parse_from_str(&q.day, "%Y-%m-%d") {
            Ok(d) => d,
            Err(_) => return message(&staff, &state, StatusCode::BAD_REQUEST, "day: a date as YYYY-MM-DD"),
        }
    };
    let read = async {
        let list = state.store.appointments_on_page(day, Page { limit: 2000, offset: 0 }).await?;
        let ids: Vec<String> = list.iter().map(|a| a.patient_id.clone()).collect();
        let names = state.store.patient_names(&ids).await?;
        Ok::<_, StoreError>((list, names))
    };
    let (list, names) = match read.await {
        Ok(r) => r,
        Err(e) => return failed(&staff, &state, e),
    };
    if let Err(r) =
        seen(&state, &staff, "console.appointments", list.iter().map(|a| (Some(a.patient_id.clone()), Some(a.id.clone())))).await
    {
        return r;
    }
    let mut providers: Vec<ProviderDay> = state
        .config
        .providers
        .iter()
        .map(|p| ProviderDay { name: format!("{} · {}", p.name, p.specialty), appointments: Vec::new() })
        .collect();
    for a in &list {
        let name = names.get(&a.patient_id).cloned().unwrap_or_default();
        if let Some(i) = state.config.providers.iter().position(|p| p.id == a.provider_id) {
            providers[i].appointments.push(appointment_row(&state, a, name));
        }
    }
    providers.retain(|p| !p.appointments.is_empty());
    render(&AppointmentsPage { f: Frame::new(&staff, &state, "appointments"), day: day.format("%Y-%m-%d").to_string(), providers })
}

/// One change of an appointment.
pub struct HistoryRow {
    pub time: String,
    pub action: String,
    pub by: String,
}

#[derive(Template)]
#[template(path = "console/appointment.html")]
struct AppointmentPage {
    f: Frame,
    a: AppointmentRow,
    history: Vec<HistoryRow>,
}

pub async fn appointment(State(state): State<AppState>, staff: Staff, Path(id): Path<String>) -> Response {
    let read = async {
        let a = state.store.appointment(&id).await?;
        let patient = state.store.patient(&a.patient_id).await?;
        let history = state.store.audit_log_page("appointment", &id, Page { limit: 200, offset: 0 }).await?;
        Ok::<_, StoreError>((a, patient, history))
    };
    let (a, patient, history) = match read.await {
        Ok(r) => r,
        Err(e) => return failed(&staff, &state, e),
    };
    if let Err(r) = seen(&state, &staff, "console.appointment", [(Some(a.patient_id.clone()), Some(id))]).await {
        return r;
    }
    let history = history
        .iter()
        .map(|h| HistoryRow { time: local(&state, h.at), action: h.action.clone(), by: format!("{} ({})", h.actor, h.channel) })
        .collect();
    render(&AppointmentPage { f: Frame::new(&staff, &state, "appointments"), a: appointment_row(&state, &a, patient.name), history })
}

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
}

/// One patient found.
pub struct PatientRow {
    pub id: String,
    pub name: String,
    pub phones: String,
    pub born: String,
}

#[derive(Template)]
#[template(path = "console/patients.html")]
struct PatientsPage {
    f: Frame,
    q: String,
    searched: bool,
    patients: Vec<PatientRow>,
}

pub async fn patients(State(state): State<AppState>, staff: Staff, Query(q): Query<SearchQuery>) -> Response {
    let text = q.q.trim();
    let found = if text.is_empty() {
        Ok(Vec::new())
    } else if let Ok(phone) = E164::parse(&text.replace([' ', '-', '.'], "")) {
        state.store.patients_by_phone_page(&phone, Page { limit: SEARCH_LIMIT, offset: 0 }).await
    } else {
        state.store.patients_by_name(text, SEARCH_LIMIT).await
    };
    let found = match found {
        Ok(f) => f,
        Err(StoreError::Invalid { message: m, .. }) => return message(&staff, &state, StatusCode::BAD_REQUEST, &m),
        Err(e) => return failed(&staff, &state, e),
    };
    if let Err(r) = seen(&state, &staff, "console.patients", found.iter().map(|p| (Some(p.id.clone()), None))).await {
        return r;
    }
    let patients = found
        .iter()
        .map(|p| PatientRow { id: p.id.clone(), name: p.name.clone(), phones: p.phones.join(", "), born: p.date_of_birth.to_string() })
        .collect();
    render(&PatientsPage { f: Frame::new(&staff, &state, "patients"), q: text.to_string(), searched: !text.is_empty(), patients })
}

/// A reminder of one of the patient's appointments.
pub struct ReminderRow {
    pub appointment: String,
    pub channel: String,
    pub sent: String,
    pub reply: String,
}

#[derive(Template)]
#[template(path = "console/patient.html")]
struct PatientPage {
    f: Frame,
    p: PatientRow,
    language: String,
    consent: bool,
    appointments: Vec<AppointmentRow>,
    calls: Vec<CallRow>,
    reminders: Vec<ReminderRow>,
}

pub async fn patient(State(state): State<AppState>, staff: Staff, Path(id): Path<String>) -> Response {
    let now = state.clock.now();
    let read = async {
        let p = state.store.patient(&id).await?;
        let appointments = state.store.appointments_for_patient_page(&id, false, now, Page { limit: 200, offset: 0 }).await?;
        let calls = state.store.calls_of_patient(&id, 100).await?;
        let reminders = state.store.reminders_of_patient(&id, 200).await?;
        Ok::<_, StoreError>((p, appointments, calls, reminders))
    };
    let (p, appointments, calls, reminders) = match read.await {
        Ok(r) => r,
        Err(e) => return failed(&staff, &state, e),
    };
    if let Err(r) = seen(&state, &staff, "console.patient", [(Some(id.clone()), None)]).await {
        return r;
    }
    let t = staff.texts(&state);
    let page = PatientPage {
        f: Frame::new(&staff, &state, "patients"),
        language: p.preferred_language.clone(),
        consent: p.contact_consent,
        appointments: appointments.iter().rev().map(|a| appointment_row(&state, a, p.name.clone())).collect(),
        calls: calls.iter().map(|c| CallRow::new(c, t, &state)).collect(),
        reminders: reminders
            .iter()
            .map(|(at, r)| ReminderRow {
                appointment: local(&state, *at),
                channel: r.channel.as_str().to_string(),
                sent: local(&state, r.sent_at),
                reply: r.reply.map(|k| k.as_str().to_string()).unwrap_or_else(|| "–".into()),
            })
            .collect(),
        p: PatientRow { id: p.id.clone(), name: p.name.clone(), phones: p.phones.join(", "), born: p.date_of_birth.to_string() },
    };
    render(&page)
}

/// One escalation or refill job.
pub struct JobRow {
    pub kind: String,
    pub due: String,
    pub status: String,
    pub appointment_id: String,
    pub patient_id: String,
    pub patient: String,
    pub attempts: String,
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "console/escalations.html")]
struct EscalationsPage {
    f: Frame,
    /// Pending and running, then ended: each with its heading.
    sections: Vec<(&'static str, Vec<JobRow>)>,
}

pub async fn escalations(State(state): State<AppState>, staff: Staff) -> Response {
    let t = staff.texts(&state);
    let read = async {
        let mut open = state.store.jobs_page(Some("pending"), Page { limit: JOBS_SHOWN, offset: 0 }).await?;
        open.extend(state.store.jobs_page(Some("running"), Page { limit: JOBS_SHOWN, offset: 0 }).await?);
        let mut ended = state.store.jobs_page(Some("done"), Page { limit: JOBS_SHOWN, offset: 0 }).await?;
        ended.extend(state.store.jobs_page(Some("cancelled"), Page { limit: JOBS_SHOWN, offset: 0 }).await?);
        let ids: Vec<String> = open.iter().chain(&ended).map(|j| j.patient_id.clone()).collect();
        let names = state.store.patient_names(&ids).await?;
        let jobs: Vec<String> = open.iter().chain(&ended).map(|j| j.id.clone()).collect();
        let attempts: std::collections::HashMap<String, String> = state
            .store
            .attempts_of_jobs(&jobs)
            .await?
            .into_iter()
            .map(|(job, list)| {
                let text = list
                    .iter()
                    .map(|a| format!("{} {}", local(&state, a.started_at), a.outcome.as_deref().map_or("…", |o| outcome_name(t, o))))
                    .collect::<Vec<_>>()
                    .join("; ");
                (job, text)
            })
            .collect();
        Ok::<_, StoreError>((open, ended, names, attempts))
    };
    let (mut open, mut ended, names, attempts) = match read.await {
        Ok(r) => r,
        Err(e) => return failed(&staff, &state, e),
    };
    let shown = open.iter().chain(&ended).map(|j| (Some(j.patient_id.clone()), Some(j.appointment_id.clone())));
    if let Err(r) = seen(&state, &staff, "console.escalations", shown).await {
        return r;
    }
    open.sort_by_key(|j| j.due_at);
    ended.sort_by_key(|j| std::cmp::Reverse(j.due_at));
    ended.truncate(JOBS_SHOWN as usize);
    let row = |j: &crate::store::Job| JobRow {
        kind: j.kind.clone(),
        due: local(&state, j.due_at),
        status: j.status.clone(),
        appointment_id: j.appointment_id.clone(),
        patient_id: j.patient_id.clone(),
        patient: names.get(&j.patient_id).cloned().unwrap_or_default(),
        attempts: attempts.get(&j.id).cloned().unwrap_or_default(),
        outcome: j.last_outcome.as_deref().map_or("", |o| outcome_name(t, o)).to_string(),
    };
    let sections = vec![(t.upcoming, open.iter().map(row).collect()), (t.ended, ended.iter().map(row).collect())];
    let page = EscalationsPage { f: Frame::new(&staff, &state, "escalations"), sections };
    render(&page)
}
