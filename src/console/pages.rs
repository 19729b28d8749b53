//! The console's pages: Today, Calls (list and one call), Callbacks and
//! Staff. Handlers read the store, shape rows of text for a template and
//! record in the access log which patients' data the page showed.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{check_csrf, password, render, CsrfForm, Staff, Texts};
use crate::api::AppState;
use crate::store::{Call, CallFilter, CallbackStatus, NewStaffUser, Page, Role, StoreError};

/// Rows on one page of a list.
const PAGE_SIZE: i64 = 50;
/// Largest recording served (a 15-minute stereo 8 kHz call is about 29 MB).
const MAX_RECORDING: u64 = 64 << 20;
/// Outcomes a call can be filtered by (`Call::outcome`); each language's
/// names for them are `Texts::outcome_names`, in this order.
pub const OUTCOMES: [&str; 14] = [
    "booked",
    "confirmed",
    "cancelled",
    "rescheduled",
    "info",
    "transferred",
    "callback",
    "abandoned",
    "busy",
    "failed",
    "no_answer",
    "rejected",
    "voicemail",
    "wrong_person",
];

/// What every page's frame shows.
pub struct Frame {
    pub t: &'static Texts,
    pub user: String,
    pub csrf: String,
    pub nav: &'static str,
    pub manager: bool,
    pub admin: bool,
}

impl Frame {
    pub(super) fn new(staff: &Staff, state: &AppState, nav: &'static str) -> Frame {
        let u = &staff.session.user;
        Frame {
            t: staff.texts(state),
            user: u.display_name.clone(),
            csrf: staff.session.csrf.clone(),
            nav,
            manager: u.role >= Role::Manager,
            admin: u.role >= Role::Admin,
        }
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    f: Frame,
    message: String,
    /// "notice" for news, "error" for a refusal or a failure.
    class: &'static str,
}

/// A page that only says `text`.
pub fn message(staff: &Staff, state: &AppState, status: StatusCode, text: &str) -> Response {
    let class = if status.is_success() { "notice" } else { "error" };
    (status, render(&MessagePage { f: Frame::new(staff, state, ""), message: text.to_string(), class })).into_response()
}

/// A store error as a page (404 for what does not exist, else 503).
pub(super) fn failed(staff: &Staff, state: &AppState, e: StoreError) -> Response {
    match e {
        StoreError::NotFound(_) | StoreError::Gone(_) => message(staff, state, StatusCode::NOT_FOUND, staff.texts(state).not_found),
        e => {
            tracing::error!(error = %e, "a console page could not read the store");
            message(staff, state, StatusCode::SERVICE_UNAVAILABLE, "The database is not answering; try again in a moment.")
        }
    }
}

/// One call in a list.
pub struct CallRow {
    pub id: String,
    pub time: String,
    pub direction: String,
    pub number: String,
    pub language: String,
    pub outcome: String,
    pub transfer: String,
}

impl CallRow {
    pub(super) fn new(c: &Call, t: &Texts, state: &AppState) -> CallRow {
        CallRow {
            id: c.id.clone(),
            time: local(state, c.started_at),
            direction: direction(c, t).to_string(),
            number: c.remote_number.clone(),
            language: c.language.clone().unwrap_or_default(),
            outcome: c.outcome.as_deref().map_or("…", |o| outcome_name(t, o)).to_string(),
            transfer: c.transfer_target.clone().unwrap_or_default(),
        }
    }
}

/// An outcome's name in the staff member's language (unknown ones as stored).
pub(super) fn outcome_name<'a>(t: &'a Texts, code: &'a str) -> &'a str {
    OUTCOMES.iter().position(|o| *o == code).map_or(code, |i| t.outcome_names[i])
}

/// Inbound, or which kind of outbound call (see `CallFilter::direction`).
fn direction(c: &Call, t: &Texts) -> &'static str {
    match (c.direction.as_str(), &c.appointment_id) {
        ("inbound", _) => t.inbound,
        (_, Some(_)) => t.escalation_call,
        (_, None) => t.offer_call,
    }
}

pub(super) fn local(state: &AppState, at: DateTime<Utc>) -> String {
    at.with_timezone(&state.store.timezone()).format("%Y-%m-%d %H:%M").to_string()
}

/// The live figures of the Today page (also its JSON, polled).
#[derive(Serialize)]
pub struct Live {
    pub active: usize,
    pub max_active: usize,
    pub recognition_queue: usize,
    pub open_callbacks: usize,
    /// Escalation and waiting-list calls still to make today.
    pub follow_ups_due: usize,
    /// This node's calls in progress, oldest first.
    pub in_progress: Vec<LiveRow>,
}

/// A call in progress. No number and no name: the list is polled every
/// 5 s and each poll is not a view worth an audit entry; staff open the
/// call (audited) to see who it is.
#[derive(Serialize)]
pub struct LiveRow {
    /// The store's call id (empty when the call could not be recorded).
    pub id: String,
    pub time: String,
    pub direction: String,
    pub language: String,
    /// What it is doing, in the staff member's language.
    pub doing: String,
    /// How long it has been doing it, "m:ss".
    pub since: String,
}

async fn live_figures(state: &AppState, t: &Texts) -> Result<Live, StoreError> {
    let open = state.store.open_callback_count().await?;
    let today = state.clock.now().with_timezone(&state.store.timezone()).date_naive();
    let (_, end_of_today) = super::kpis::span(state.store.timezone(), today, today);
    let due = state.store.open_jobs_due(end_of_today).await?;
    let live = state.metrics.live_calls();
    let ids: Vec<String> = live.iter().filter_map(|c| c.call_id.clone()).collect();
    let calls: std::collections::HashMap<String, Call> =
        state.store.calls_by_ids(&ids).await?.into_iter().map(|c| (c.id.clone(), c)).collect();
    let now = std::time::Instant::now();
    let in_progress = live
        .iter()
        .map(|l| {
            let call = l.call_id.as_ref().and_then(|id| calls.get(id));
            let secs = now.saturating_duration_since(l.since).as_secs();
            LiveRow {
                id: l.call_id.clone().unwrap_or_default(),
                time: call.map(|c| local(state, c.started_at)).unwrap_or_default(),
                direction: call.map(|c| direction(c, t)).unwrap_or_default().to_string(),
                language: call.and_then(|c| c.language.clone()).unwrap_or_default(),
                doing: t.phases[l.phase as usize].to_string(),
                since: format!("{}:{:02}", secs / 60, secs % 60),
            }
        })
        .collect();
    Ok(Live {
        active: state.metrics.active_calls(),
        max_active: state.config.calls.max_active,
        recognition_queue: state.metrics.recognition_queue(),
        open_callbacks: usize::try_from(open).unwrap_or(0),
        follow_ups_due: usize::try_from(due).unwrap_or(0),
        in_progress,
    })
}

#[derive(Template)]
#[template(path = "console/today.html")]
struct TodayPage {
    f: Frame,
    live: Live,
    calls: Vec<CallRow>,
}

pub async fn today(State(state): State<AppState>, staff: Staff) -> Response {
    let t = staff.texts(&state);
    let filter = day_filter(&state, state.clock.now().with_timezone(&state.store.timezone()).date_naive());
    let read = async { Ok::<_, StoreError>((live_figures(&state, t).await?, state.store.calls_filtered(&filter, page(0)).await?)) };
    let (live, calls) = match read.await {
        Ok(r) => r,
        Err(e) => return failed(&staff, &state, e),
    };
    if let Err(r) = seen(&state, &staff, "console.today", calls.iter().map(|c| (c.patient_id.clone(), Some(c.id.clone())))).await {
        return r;
    }
    let calls = calls.iter().map(|c| CallRow::new(c, t, &state)).collect();
    render(&TodayPage { f: Frame::new(&staff, &state, "today"), live, calls })
}

pub async fn live(State(state): State<AppState>, super::Polling(staff): super::Polling) -> Response {
    match live_figures(&state, staff.texts(&state)).await {
        Ok(l) => Json(l).into_response(),
        Err(e) => failed(&staff, &state, e),
    }
}

/// The Calls page's filters, as the form sends them (empty: any).
#[derive(Deserialize, Default)]
pub struct CallsQuery {
    #[serde(default)]
    pub day: String,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub transferred: String,
    #[serde(default)]
    pub page: u32,
}

#[derive(Template)]
#[template(path = "console/calls.html")]
struct CallsPage {
    f: Frame,
    q: CallsQuery,
    /// (code, name) of each outcome.
    outcomes: Vec<(&'static str, &'static str)>,
    languages: Vec<String>,
    calls: Vec<CallRow>,
    newer: Option<String>,
    older: Option<String>,
}

pub async fn calls(State(state): State<AppState>, staff: Staff, Query(mut q): Query<CallsQuery>) -> Response {
    let tz = state.store.timezone();
    let day = if q.day.is_empty() {
        state.clock.now().with_timezone(&tz).date_naive()
    } else {
        match NaiveDate::parse_from_str(&q.day, "%Y-%m-%d") {
            Ok(d) => d,
            Err(_) => return message(&staff, &state, StatusCode::BAD_REQUEST, "day: a date as YYYY-MM-DD"),
        }
    };
    q.day = day.format("%Y-%m-%d").to_string();
    let languages = state.config.clinic.languages.clone();
    let mut filter = day_filter(&state, day);
    let chosen = |v: &str, allowed: &[&str], field: &str| -> Result<Option<String>, String> {
        match v {
            "" => Ok(None),
            v if allowed.contains(&v) => Ok(Some(v.to_string())),
            _ => Err(format!("{field}: one of {}", allowed.join(", "))),
        }
    };
    let language_names: Vec<&str> = languages.iter().map(String::as_str).collect();
    let parsed = (|| {
        filter.direction = chosen(&q.direction, &["inbound", "outbound", "escalation", "offer"], "direction")?;
        filter.outcome = chosen(&q.outcome, &OUTCOMES, "outcome")?;
        filter.language = chosen(&q.language, &language_names, "language")?;
        filter.transferred = chosen(&q.transferred, &["yes", "no"], "transferred")?.map(|v| v == "yes");
        Ok::<_, String>(())
    })();
    if let Err(problem) = parsed {
        return message(&staff, &state, StatusCode::BAD_REQUEST, &problem);
    }
    let calls = match state.store.calls_filtered(&filter, page(q.page)).await {
        Ok(c) => c,
        Err(e) => return failed(&staff, &state, e),
    };
    if let Err(r) = seen(&state, &staff, "console.calls", calls.iter().map(|c| (c.patient_id.clone(), Some(c.id.clone())))).await {
        return r;
    }
    let link = |p: u32| {
        let query = serde_urlencoded::to_string([
            ("day", q.day.as_str()),
            ("direction", &q.direction),
            ("outcome", &q.outcome),
            ("language", &q.language),
            ("transferred", &q.transferred),
            ("page", &p.to_string()),
        ])
        .unwrap_or_default();
        format!("/console/calls?{query}")
    };
    let newer = (q.page > 0).then(|| link(q.page - 1));
    let older = (calls.len() as i64 == PAGE_SIZE).then(|| link(q.page + 1));
    let t = staff.texts(&state);
    let calls = calls.iter().map(|c| CallRow::new(c, t, &state)).collect();
    render(&CallsPage {
        f: Frame::new(&staff, &state, "calls"),
        q,
        outcomes: OUTCOMES.iter().map(|o| (*o, outcome_name(t, o))).collect(),
        languages,
        calls,
        newer,
        older,
    })
}

/// One turn of a transcript.
pub struct TurnRow {
    pub time: String,
    pub class: &'static str,
    pub speaker: &'static str,
    pub text: String,
    pub intent: String,
    pub latency: String,
}

#[derive(Template)]
#[template(path = "console/call.html")]
struct CallPage {
    f: Frame,
    call: CallRow,
    summary: String,
    recording: bool,
    turns: Vec<TurnRow>,
}

pub async fn call(State(state): State<AppState>, staff: Staff, Path(id): Path<String>) -> Response {
    let detail = match state.store.call(&id).await {
        Ok(d) => d,
        Err(e) => return failed(&staff, &state, e),
    };
    if let Err(r) = seen(&state, &staff, "console.call", [(detail.call.patient_id.clone(), Some(id.clone()))]).await {
        return r;
    }
    let t = staff.texts(&state);
    let tz = state.store.timezone();
    let turns = detail
        .turns
        .iter()
        .map(|turn| {
            let caller = turn.speaker == "caller";
            TurnRow {
                time: turn.at.with_timezone(&tz).format("%H:%M:%S").to_string(),
                class: if caller { "caller" } else { "assistant" },
                speaker: if caller { t.caller } else { t.assistant },
                text: turn.text.clone(),
                intent: turn.intent.clone().unwrap_or_default(),
                latency: turn.latency_ms.map(|ms| format!("{:.1} s", ms as f64 / 1000.0)).unwrap_or_default(),
            }
        })
        .collect();
    let page = CallPage {
        f: Frame::new(&staff, &state, "calls"),
        call: CallRow::new(&detail.call, t, &state),
        summary: detail.call.summary.clone().unwrap_or_default(),
        recording: detail.call.recording_path.is_some(),
        turns,
    };
    render(&page)
}

/// A call's recording (WAV), for the call page's player.
pub async fn recording(State(state): State<AppState>, staff: Staff, Path(id): Path<String>) -> Response {
    let detail = match state.store.call(&id).await {
        Ok(d) => d,
        Err(e) => return failed(&staff, &state, e),
    };
    let Some(path) = detail.call.recording_path.clone() else {
        return message(&staff, &state, StatusCode::NOT_FOUND, staff.texts(&state).not_found);
    };
    let read = async {
        let meta = tokio::fs::metadata(&path).await?;
        if meta.len() > MAX_RECORDING {
            return Err(std::io::Error::other("recording larger than the console serves"));
        }
        tokio::fs::read(&path).await
    };
    let bytes = match read.await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(call = %id, error = %e, "a call's recording could not be read");
            return message(&staff, &state, StatusCode::NOT_FOUND, staff.texts(&state).not_found);
        }
    };
    if let Err(r) = seen(&state, &staff, "console.recording", [(detail.call.patient_id.clone(), Some(id))]).await {
        return r;
    }
    ([(header::CONTENT_TYPE, "audio/wav")], bytes).into_response()
}

/// One callback request.
pub struct CallbackRow {
    pub id: String,
    pub call: String,
    pub time: String,
    pub name: String,
    pub phone: String,
    pub reason: String,
    pub promised: String,
    pub done: String,
}

#[derive(Template)]
#[template(path = "console/callbacks.html")]
struct CallbacksPage {
    f: Frame,
    open: Vec<CallbackRow>,
    done: Vec<CallbackRow>,
    /// Click-to-call is offered: telephony is on and this user has a desk phone.
    can_call: bool,
}

pub async fn callbacks(State(state): State<AppState>, staff: Staff) -> Response {
    let read = async {
        let open = state.store.callbacks_page(Some(CallbackStatus::Open), Page { limit: 200, offset: 0 }).await?;
        let done = state.store.callbacks_done_recently(10).await?;
        Ok::<_, StoreError>((open, done))
    };
    let (mut open, done) = match read.await {
        Ok(r) => r,
        Err(e) => return failed(&staff, &state, e),
    };
    // Oldest first: whoever has waited longest is called first.
    open.sort_by_key(|c| c.created_at);
    let shown = open.iter().chain(&done).map(|c| (c.patient_id.clone(), c.call_id.clone()));
    if let Err(r) = seen(&state, &staff, "console.callbacks", shown).await {
        return r;
    }
    let row = |c: &crate::store::CallbackRequest| CallbackRow {
        id: c.id.clone(),
        call: c.call_id.clone().unwrap_or_default(),
        time: local(&state, c.created_at),
        name: c.name.clone(),
        phone: c.phone.clone(),
        reason: c.reason.clone(),
        promised: c.promised.clone(),
        done: match (&c.done_by, c.done_at) {
            (Some(by), Some(at)) => format!("{by}, {}", local(&state, at)),
            _ => String::new(),
        },
    };
    let page = CallbacksPage {
        f: Frame::new(&staff, &state, "callbacks"),
        open: open.iter().map(row).collect(),
        done: done.iter().map(row).collect(),
        can_call: state.click_to_call.is_some() && staff.session.user.extension.is_some(),
    };
    render(&page)
}

pub async fn callback_done(State(state): State<AppState>, staff: Staff, Path(id): Path<String>, Form(form): Form<CsrfForm>) -> Response {
    if let Err(r) = check_csrf(&staff, &form.csrf) {
        return r;
    }
    match state.store.callback_done(&id, &staff.actor(), state.clock.now()).await {
        Ok(_) => Redirect::to("/console/callbacks").into_response(),
        Err(e) => failed(&staff, &state, e),
    }
}

/// Click-to-call: the receptionist's desk phone rings, then the patient
/// of this callback request is dialled and the two are joined.
pub async fn callback_call(State(state): State<AppState>, staff: Staff, Path(id): Path<String>, Form(form): Form<CsrfForm>) -> Response {
    use crate::call::click::ClickError;
    if let Err(r) = check_csrf(&staff, &form.csrf) {
        return r;
    }
    let t = staff.texts(&state);
    let Some(click) = state.click_to_call.clone() else {
        return message(&staff, &state, StatusCode::SERVICE_UNAVAILABLE, t.telephony_off);
    };
    let Some(extension) = staff.session.user.extension.clone() else {
        return message(&staff, &state, StatusCode::BAD_REQUEST, t.no_extension);
    };
    let cb = match state.store.callback(&id).await {
        Ok(c) => c,
        Err(e) => return failed(&staff, &state, e),
    };
    let Ok(number) = crate::phone::E164::parse(&cb.phone) else {
        return message(&staff, &state, StatusCode::BAD_REQUEST, t.not_a_number);
    };
    if let Err(r) = seen(&state, &staff, "console.click_to_call", [(cb.patient_id.clone(), Some(cb.id.clone()))]).await {
        return r;
    }
    match click.start(&extension, &number, None) {
        Ok(()) => {
            tracing::info!(user = %staff.session.user.username, %extension, "click-to-call: ringing the desk phone");
            message(&staff, &state, StatusCode::OK, &format!("{} ({} {extension}).", t.calling, t.extension.to_lowercase()))
        }
        Err(ClickError::UnknownExtension(_)) => message(&staff, &state, StatusCode::BAD_REQUEST, t.no_extension),
        Err(ClickError::Busy) => message(&staff, &state, StatusCode::SERVICE_UNAVAILABLE, t.lines_busy),
    }
}

/// One staff account.
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub disabled: bool,
    pub extension: String,
    /// The admin looking at the page: not disabled from here.
    pub me: bool,
    pub name: String,
    pub role: &'static str,
    pub created: String,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    f: Frame,
    users: Vec<UserRow>,
    error: String,
}

async fn users_page(state: &AppState, staff: &Staff, status: StatusCode, error: String) -> Response {
    let users = match state.store.staff_users().await {
        Ok(u) => u,
        Err(e) => return failed(staff, state, e),
    };
    let users = users
        .iter()
        .map(|u| UserRow {
            id: u.id.clone(),
            username: u.username.clone(),
            disabled: u.disabled,
            extension: u.extension.clone().unwrap_or_default(),
            me: u.id == staff.session.user.id,
            name: u.display_name.clone(),
            role: u.role.as_str(),
            created: local(state, u.created_at),
        })
        .collect();
    (status, render(&UsersPage { f: Frame::new(staff, state, "users"), users, error })).into_response()
}

pub async fn users(State(state): State<AppState>, staff: Staff) -> Response {
    if let Err(r) = staff.require(Role::Admin, &state) {
        return r;
    }
    users_page(&state, &staff, StatusCode::OK, String::new()).await
}

#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
    /// Their desk phone's `[[staff]]` extension (empty: none).
    #[serde(default)]
    extension: String,
}

pub async fn add_user(State(state): State<AppState>, staff: Staff, Form(form): Form<NewUserForm>) -> Response {
    if let Err(r) = check_csrf(&staff, &form.csrf) {
        return r;
    }
    if let Err(r) = staff.require(Role::Admin, &state) {
        return r;
    }
    let Some(role) = Role::parse(&form.role) else {
        return users_page(&state, &staff, StatusCode::BAD_REQUEST, "role: reception, manager or admin".to_string()).await;
    };
    let (username, password) = (form.username.clone(), form.password);
    let hashed = tokio::task::spawn_blocking(move || password::hash(&username, &password)).await;
    let password_hash = match hashed {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return users_page(&state, &staff, StatusCode::BAD_REQUEST, e.to_string()).await,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let extension = Some(form.extension.trim().to_string()).filter(|x| !x.is_empty());
    if let Some(x) = extension.as_deref().filter(|x| !state.config.staff.iter().any(|s| s.extension == *x)) {
        return users_page(
            &state,
            &staff,
            StatusCode::BAD_REQUEST,
            format!("extension: {x} is not one of the clinic's [[staff]] extensions"),
        )
        .await;
    }
    let new = NewStaffUser { username: form.username, display_name: form.display_name, role, language: None, password_hash, extension };
    match state.store.create_staff_user(new, &staff.actor(), state.clock.now()).await {
        Ok(_) => Redirect::to("/console/users").into_response(),
        Err(e @ (StoreError::Conflict(_) | StoreError::Invalid { .. })) => {
            users_page(&state, &staff, StatusCode::BAD_REQUEST, e.to_string()).await
        }
        Err(e) => failed(&staff, &state, e),
    }
}

#[derive(Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    csrf: String,
    /// "disable" or "enable".
    #[serde(default)]
    set: String,
}

/// An admin disables an account (its sessions end at once) or enables it.
pub async fn set_account(State(state): State<AppState>, staff: Staff, Path(id): Path<String>, Form(form): Form<AccountForm>) -> Response {
    if let Err(r) = check_csrf(&staff, &form.csrf) {
        return r;
    }
    if let Err(r) = staff.require(Role::Admin, &state) {
        return r;
    }
    let disabled = match form.set.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return users_page(&state, &staff, StatusCode::BAD_REQUEST, "set: disable or enable".to_string()).await,
    };
    if disabled && id == staff.session.user.id {
        return users_page(&state, &staff, StatusCode::BAD_REQUEST, "You cannot disable your own account.".to_string()).await;
    }
    match state.store.set_staff_disabled(&id, disabled, &staff.actor(), state.clock.now()).await {
        Ok(()) => Redirect::to("/console/users").into_response(),
        Err(e) => failed(&staff, &state, e),
    }
}

/// The clinic-local day's calls.
fn day_filter(state: &AppState, day: NaiveDate) -> CallFilter {
    let (from, until) = super::kpis::span(state.store.timezone(), day, day);
    CallFilter { from, until, direction: None, outcome: None, language: None, transferred: None }
}

fn page(n: u32) -> Page {
    Page { limit: PAGE_SIZE, offset: i64::from(n).saturating_mul(PAGE_SIZE) }
}

/// Writes to the access log that this staff member saw these patients'
/// data (records without a patient are skipped); a page whose viewing
/// cannot be recorded is not shown.
pub(super) async fn seen(
    state: &AppState,
    staff: &Staff,
    action: &str,
    records: impl IntoIterator<Item = (Option<String>, Option<String>)>,
) -> Result<(), Response> {
    let reads: Vec<(String, Option<String>)> = records.into_iter().filter_map(|(p, r)| p.map(|p| (p, r))).collect();
    if reads.is_empty() {
        return Ok(());
    }
    state.store.record_access(&staff.actor().name, action, &reads, state.clock.now()).await.map_err(|e| failed(staff, state, e))
}
