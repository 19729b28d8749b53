//! The staff console (issue 18), through the same router the service
//! serves: logging in (the login form's token, lockout after repeated
//! failures, the cookie's flags), sessions that end when idle and at
//! logout, CSRF on every form, roles, the pages' contents (escaped), and
//! the access log written for every page that shows a patient's data.

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use clinivox::clock::Clock;
use clinivox::config::Config;
use clinivox::console::password;
use clinivox::store::{Actor, Channel, NewCall, NewCallback, NewStaffUser, NewTurn, Role, Store};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::{app_and_clock, new_patient, now};

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// A `Set-Cookie` of this response, whole.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a token") + "name=\"csrf\" value=\"".len();
        self.body[at..].split('"').next().unwrap().to_string()
    }
}

async fn send(app: &Router, method: &str, uri: &str, cookies: &str, form: Option<&[(&str, &str)]>) -> Page {
    let mut req = Request::builder().method(method).uri(uri);
    if !cookies.is_empty() {
        req = req.header(header::COOKIE, cookies);
    }
    let req = match form {
        Some(f) => req
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(serde_urlencoded::to_string(f).unwrap()))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let res = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Page { status, headers, body }
}

/// Logs in; the session cookie ("clinivox_session=…") and the first page.
async fn log_in(app: &Router, username: &str, pass: &str) -> (String, Page) {
    let (status, cookie) = try_log_in(app, username, pass).await;
    assert_eq!(status.status, StatusCode::SEE_OTHER, "{}", status.body);
    let page = send(app, "GET", "/console/today", &cookie, None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    (cookie, page)
}

async fn try_log_in(app: &Router, username: &str, pass: &str) -> (Page, String) {
    let form = send(app, "GET", "/console/login", "", None).await;
    let login_cookie = form.set_cookie("clinivox_login").unwrap();
    let pair = login_cookie.split(';').next().unwrap().to_string();
    let csrf = form.csrf();
    let r = send(app, "POST", "/console/login", &pair, Some(&[("csrf", &csrf), ("username", username), ("password", pass)])).await;
    let cookie = r.set_cookie("clinivox_session").map(|c| c.split(';').next().unwrap().to_string()).unwrap_or_default();
    (r, cookie)
}

async fn add_user(store: &Store, username: &str, role: Role, pass: &str) {
    let new = NewStaffUser {
        username: username.into(),
        display_name: format!("{username} (display)"),
        role,
        language: None,
        password_hash: password::hash(username, pass).unwrap(),
        extension: None,
    };
    store.create_staff_user(new, &Actor::new("test", Channel::System), now()).await.unwrap();
}

const RITA: &str = "rita";
const RITA_PW: &str = "recepcion-2026-segura";
const ADMIN: &str = "admin.ana";
const ADMIN_PW: &str = "admin-muy-larga-2026";

pub async fn console_logins_and_sessions(store: Store, config: Config) {
    let (app, clock) = app_and_clock(store.clone(), config);
    add_user(&store, RITA, Role::Reception, RITA_PW).await;

    // Not logged in: pages send to the login form; forms are refused.
    let r = send(&app, "GET", "/console/today", "", None).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/console/login"));
    assert_eq!(send(&app, "POST", "/console/logout", "", Some(&[("csrf", "x")])).await.status, StatusCode::FORBIDDEN);

    // The login form: its token in a cookie of the login path only, and the console's headers.
    let form = send(&app, "GET", "/console/login", "", None).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Contraseña"), "the clinic's first language, Spanish: {}", form.body);
    let c = form.set_cookie("clinivox_login").unwrap();
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/console/login"), "{c}");
    assert_eq!(c.split(';').next().unwrap(), format!("clinivox_login={}", form.csrf()));
    assert_eq!(form.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(form.headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(form.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'self'"));
    assert!(send(&app, "GET", "/console/login?lang=it", "", None).await.body.contains("Accedi"));
    // A login without the form's token (another site's form) is refused.
    let forged = send(&app, "POST", "/console/login", "", Some(&[("csrf", "abc"), ("username", RITA), ("password", RITA_PW)])).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.set_cookie("clinivox_session").is_none());

    // Wrong passwords, and an unknown name, get the same words.
    for _ in 0..4 {
        let (r, cookie) = try_log_in(&app, RITA, "not-the-password-at-all").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("Usuario o contraseña incorrectos") && cookie.is_empty(), "{}", r.body);
    }
    let (unknown, _) = try_log_in(&app, "nobody", RITA_PW).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("Usuario o contraseña incorrectos"));
    // The fifth wrong one locks the account: then even the right password is refused.
    let (r, _) = try_log_in(&app, RITA, "still-not-the-password").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("bloqueada"), "{}", r.body);
    let (r, cookie) = try_log_in(&app, RITA, RITA_PW).await;
    assert_eq!((r.status, cookie.as_str()), (StatusCode::FORBIDDEN, ""));
    let user = store.staff_user_by_name(RITA).await.unwrap().unwrap();
    let audit = store.audit_log("staff_user", &user.id).await.unwrap();
    assert_eq!(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["created", "locked"]);
    // Once the lock has passed, the right password lets her in.
    clock.advance(chrono::Duration::minutes(clinivox::console::LOCKOUT_MINUTES + 1));
    let (r, session) = try_log_in(&app, RITA, RITA_PW).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/console/today"));
    let set = r.set_cookie("clinivox_session").unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/console"), "{set}");
    assert!(!set.contains("Secure"), "no HTTPS in this test: {set}");
    let today = send(&app, "GET", "/console/today", &session, None).await;
    assert_eq!(today.status, StatusCode::OK);
    assert!(today.body.contains("rita (display)") && today.body.contains("Llamadas en curso"), "{}", today.body);
    // The session is kept by its digest only.
    let token = session.split_once('=').unwrap().1;
    assert!(store.staff_session(token, clinivox::console::session_times(), clock.now(), true).await.unwrap().is_none());

    // Her own language.
    let csrf = today.csrf();
    assert_eq!(
        send(&app, "POST", "/console/language", &session, Some(&[("csrf", &csrf), ("language", "fr")])).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&app, "POST", "/console/language", &session, Some(&[("csrf", "x"), ("language", "pt")])).await.status,
        StatusCode::FORBIDDEN
    );
    let r = send(&app, "POST", "/console/language", &session, Some(&[("csrf", &csrf), ("language", "pt")])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(send(&app, "GET", "/console/today", &session, None).await.body.contains("Chamadas em curso"));

    // Idle for 29 minutes: still in (and the idle time starts again); then 31 more: out.
    clock.advance(chrono::Duration::minutes(29));
    assert_eq!(send(&app, "GET", "/console/calls", &session, None).await.status, StatusCode::OK);
    clock.advance(chrono::Duration::minutes(29));
    assert_eq!(send(&app, "GET", "/console/calls", &session, None).await.status, StatusCode::OK);
    // The Today page's polling does not keep a session alive.
    for _ in 0..4 {
        clock.advance(chrono::Duration::minutes(10));
        if send(&app, "GET", "/console/today/live", &session, None).await.status != StatusCode::OK {
            break;
        }
    }
    assert_eq!(send(&app, "GET", "/console/today/live", &session, None).await.status, StatusCode::SEE_OTHER);
    let r = send(&app, "GET", "/console/calls", &session, None).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/console/login"));

    // Logout needs the session's token, and then the cookie opens nothing.
    let (session, today) = log_in(&app, RITA, RITA_PW).await;
    let csrf = today.csrf();
    assert_eq!(send(&app, "POST", "/console/logout", &session, Some(&[("csrf", "wrong")])).await.status, StatusCode::FORBIDDEN);
    let out = send(&app, "POST", "/console/logout", &session, Some(&[("csrf", &csrf)])).await;
    assert_eq!((out.status, out.location()), (StatusCode::SEE_OTHER, "/console/login"));
    assert!(out.set_cookie("clinivox_session").unwrap().contains("Max-Age=0"));
    assert_eq!(send(&app, "GET", "/console/today", &session, None).await.status, StatusCode::SEE_OTHER);

    // A new password ends every session of the account.
    let (session, _) = log_in(&app, RITA, RITA_PW).await;
    store
        .set_staff_password(&user.id, &password::hash(RITA, "otra-clave-mas-larga").unwrap(), &Actor::new("t", Channel::System), now())
        .await
        .unwrap();
    assert_eq!(send(&app, "GET", "/console/today", &session, None).await.status, StatusCode::SEE_OTHER);
    log_in(&app, RITA, "otra-clave-mas-larga").await;
}

pub async fn console_pages_show_the_day_and_log_who_saw_it(store: Store, config: Config) {
    let (app, _clock) = app_and_clock(store.clone(), config);
    add_user(&store, RITA, Role::Reception, RITA_PW).await;
    add_user(&store, ADMIN, Role::Admin, ADMIN_PW).await;
    let patient = new_patient(&app, "Carmen Consola", "+34600777001").await;

    // A call of today, booked, with its transcript; and one transferred.
    let call = store
        .start_call(
            NewCall {
                direction: "inbound".into(),
                remote_number: "+34600777001".into(),
                patient_id: Some(patient.clone()),
                language: Some("es".into()),
                appointment_id: None,
            },
            now(),
        )
        .await
        .unwrap();
    for (speaker, text) in [("assistant", "Clínica Demo, ¿en qué puedo ayudarle?"), ("caller", "Quiero una cita <b>mañana</b>")] {
        let turn = NewTurn { speaker: speaker.into(), text: text.into(), confidence: None, intent: None, latency_ms: Some(900) };
        store.add_turn(&call.id, turn, now()).await.unwrap();
    }
    store.finish_call(&call.id, "booked", Some(&patient), None, Some("cita reservada"), now()).await.unwrap();
    let other = NewCall {
        direction: "inbound".into(),
        remote_number: "+34600777002".into(),
        patient_id: None,
        language: Some("en".into()),
        appointment_id: None,
    };
    let other = store.start_call(other, now()).await.unwrap();
    store.finish_call(&other.id, "transferred", None, Some("reception"), None, now()).await.unwrap();
    // Two unanswered outbound calls: about Carmen's appointment (an
    // escalation) and offering her a freed slot (no appointment of hers yet).
    let body = serde_json::json!({"patient_id": patient, "provider_id": "dr-garcia", "starts_at": super::SLOT});
    let booked = super::call(&app, "POST", "/api/v1/appointments", Some(super::WRITE), Some(body), &[]).await;
    let appointment = booked.json["id"].as_str().unwrap().to_string();
    let outbound = |appointment_id: Option<String>| NewCall {
        direction: "outbound".into(),
        remote_number: "+34600777001".into(),
        patient_id: Some(patient.clone()),
        language: None,
        appointment_id,
    };
    let escalation = store.record_unanswered_call(outbound(Some(appointment)), "no_answer", now(), now()).await.unwrap();
    let offer = store.record_unanswered_call(outbound(None), "no_answer", now(), now()).await.unwrap();
    // And a callback request, with a name that is markup.
    let cb = NewCallback {
        call_id: Some(call.id.clone()),
        patient_id: Some(patient.clone()),
        name: "<script>alert(1)</script> Carmen".into(),
        phone: "+34600777001".into(),
        reason: "cambiar la cita".into(),
        language: "es".into(),
        promised: "2026-11-23 16:00".into(),
    };
    let cb = store.create_callback(cb, &Actor::new("assistant", Channel::Phone), now()).await.unwrap();

    let (session, today) = log_in(&app, RITA, RITA_PW).await;
    assert!(today.body.contains(&format!("/console/calls/{}", call.id)) && today.body.contains("+34600777002"), "{}", today.body);
    // The live figures, polled by the page.
    let live = send(&app, "GET", "/console/today/live", &session, None).await;
    let live: serde_json::Value = serde_json::from_str(&live.body).unwrap();
    assert_eq!((live["open_callbacks"].as_u64(), live["active"].as_u64()), (Some(1), Some(0)));
    assert!(live["max_active"].as_u64().unwrap() > 0);

    // Filters.
    let only = |q: &str| {
        let (app, session) = (app.clone(), session.clone());
        let q = q.to_string();
        async move { send(&app, "GET", &format!("/console/calls?day=2026-11-23&{q}"), &session, None).await }
    };
    let booked = only("outcome=booked").await;
    assert!(booked.body.contains(&call.id) && !booked.body.contains(&other.id), "{}", booked.body);
    let transferred = only("transferred=yes").await;
    assert!(transferred.body.contains(&other.id) && !transferred.body.contains(&call.id));
    let english = only("language=en&direction=inbound").await;
    assert!(english.body.contains(&other.id) && !english.body.contains(&call.id));
    assert!(!only("transferred=no&outcome=transferred").await.body.contains(&other.id));
    // Direction: inbound, outbound, or which kind of outbound call.
    let esc = only("direction=escalation").await;
    assert!(esc.body.contains(&escalation.id) && !esc.body.contains(&offer.id) && !esc.body.contains(&call.id), "{}", esc.body);
    assert!(esc.body.contains("Seguimiento de recordatorio"), "{}", esc.body);
    let off = only("direction=offer&outcome=no_answer").await;
    assert!(off.body.contains(&offer.id) && !off.body.contains(&escalation.id) && off.body.contains("Oferta de hueco libre"));
    let out = only("direction=outbound").await;
    assert!(out.body.contains(&offer.id) && out.body.contains(&escalation.id) && !out.body.contains(&other.id));
    assert!(!only("direction=inbound").await.body.contains(&offer.id));
    assert_eq!(only("direction=sideways").await.status, StatusCode::BAD_REQUEST);
    assert!(!send(&app, "GET", "/console/calls?day=2026-11-22", &session, None).await.body.contains(&call.id));
    assert_eq!(only("outcome=exploded").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(send(&app, "GET", "/console/calls?day=yesterday", &session, None).await.status, StatusCode::BAD_REQUEST);

    // One call: the transcript, escaped, with its timings.
    let one = send(&app, "GET", &format!("/console/calls/{}", call.id), &session, None).await;
    assert_eq!(one.status, StatusCode::OK);
    assert!(
        one.body.contains("Quiero una cita &#60;b&#62;mañana&#60;/b&#62;")
            || one.body.contains("Quiero una cita &lt;b&gt;mañana&lt;/b&gt;"),
        "{}",
        one.body
    );
    assert!(one.body.contains("0.9 s") && one.body.contains("cita reservada"));
    assert_eq!(send(&app, "GET", "/console/calls/nope", &session, None).await.status, StatusCode::NOT_FOUND);

    // Every page that showed Carmen's data is in her access log, under Rita's name.
    let log = store.access_log_of(&patient).await.unwrap();
    let seen: Vec<(&str, &str)> =
        log.iter().map(|e| (e.actor.as_str(), e.action.as_str())).filter(|(a, _)| a.starts_with("console:")).collect();
    for action in ["console.today", "console.calls", "console.call"] {
        assert!(seen.contains(&("console:rita", action)), "{action} not in {seen:?}");
    }

    // Callbacks: escaped, oldest first; "done" needs the session's token and says who.
    let page = send(&app, "GET", "/console/callbacks", &session, None).await;
    assert!(!page.body.contains("<script>alert(1)</script>"), "{}", page.body);
    assert!(page.body.contains("alert(1)") && page.body.contains("cambiar la cita"));
    let done = format!("/console/callbacks/{}/done", cb.id);
    assert_eq!(send(&app, "POST", &done, &session, Some(&[("csrf", "forged")])).await.status, StatusCode::FORBIDDEN);
    assert_eq!(store.callback(&cb.id).await.unwrap().status, clinivox::store::CallbackStatus::Open);
    let r = send(&app, "POST", &done, &session, Some(&[("csrf", &page.csrf())])).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/console/callbacks"));
    let closed = store.callback(&cb.id).await.unwrap();
    assert_eq!(closed.done_by.as_deref(), Some("console:rita"));
    assert!(send(&app, "GET", "/console/callbacks", &session, None).await.body.contains("console:rita"));

    // Staff accounts: admins only.
    assert_eq!(send(&app, "GET", "/console/users", &session, None).await.status, StatusCode::FORBIDDEN);
    assert!(!today.body.contains("/console/users"), "reception is not shown the Staff page");
    let csrf = today.csrf();
    let sneaky =
        [("csrf", csrf.as_str()), ("username", "mallory"), ("display_name", "M"), ("role", "admin"), ("password", "una-clave-larguisima")];
    assert_eq!(send(&app, "POST", "/console/users", &session, Some(&sneaky)).await.status, StatusCode::FORBIDDEN);
    assert!(store.staff_user_by_name("mallory").await.unwrap().is_none());

    let (admin, page) = log_in(&app, ADMIN, ADMIN_PW).await;
    assert!(page.body.contains("/console/users"));
    let users = send(&app, "GET", "/console/users", &admin, None).await;
    assert!(users.body.contains(RITA) && users.body.contains("reception"), "{}", users.body);
    let csrf = users.csrf();
    let short = [("csrf", csrf.as_str()), ("username", "luis"), ("display_name", "Luis"), ("role", "manager"), ("password", "corta")];
    let r = send(&app, "POST", "/console/users", &admin, Some(&short)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("at least 12"), "{}", r.body);
    let good = [
        ("csrf", csrf.as_str()),
        ("username", "Luis"),
        ("display_name", "Luis Gil"),
        ("role", "manager"),
        ("password", "gerencia-clinica-2026"),
    ];
    assert_eq!(send(&app, "POST", "/console/users", &admin, Some(&good)).await.status, StatusCode::SEE_OTHER);
    let taken = send(&app, "POST", "/console/users", &admin, Some(&good)).await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST);
    assert!(taken.body.contains("taken"));
    let luis = store.staff_user_by_name("luis").await.unwrap().unwrap();
    assert_eq!((luis.role, luis.display_name.as_str()), (Role::Manager, "Luis Gil"));
    let audit = store.audit_log("staff_user", &luis.id).await.unwrap();
    assert_eq!((audit[0].actor.as_str(), audit[0].action.as_str()), ("console:admin.ana", "created"));
    log_in(&app, "luis", "gerencia-clinica-2026").await;
}

pub async fn console_kpis_count_what_the_store_holds(store: Store, config: Config) {
    let (app, _clock) = app_and_clock(store.clone(), config);
    add_user(&store, RITA, Role::Reception, RITA_PW).await;
    add_user(&store, "gema", Role::Manager, "gerente-de-la-clinica").await;
    let patient = new_patient(&app, "Kpi Paciente", "+34600888001").await;
    let inbound = |number: &str, lang: &str| NewCall {
        direction: "inbound".into(),
        remote_number: number.into(),
        patient_id: None,
        language: Some(lang.into()),
        appointment_id: None,
    };
    // Monday 23 November: three calls handled (one booked, one transferred
    // wanting to cancel, one abandoned) and one refused (busy).
    for (outcome, target, summary, lang) in [
        ("booked", None, None, "es"),
        ("transferred", Some("reception"), Some("wants: cancel; caller: not identified"), "en"),
        ("abandoned", None, None, "es"),
        ("busy", None, None, "es"),
    ] {
        let c = store.start_call(inbound("+34600888002", lang), now()).await.unwrap();
        let turn = NewTurn { speaker: "assistant".into(), text: "…".into(), confidence: None, intent: None, latency_ms: Some(1200) };
        store.add_turn(&c.id, turn, now()).await.unwrap();
        store.finish_call(&c.id, outcome, None, target, summary, now()).await.unwrap();
    }
    // A booking through the API (channel api) and a callback request, done two hours later.
    let body = serde_json::json!({"patient_id": patient, "provider_id": "dr-garcia", "starts_at": super::SLOT});
    let booked = super::call(&app, "POST", "/api/v1/appointments", Some(super::WRITE), Some(body), &[]).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.json);
    let cb = NewCallback {
        call_id: None,
        patient_id: None,
        name: "Kpi".into(),
        phone: "+34600888002".into(),
        reason: "r".into(),
        language: "es".into(),
        promised: "2026-11-23 16:00".into(),
    };
    let cb = store.create_callback(cb, &Actor::new("assistant", Channel::Phone), now()).await.unwrap();
    store.callback_done(&cb.id, &Actor::new("console:rita", Channel::Staff), now() + chrono::Duration::hours(2)).await.unwrap();

    // Reception may not see the figures.
    let (reception, _) = log_in(&app, RITA, RITA_PW).await;
    assert_eq!(send(&app, "GET", "/console/kpis", &reception, None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send(&app, "GET", "/console/kpis.csv", &reception, None).await.status, StatusCode::FORBIDDEN);

    let (manager, today) = log_in(&app, "gema", "gerente-de-la-clinica").await;
    assert!(today.body.contains("/console/kpis"));
    let csv = send(&app, "GET", "/console/kpis.csv?from=2026-11-22&to=2026-11-23&period=day", &manager, None).await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert!(csv.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    let lines: Vec<Vec<&str>> = csv.body.lines().map(|l| l.split(',').collect()).collect();
    let col = |name: &str| lines[0].iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}"));
    let monday = lines.iter().find(|l| l[0] == "2026-11-23").expect("a row for the 23rd");
    let sunday = lines.iter().find(|l| l[0] == "2026-11-22").expect("a row for the 22nd, empty");
    for (name, want) in [
        ("handled", "3"),
        ("contained", "1"),
        ("containment_pct", "33.3"),
        ("transferred", "1"),
        ("abandoned", "1"),
        ("busy", "1"),
        ("latency_p50_ms", "1200"),
        ("booked", "1"),
        ("callbacks_opened", "1"),
        ("callbacks_closed", "1"),
        ("callback_hours_median", "2.0"),
    ] {
        assert_eq!(monday[col(name)], want, "{name}: {}", csv.body);
    }
    assert_eq!(sunday[col("handled")], "0");
    assert_eq!(lines.last().unwrap()[0], "total");
    // English calls only.
    let en = send(&app, "GET", "/console/kpis.csv?from=2026-11-23&to=2026-11-23&language=en", &manager, None).await;
    let en: Vec<Vec<&str>> = en.body.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!((en[1][col("handled")], en[1][col("transferred")]), ("1", "1"));

    // The page: the chart, the figures, the reasons and channels.
    let page = send(&app, "GET", "/console/kpis?from=2026-11-23&to=2026-11-23", &manager, None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<svg") && page.body.contains("33 %") && page.body.contains("cancel"), "{}", page.body);
    assert!(page.body.contains("<td>book</td><td>api</td><td>1</td>"), "{}", page.body);
    for bad in ["period=year", "from=2026-11-24&to=2026-11-23", "from=2025-01-01&to=2026-11-23", "language=fr", "to=soon"] {
        assert_eq!(send(&app, "GET", &format!("/console/kpis?{bad}"), &manager, None).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

pub async fn console_record_pages(store: Store, config: Config) {
    use clinivox::store::{NewReminder, ReminderChannel};
    let (app, _clock) = app_and_clock(store.clone(), config);
    add_user(&store, RITA, Role::Reception, RITA_PW).await;
    let patient = new_patient(&app, "Dolores Registro", "+34600999001").await;
    let body = serde_json::json!({"patient_id": patient, "provider_id": "dr-garcia", "starts_at": super::SLOT});
    let booked = super::call(&app, "POST", "/api/v1/appointments", Some(super::WRITE), Some(body), &[]).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.json);
    let appointment = booked.json["id"].as_str().unwrap().to_string();
    let reminder = NewReminder { appointment_id: appointment.clone(), channel: ReminderChannel::Sms, sent_at: now(), external_id: None };
    store.record_reminder(reminder, now()).await.unwrap();
    store.enqueue_job("escalation", &appointment, &patient, now(), now()).await.unwrap();
    // A first attempt, unanswered: due again at 12:00.
    let job = store.claim_job("escalation", "node-a", chrono::Duration::minutes(5), now()).await.unwrap().expect("due");
    store.finish_attempt(&job.id, "node-a", "no_answer", Some(now() + chrono::Duration::hours(3)), now()).await.unwrap();
    let (session, _) = log_in(&app, RITA, RITA_PW).await;
    // Today counts it among the follow-up calls still due today.
    let live: serde_json::Value = serde_json::from_str(&send(&app, "GET", "/console/today/live", &session, None).await.body).unwrap();
    assert_eq!(live["follow_ups_due"].as_u64(), Some(1), "{live}");

    // Tuesday's appointments, by provider, with who booked them.
    let day = send(&app, "GET", "/console/appointments?day=2026-11-24", &session, None).await;
    assert_eq!(day.status, StatusCode::OK, "{}", day.body);
    assert!(
        day.body.contains("Dolores Registro") && day.body.contains("2026-11-24 09:00") && day.body.contains("demo-reception (api)"),
        "{}",
        day.body
    );
    assert!(!send(&app, "GET", "/console/appointments?day=2026-11-25", &session, None).await.body.contains("Dolores"));
    assert_eq!(send(&app, "GET", "/console/appointments?day=24/11", &session, None).await.status, StatusCode::BAD_REQUEST);
    // One appointment's history.
    let one = send(&app, "GET", &format!("/console/appointments/{appointment}"), &session, None).await;
    assert!(one.body.contains("<td>book</td>"), "{}", one.body);

    // Patients by name (any case) and by number; then one patient.
    for q in ["dolores", "REGISTRO", "%2B34600999001", "+34 600 999 001"] {
        let found = send(&app, "GET", &format!("/console/patients?q={}", q.replace(' ', "%20").replace('+', "%2B")), &session, None).await;
        assert!(found.body.contains(&format!("/console/patients/{patient}")), "{q}: {}", found.body);
    }
    assert!(!send(&app, "GET", "/console/patients?q=zzz", &session, None).await.body.contains("/console/patients/"));
    // LIKE's wildcards are literal.
    assert!(!send(&app, "GET", "/console/patients?q=%25", &session, None).await.body.contains("/console/patients/"));
    let p = send(&app, "GET", &format!("/console/patients/{patient}"), &session, None).await;
    assert!(p.body.contains("+34600999001") && p.body.contains("1950-05-03") && p.body.contains("sms"), "{}", p.body);
    // The reminder row names its appointment and when it went out.
    assert!(p.body.contains("<td>2026-11-24 09:00</td><td>sms</td><td>2026-11-23 09:00</td>"), "{}", p.body);

    // Follow-up calls due.
    let esc = send(&app, "GET", "/console/escalations", &session, None).await;
    assert!(
        esc.body.contains("escalation")
            && esc.body.contains("Dolores Registro")
            && esc.body.contains("2026-11-23 12:00")
            && esc.body.contains("2026-11-23 09:00 sin respuesta"),
        "{}",
        esc.body
    );

    let log = store.access_log_of(&patient).await.unwrap();
    let seen: Vec<&str> = log.iter().filter(|e| e.actor == "console:rita").map(|e| e.action.as_str()).collect();
    for action in ["console.appointments", "console.appointment", "console.patients", "console.patient", "console.escalations"] {
        assert!(seen.contains(&action), "{action} not in {seen:?}");
    }
}

pub async fn console_kpis_match_a_seeded_history(store: Store, config: Config) {
    use clinivox::store::{CallFilter, Page as StorePage};
    let (app, _clock) = app_and_clock(store.clone(), config);
    let seeded = clinivox::demo::seed(&store, now()).await.unwrap();
    let h = clinivox::demo::history::seed_history(&store, &seeded.patients, 21, now()).await.unwrap();
    assert!(h.calls > 200 && h.appointments > 20 && h.reminders > 20 && h.escalation_calls > 0 && h.callbacks > 0, "{h:?}");
    add_user(&store, "gema", Role::Manager, "gerente-de-la-clinica").await;
    let (manager, _) = log_in(&app, "gema", "gerente-de-la-clinica").await;
    // The service's hourly roll-up has written the last ten closed days
    // (12–21 November); the first view writes those before (2–11 November);
    // the 22nd (yesterday) is read live. Each day is checked below.
    store.roll_up_closed_days(10, now()).await.unwrap();
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    assert_eq!(store.rolled_up_days(day(1), day(23)).await.unwrap(), (12..=21).map(day).collect::<Vec<_>>());
    let csv = send(&app, "GET", "/console/kpis.csv?from=2026-11-02&to=2026-11-22", &manager, None).await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    let lines: Vec<Vec<&str>> = csv.body.lines().map(|l| l.split(',').collect()).collect();
    let col = |name: &str| lines[0].iter().position(|h| *h == name).unwrap();
    assert_eq!(lines.len(), 1 + 21 + 1, "a row per day and the total");
    let tz = store.timezone();
    let mut total_handled = 0;
    for row in &lines[1..22] {
        // The same day's calls, read through the Calls page's query instead.
        let day = chrono::NaiveDate::parse_from_str(row[0], "%Y-%m-%d").unwrap();
        let (from, until) = clinivox_day(tz, day);
        let filter = CallFilter { from, until, direction: None, outcome: None, language: None, transferred: None };
        let calls = store.calls_filtered(&filter, StorePage { limit: 10_000, offset: 0 }).await.unwrap();
        let inbound: Vec<_> = calls.iter().filter(|c| c.direction == "inbound").collect();
        let outcome = |c: &&&clinivox::store::Call| c.outcome.clone().unwrap_or_default();
        let handled = inbound.iter().filter(|c| outcome(c) != "busy").count();
        let transferred = inbound.iter().filter(|c| c.transfer_target.is_some()).count();
        let contained =
            inbound.iter().filter(|c| ["booked", "confirmed", "cancelled", "rescheduled", "info"].contains(&outcome(c).as_str())).count();
        let abandoned = inbound.iter().filter(|c| outcome(c) == "abandoned").count();
        for (name, want) in [("handled", handled), ("contained", contained), ("transferred", transferred), ("abandoned", abandoned)] {
            assert_eq!(row[col(name)], want.to_string(), "{name} on {day}");
        }
        total_handled += handled;
    }
    assert_eq!(lines[22][col("handled")], total_handled.to_string());
    // Callbacks: every one the history opened, and those it closed.
    let opened: u64 = lines[22][col("callbacks_opened")].parse().unwrap();
    let all = store.callbacks_page(None, StorePage { limit: 10_000, offset: 0 }).await.unwrap();
    assert_eq!(opened, all.len() as u64);
    let closed: u64 = lines[22][col("callbacks_closed")].parse().unwrap();
    assert_eq!(closed, all.iter().filter(|c| c.done_at.is_some()).count() as u64);
    // Days before yesterday now come from their roll-ups, written by that
    // first view: a second view says the same, by language too.
    assert_eq!(store.rolled_up_days(day(1), day(23)).await.unwrap(), (2..=21).map(day).collect::<Vec<_>>());
    let again = send(&app, "GET", "/console/kpis.csv?from=2026-11-02&to=2026-11-22&period=day", &manager, None).await;
    assert_eq!(again.body, csv.body);
    let es = |app: Router, manager: String| async move {
        send(&app, "GET", "/console/kpis.csv?from=2026-11-02&to=2026-11-22&language=es", &manager, None).await.body
    };
    let first_es = es(app.clone(), manager.clone()).await;
    assert_eq!(es(app.clone(), manager.clone()).await, first_es);
    let es_total: u64 = first_es.lines().last().unwrap().split(',').nth(col("handled")).unwrap().parse().unwrap();
    assert!(es_total > 0 && es_total < total_handled as u64, "{es_total} of {total_handled}");
    // The page renders it all.
    let page = send(&app, "GET", "/console/kpis?from=2026-11-02&to=2026-11-22&period=week", &manager, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("(W45)") && page.body.contains("speak to a person"), "{}", page.body);
}

fn clinivox_day(tz: chrono_tz::Tz, day: chrono::NaiveDate) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    use chrono::TimeZone;
    let at =
        |d: chrono::NaiveDate| tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap()).earliest().unwrap().with_timezone(&chrono::Utc);
    (at(day), at(day.succ_opt().unwrap()))
}

/// Today lists this node's calls in progress with what each is doing, live;
/// an admin disables an account (its session ends, it cannot log in) and
/// enables it again; the last callbacks done are the newest.
pub async fn console_calls_in_progress_and_accounts(store: Store, config: Config) {
    use clinivox::metrics::{CallPhase, Metrics};
    use std::time::{Duration, Instant};
    let metrics = Metrics::new();
    let clock = std::sync::Arc::new(clinivox::clock::ManualClock::new(now()));
    let state = super::AppState::new(store.clone(), std::sync::Arc::new(config), clock.clone(), metrics.clone());
    let app = super::router(state);
    add_user(&store, RITA, Role::Reception, RITA_PW).await;
    add_user(&store, ADMIN, Role::Admin, ADMIN_PW).await;
    let (rita, _) = log_in(&app, RITA, RITA_PW).await;

    // Two calls in progress: one with the assistant, one bridged to staff.
    let new_call = |number: &str, language: &str| NewCall {
        direction: "inbound".into(),
        remote_number: number.into(),
        patient_id: None,
        language: Some(language.into()),
        appointment_id: None,
    };
    let first = store.start_call(new_call("+34600555001", "es"), now()).await.unwrap();
    let second = store.start_call(new_call("+34600555002", "en"), now()).await.unwrap();
    let t0 = Instant::now() - Duration::from_secs(200);
    let a = metrics.call_started(t0);
    a.set_call_id(Some(&first.id));
    let b = metrics.call_started(t0);
    b.set_call_id(Some(&second.id));
    b.set_phase(CallPhase::Transferring, t0 + Duration::from_secs(60));
    b.set_phase(CallPhase::Bridged, t0 + Duration::from_secs(75));

    let today = send(&app, "GET", "/console/today", &rita, None).await;
    assert!(today.body.contains("con el asistente") && today.body.contains("con el personal"), "{}", today.body);
    assert!(today.body.contains(&format!("<tr data-call=\"{}\">", second.id)), "{}", today.body);
    let live = send(&app, "GET", "/console/today/live", &rita, None).await;
    let json: serde_json::Value = serde_json::from_str(&live.body).unwrap();
    let rows = json["in_progress"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json}");
    assert_eq!((rows[0]["id"].as_str(), rows[0]["doing"].as_str()), (Some(first.id.as_str()), Some("con el asistente")));
    assert_eq!((rows[1]["id"].as_str(), rows[1]["doing"].as_str()), (Some(second.id.as_str()), Some("con el personal")));
    assert_eq!((rows[1]["language"].as_str(), rows[1]["time"].as_str()), (Some("en"), Some("2026-11-23 09:00")));
    // In the bridged phase since 125 s (a slow machine may add a second or two).
    assert!(rows[1]["since"].as_str().unwrap().starts_with("2:0"), "{json}");
    // No number and no name in what the page polls.
    assert!(!live.body.contains("+34600555002"), "{}", live.body);
    drop(a);
    let json: serde_json::Value = serde_json::from_str(&send(&app, "GET", "/console/today/live", &rita, None).await.body).unwrap();
    assert_eq!(json["in_progress"].as_array().unwrap().len(), 1);
    assert_eq!(json["active"].as_u64(), Some(1));
    drop(b);

    // Callbacks: the ones done most recently are listed, whenever they were asked for.
    let mut ids = Vec::new();
    for i in 0..12 {
        let cb = NewCallback {
            call_id: None,
            patient_id: None,
            name: format!("Paciente {i:02}"),
            phone: "+34600555003".into(),
            reason: "cita".into(),
            language: "es".into(),
            promised: "hoy".into(),
        };
        ids.push(store.create_callback(cb, &Actor::new("assistant", Channel::Phone), now()).await.unwrap().id);
    }
    // Done in reverse order of asking: the oldest request is the last done.
    for (i, id) in ids.iter().rev().enumerate() {
        store.callback_done(id, &Actor::new("console:rita", Channel::Staff), now() + chrono::Duration::minutes(i as i64)).await.unwrap();
    }
    let page = send(&app, "GET", "/console/callbacks", &rita, None).await;
    assert!(page.body.contains("Paciente 00") && page.body.contains("Paciente 09"), "{}", page.body);
    assert!(!page.body.contains("Paciente 10") && !page.body.contains("Paciente 11"), "only the last ten done: {}", page.body);
    assert!(page.body.find("Paciente 00").unwrap() < page.body.find("Paciente 09").unwrap(), "newest first");

    // An admin disables Rita: her open session ends at once, and she cannot log in.
    let (admin, users) = {
        let (cookie, _) = log_in(&app, ADMIN, ADMIN_PW).await;
        let users = send(&app, "GET", "/console/users", &cookie, None).await;
        (cookie, users)
    };
    let rita_id = store.staff_user_by_name(RITA).await.unwrap().unwrap().id;
    let admin_id = store.staff_user_by_name(ADMIN).await.unwrap().unwrap().id;
    assert!(users.body.contains(&format!("/console/users/{rita_id}/account")), "{}", users.body);
    assert!(!users.body.contains(&format!("/console/users/{admin_id}/account")), "no button to disable oneself");
    let csrf = users.csrf();
    let uri = format!("/console/users/{rita_id}/account");
    // Without the token, or by a receptionist: refused.
    assert_eq!(send(&app, "POST", &uri, &admin, Some(&[("csrf", "forged"), ("set", "disable")])).await.status, StatusCode::FORBIDDEN);
    let rita_csrf = send(&app, "GET", "/console/callbacks", &rita, None).await.csrf();
    assert_eq!(send(&app, "POST", &uri, &rita, Some(&[("csrf", &rita_csrf), ("set", "disable")])).await.status, StatusCode::FORBIDDEN);
    let r = send(&app, "POST", &uri, &admin, Some(&[("csrf", &csrf), ("set", "disable")])).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/console/users"));
    let r = send(&app, "GET", "/console/today", &rita, None).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/console/login"), "her session ended");
    let (refused, cookie) = try_log_in(&app, RITA, RITA_PW).await;
    assert!(cookie.is_empty() && refused.status != StatusCode::SEE_OTHER, "{}", refused.body);
    assert!(send(&app, "GET", "/console/users", &admin, None).await.body.contains("Desactivada"));
    // The admin cannot disable their own account; enabling Rita lets her back in.
    let own = format!("/console/users/{admin_id}/account");
    assert_eq!(send(&app, "POST", &own, &admin, Some(&[("csrf", &csrf), ("set", "disable")])).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(send(&app, "POST", &uri, &admin, Some(&[("csrf", &csrf), ("set", "maybe")])).await.status, StatusCode::BAD_REQUEST);
    let r = send(&app, "POST", &uri, &admin, Some(&[("csrf", &csrf), ("set", "enable")])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    log_in(&app, RITA, RITA_PW).await;
    let audit = store.audit_log("staff_user", &rita_id).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["created", "disabled", "enabled"]);
    assert!(audit[1].actor.contains("console:admin.ana"), "{:?}", audit[1]);

    // Click-to-call needs telephony (none in this router) and a desk phone.
    let (rita, _) = log_in(&app, RITA, RITA_PW).await;
    let page = send(&app, "GET", "/console/callbacks", &rita, None).await;
    assert!(!page.body.contains("/call\""), "no call button without telephony: {}", page.body);
    let cb = NewCallback {
        call_id: None,
        patient_id: None,
        name: "Paciente abierta".into(),
        phone: "+34600555004".into(),
        reason: "cita".into(),
        language: "es".into(),
        promised: "hoy".into(),
    };
    let open = store.create_callback(cb, &Actor::new("assistant", Channel::Phone), now()).await.unwrap();
    let uri = format!("/console/callbacks/{}/call", open.id);
    let csrf = page.csrf();
    assert_eq!(send(&app, "POST", &uri, &rita, Some(&[("csrf", "forged")])).await.status, StatusCode::FORBIDDEN);
    let r = send(&app, "POST", &uri, &rita, Some(&[("csrf", &csrf)])).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains("La telefonía no está activa"), "{}", r.body);
    // A desk phone: one of the clinic's [[staff]] extensions, audited; bad ones refused.
    let who = Actor::new("cli:admin", Channel::Staff);
    store.set_staff_extension(&rita_id, Some("201"), &who, now()).await.unwrap();
    assert_eq!(store.staff_user(&rita_id).await.unwrap().extension.as_deref(), Some("201"));
    assert!(store.set_staff_extension(&rita_id, Some("20 1; DROP"), &who, now()).await.is_err());
    let audit = store.audit_log("staff_user", &rita_id).await.unwrap();
    assert_eq!((audit.last().unwrap().action.as_str(), audit.last().unwrap().after.as_deref()), ("extension_set", Some("201")));
    let users = send(&app, "GET", "/console/users", &admin, None).await;
    assert!(users.body.contains("<td>201</td>"), "{}", users.body);
    let form = [
        ("csrf", users.csrf()),
        ("username", "nuevo".into()),
        ("display_name", "Nuevo".into()),
        ("role", "reception".into()),
        ("password", "una-clave-muy-larga".into()),
        ("extension", "999".into()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = send(&app, "POST", "/console/users", &admin, Some(&form)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("999 is not one of the clinic"), "{}", r.body);
}
