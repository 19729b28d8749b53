//! The staff console (issue 18): server-rendered pages under `/console`,
//! on the API's listener, for receptionists, the clinic's manager and its
//! admin.
//!
//! - **Pages** are askama templates (`templates/console/`, compiled in and
//!   escaped by default); their CSS and the few lines of JavaScript that
//!   refresh the live figures ship inside the binary. No Node toolchain.
//! - **Accounts** live in the store (argon2id hashes, `password.rs`), made
//!   by `clinivox user add` or by an admin on the Staff page.
//! - **Sessions**: a random cookie (HttpOnly, SameSite=Strict, Path=/console,
//!   Secure under HTTPS) whose SHA-256 is kept in the store, with a
//!   lifetime and an idle limit ([`session_times`]); every form carries the
//!   session's CSRF token, the login form a token of its own (double
//!   submit with a cookie limited to the login path).
//! - **Lockout**: [`MAX_FAILED_LOGINS`] wrong passwords in a row lock the
//!   account for [`LOCKOUT_MINUTES`]; each failure is logged with the
//!   source address, for fail2ban. An unknown user name costs the same
//!   argon2 verification as a known one.
//! - **Audit**: every page that shows a patient's data writes who saw
//!   which patient to the access log, as the API does.

mod kpis;
mod pages;
pub mod password;
mod records;
mod texts;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::AppState;
use crate::store::{Actor, Channel, Failure, Role, SessionTimes, StaffSession};
pub use texts::Texts;

/// The session cookie's name.
pub const COOKIE: &str = "clinivox_session";
/// The login form's own token cookie.
const LOGIN_COOKIE: &str = "clinivox_login";
/// Wrong passwords in a row before an account is locked.
pub const MAX_FAILED_LOGINS: i64 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT_MINUTES: i64 = 15;

/// A session lasts a working day from login, and ends after half an hour unused.
pub fn session_times() -> SessionTimes {
    SessionTimes { lifetime: chrono::Duration::hours(10), idle: chrono::Duration::minutes(30) }
}

/// The console's routes (merged into the API's router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/today") }))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/language", post(language))
        .route("/console/static/{file}", get(asset))
        .route("/console/today", get(pages::today))
        .route("/console/today/live", get(pages::live))
        .route("/console/calls", get(pages::calls))
        .route("/console/calls/{id}", get(pages::call))
        .route("/console/calls/{id}/recording", get(pages::recording))
        .route("/console/callbacks", get(pages::callbacks))
        .route("/console/callbacks/{id}/done", post(pages::callback_done))
        .route("/console/callbacks/{id}/call", post(pages::callback_call))
        .route("/console/users", get(pages::users).post(pages::add_user))
        .route("/console/users/{id}/account", post(pages::set_account))
        .route("/console/appointments", get(records::appointments))
        .route("/console/appointments/{id}", get(records::appointment))
        .route("/console/patients", get(records::patients))
        .route("/console/patients/{id}", get(records::patient))
        .route("/console/escalations", get(records::escalations))
        .route("/console/kpis", get(kpis::page))
        .route("/console/kpis.csv", get(kpis::csv_file))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Nothing of the console is cached (a reception tablet is shared), framed
/// by another site, or allowed to load anything from elsewhere.
async fn security_headers(req: axum::extract::Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"),
    );
    r
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (include_str!("static/console.css"), "text/css; charset=utf-8"),
        "console.js" => (include_str!("static/console.js"), "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// A logged-in staff member: the extractor of every page but the login.
/// Without a live session a page read is sent to the login form, anything
/// else gets 403.
pub struct Staff {
    pub session: StaffSession,
    token_hash: String,
}

impl Staff {
    /// Who did it, in the audit log and on a callback marked done.
    pub fn actor(&self) -> Actor {
        Actor::new(format!("console:{}", self.session.user.username), Channel::Staff)
    }

    /// The session's texts: the user's language, else the clinic's first.
    pub fn texts(&self, state: &AppState) -> &'static Texts {
        texts::for_language(self.session.user.language.as_deref().unwrap_or_else(|| clinic_language(state)))
    }

    /// Whether `token` is this session's CSRF token.
    fn csrf_ok(&self, token: &str) -> bool {
        !token.is_empty() && bool::from(token.as_bytes().ct_eq(self.session.csrf.as_bytes()))
    }

    /// 403 unless the role is at least `role`.
    pub fn require(&self, role: Role, state: &AppState) -> Result<(), Response> {
        if self.session.user.role >= role {
            return Ok(());
        }
        Err(pages::message(self, state, StatusCode::FORBIDDEN, self.texts(state).forbidden))
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        Staff::find(parts, state, true).await
    }
}

/// A staff member whose request is not activity: the Today page's own
/// polling. It needs a live session but does not keep it alive, so a tab
/// left open on a shared reception tablet still logs out when idle.
pub struct Polling(pub Staff);

impl FromRequestParts<AppState> for Polling {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        Staff::find(parts, state, false).await.map(Polling)
    }
}

impl Staff {
    async fn find(parts: &Parts, state: &AppState, activity: bool) -> Result<Staff, Response> {
        let reading = parts.method == Method::GET || parts.method == Method::HEAD;
        let refuse = || if reading { Redirect::to("/console/login").into_response() } else { StatusCode::FORBIDDEN.into_response() };
        let Some(token) = cookie(&parts.headers, COOKIE) else { return Err(refuse()) };
        let token_hash = digest(&token);
        match state.store.staff_session(&token_hash, session_times(), state.clock.now(), activity).await {
            Ok(Some(session)) => Ok(Staff { session, token_hash }),
            Ok(None) => Err(refuse()),
            Err(e) => {
                tracing::error!(error = %e, "reading a console session failed");
                Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
            }
        }
    }
}

/// The client's address, when the listener told it (`ConnectInfo`).
pub struct Source(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

/// A form that needs nothing but the CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// 403 when a form's token is not the session's.
pub fn check_csrf(staff: &Staff, token: &str) -> Result<(), Response> {
    if staff.csrf_ok(token) {
        Ok(())
    } else {
        tracing::warn!("a console form came without its session's CSRF token; refused");
        Err((StatusCode::FORBIDDEN, "The form has expired: go back, reload the page and try again.").into_response())
    }
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    #[serde(default)]
    lang: String,
}

#[derive(askama::Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    t: &'static Texts,
    csrf: String,
    error: String,
    username: String,
}

async fn login_form(State(state): State<AppState>, q: axum::extract::Query<LoginQuery>) -> Response {
    let lang = if q.lang.is_empty() { clinic_language(&state) } else { q.lang.as_str() };
    login_page(&state, texts::for_language(lang), StatusCode::OK, String::new(), String::new())
}

/// The login form with a fresh token, in its cookie too.
fn login_page(state: &AppState, t: &'static Texts, status: StatusCode, error: String, username: String) -> Response {
    let csrf = random_token();
    let page = LoginPage { t, csrf: csrf.clone(), error, username };
    let mut r = (status, render(&page)).into_response();
    set_cookie(&mut r, state, LOGIN_COOKIE, &csrf, "/console/login", Some(3600));
    r
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    /// The language the form was shown in: its answer stays in it.
    #[serde(default)]
    lang: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(State(state): State<AppState>, Source(source): Source, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let source = source.map_or_else(|| "?".to_string(), |s| s.ip().to_string());
    let t = texts::for_language(if form.lang.is_empty() { clinic_language(&state) } else { form.lang.as_str() });
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !bool::from(form.csrf.as_bytes().ct_eq(expected.as_bytes())) {
        return login_page(&state, t, StatusCode::FORBIDDEN, t.login_failed.to_string(), String::new());
    }
    let now = state.clock.now();
    let user = match state.store.staff_user_by_name(&form.username).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "reading a staff account failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let hash = user.as_ref().map_or_else(|| password::decoy().to_string(), |u| u.password_hash.clone());
    let password = form.password;
    let right = password::verify_bounded(hash, password).await;
    let Some(user) = user.filter(|u| !u.disabled) else {
        tracing::warn!(%source, "console login failed: no such account");
        return login_page(&state, t, StatusCode::UNAUTHORIZED, t.login_failed.to_string(), form.username);
    };
    let t = texts::for_language(user.language.as_deref().unwrap_or(t.lang));
    if user.locked_until.is_some_and(|until| until > now) {
        tracing::warn!(%source, user = %user.username, "console login refused: the account is locked");
        return login_page(&state, t, StatusCode::FORBIDDEN, t.locked.to_string(), form.username);
    }
    if !right {
        let failure = state.store.staff_login_failed(&user.id, MAX_FAILED_LOGINS, chrono::Duration::minutes(LOCKOUT_MINUTES), now).await;
        return match failure {
            Ok(Failure::Locked(_)) => {
                tracing::warn!(%source, user = %user.username, "console login failed: wrong password; the account is now locked");
                login_page(&state, t, StatusCode::FORBIDDEN, t.locked.to_string(), form.username)
            }
            Ok(Failure::Counted { .. }) => {
                tracing::warn!(%source, user = %user.username, "console login failed: wrong password");
                login_page(&state, t, StatusCode::UNAUTHORIZED, t.login_failed.to_string(), form.username)
            }
            Err(e) => {
                tracing::error!(error = %e, "counting a failed login failed");
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            }
        };
    }
    let token = random_token();
    let started = async {
        state.store.staff_login_succeeded(&user.id).await?;
        state.store.create_staff_session(&user.id, &digest(&token), &random_token(), session_times(), now).await
    };
    if let Err(e) = started.await {
        tracing::error!(error = %e, "starting a console session failed");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    tracing::info!(user = %user.username, "console login");
    let mut r = Redirect::to("/console/today").into_response();
    set_cookie(&mut r, &state, COOKIE, &token, "/console", Some(session_times().lifetime.num_seconds()));
    set_cookie(&mut r, &state, LOGIN_COOKIE, "", "/console/login", Some(0));
    r
}

async fn logout(State(state): State<AppState>, staff: Staff, Form(form): Form<CsrfForm>) -> Response {
    if let Err(r) = check_csrf(&staff, &form.csrf) {
        return r;
    }
    if let Err(e) = state.store.end_staff_session(&staff.token_hash).await {
        tracing::error!(error = %e, "ending a console session failed");
    }
    let mut r = Redirect::to("/console/login").into_response();
    set_cookie(&mut r, &state, COOKIE, "", "/console", Some(0));
    r
}

#[derive(Deserialize)]
struct LanguageForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    language: String,
}

/// The console in another of the four languages, for this user from now on.
async fn language(State(state): State<AppState>, staff: Staff, Form(form): Form<LanguageForm>) -> Response {
    if let Err(r) = check_csrf(&staff, &form.csrf) {
        return r;
    }
    if !texts::LANGUAGES.contains(&form.language.as_str()) {
        return (StatusCode::BAD_REQUEST, "language: es, en, it or pt").into_response();
    }
    match state.store.set_staff_language(&staff.session.user.id, Some(&form.language)).await {
        Ok(()) => Redirect::to("/console/today").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "saving a console language failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

fn clinic_language(state: &AppState) -> &str {
    state.config.clinic.languages.first().map_or("en", String::as_str)
}

/// A template's HTML; a template that cannot render is a bug, answered 500.
pub fn render(t: &impl askama::Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn set_cookie(r: &mut Response, state: &AppState, name: &str, value: &str, path: &str, max_age: Option<i64>) {
    let secure = if state.config.http.tls.is_some() { "; Secure" } else { "" };
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    let c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict{age}{secure}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// 256 random bits, hex.
fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name_and_bounded() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; clinivox_session=abc"));
        h.append(header::COOKIE, HeaderValue::from_static("clinivox_login=xyz"));
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, LOGIN_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        let mut long = HeaderMap::new();
        long.insert(header::COOKIE, HeaderValue::from_str(&format!("clinivox_session={}", "x".repeat(500))).unwrap());
        assert_eq!(cookie(&long, COOKIE), None);
    }

    #[test]
    fn every_language_has_its_texts() {
        for lang in ["es", "en", "it", "pt"] {
            assert_eq!(texts::for_language(lang).lang, lang);
        }
        assert_eq!(texts::for_language("fr").lang, "en");
    }
}
