//! `/api/v1/patients`: create, update, get, find by phone.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::bounds::{self, MAX_CODE, MAX_NAME, MAX_PHONES};
use super::page::Page;
use super::{ApiJson, ApiQuery, AppState, Problem};
use crate::phone::E164;
use crate::store::{Actor, NewPatient, Patient, PatientPatch};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePatient {
    /// At most 200 characters, no control characters.
    name: String,
    /// E.164 numbers, the preferred one first; 1 to 5.
    phones: Vec<String>,
    date_of_birth: NaiveDate,
    national_id: Option<String>,
    /// One of the clinic's languages; the clinic's default when absent.
    preferred_language: Option<String>,
    #[serde(default)]
    contact_consent: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePatient {
    name: Option<String>,
    phones: Option<Vec<String>>,
    date_of_birth: Option<NaiveDate>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    national_id: Option<Option<String>>,
    preferred_language: Option<String>,
    contact_consent: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PhoneQuery {
    /// E.164 number, e.g. +34600111222 (URL-encode the +).
    phone: String,
    /// At most this many patients (default 100, at most 500).
    limit: Option<i64>,
    /// Skip this many first (default 0).
    offset: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/patients", tag = "patients", request_body = CreatePatient,
    responses((status = 201, body = Patient), (status = 422, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    actor: Actor,
    ApiJson(b): ApiJson<CreatePatient>,
) -> Result<(StatusCode, Json<Patient>), Problem> {
    bounds::line("name", &b.name, MAX_NAME)?;
    bounds::opt_line("national_id", b.national_id.as_deref(), MAX_CODE)?;
    let phones = phones(&b.phones)?;
    let language = b.preferred_language.unwrap_or_else(|| s.config.clinic.languages[0].clone());
    check_language(&s, &language)?;
    check_birth(&s, b.date_of_birth)?;
    let new = NewPatient {
        name: b.name,
        phones,
        date_of_birth: b.date_of_birth,
        national_id: b.national_id,
        preferred_language: language,
        contact_consent: b.contact_consent,
    };
    Ok((StatusCode::CREATED, Json(s.store.create_patient(new, &actor, s.clock.now()).await?)))
}

#[utoipa::path(get, path = "/api/v1/patients", tag = "patients", params(PhoneQuery),
    responses((status = 200, body = Vec<Patient>, headers(("link" = String, description = "rel=\"next\": the next page, while there is one"))),
        (status = 422, body = Problem)))]
pub async fn find_by_phone(State(s): State<AppState>, uri: Uri, ApiQuery(q): ApiQuery<PhoneQuery>) -> Result<Response, Problem> {
    let page = Page::parse(q.limit, q.offset)?;
    let phone = E164::parse(&q.phone).map_err(|e| Problem::invalid("phone", e.to_string()))?;
    Ok(page.respond(&uri, s.store.patients_by_phone_page(&phone, page.fetch()).await?))
}

#[utoipa::path(get, path = "/api/v1/patients/{id}", tag = "patients",
    responses((status = 200, body = Patient), (status = 404, body = Problem)))]
pub async fn get_one(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Patient>, Problem> {
    Ok(Json(s.store.patient(&id).await?))
}

#[utoipa::path(patch, path = "/api/v1/patients/{id}", tag = "patients", request_body = UpdatePatient,
    responses((status = 200, body = Patient), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<UpdatePatient>,
) -> Result<Json<Patient>, Problem> {
    bounds::opt_line("name", b.name.as_deref(), MAX_NAME)?;
    bounds::opt_line("national_id", b.national_id.as_ref().and_then(|n| n.as_deref()), MAX_CODE)?;
    if let Some(l) = &b.preferred_language {
        check_language(&s, l)?;
    }
    if let Some(d) = b.date_of_birth {
        check_birth(&s, d)?;
    }
    let patch = PatientPatch {
        name: b.name,
        phones: b.phones.as_deref().map(phones).transpose()?,
        date_of_birth: b.date_of_birth,
        national_id: b.national_id,
        preferred_language: b.preferred_language,
        contact_consent: b.contact_consent,
    };
    Ok(Json(s.store.update_patient(&id, patch, &actor, s.clock.now()).await?))
}

fn phones(raw: &[String]) -> Result<Vec<E164>, Problem> {
    if raw.is_empty() {
        return Err(Problem::invalid("phones", "needs at least one number"));
    }
    if raw.len() > MAX_PHONES {
        return Err(Problem::invalid("phones", format!("at most {MAX_PHONES} numbers")));
    }
    raw.iter().enumerate().map(|(i, p)| E164::parse(p).map_err(|e| Problem::invalid(format!("phones[{i}]"), e.to_string()))).collect()
}

fn check_language(s: &AppState, l: &str) -> Result<(), Problem> {
    if s.config.clinic.languages.iter().any(|x| x == l) {
        Ok(())
    } else {
        Err(Problem::invalid("preferred_language", format!("must be one of {:?}", s.config.clinic.languages)))
    }
}

fn check_birth(s: &AppState, d: NaiveDate) -> Result<(), Problem> {
    let today = s.clock.now().date_naive();
    if d > today || d < NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(d) {
        return Err(Problem::invalid("date_of_birth", "must be between 1900-01-01 and today"));
    }
    Ok(())
}

/// Tells "absent" (leave as is) from `null` (clear) for nullable fields.
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}
