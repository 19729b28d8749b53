//! The staff console in a real browser (issue 18): Debian's Chromium,
//! driven through chromedriver with `fantoccini`, against the real
//! `clinivox serve` on a database that `clinivox demo --history-days 14`
//! filled and where `clinivox user add` made the accounts. A wrong
//! password is refused and repeated ones lock the account; the receptionist
//! marks a callback done with a click, and calls a patient back with
//! another (click-to-call: her desk phone, then the patient's, both
//! baresip); a call placed by a real softphone
//! (baresip, speaking Spanish) shows under Today while it lasts, with what
//! it is doing, and then under Calls with its transcript; the figures' page
//! shows the number of calls the store holds; a form posted without its
//! CSRF token is refused. Each step saves a screenshot under
//! `target/tmp/console-screenshots/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::crash::{free_port, model_in_cache, Service};
use super::phone::{utterance, Phone};

struct Driver(Child);

impl Drop for Driver {
    /// chromedriver and every Chromium process it started (one process
    /// group): nothing is left behind, even when the test failed midway.
    fn drop(&mut self) {
        let group = i32::try_from(self.0.id()).unwrap_or(0);
        if group > 0 {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

/// `clinivox` with the service's database, in `dir`.
fn cli(dir: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_clinivox"))
        .args(args)
        .current_dir(dir)
        .env_remove("CLINIVOX_CONFIG")
        .env("CLINIVOX_DATABASE__URL", format!("sqlite://{}", dir.join("clinic.db").display()))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("clinivox runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "clinivox {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn shot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn log_in(c: &Client, base: &str, user: &str, password: &str) -> String {
    c.goto(&format!("{base}/console/login?lang=en")).await.unwrap();
    let token = c.find(Locator::Css("input[name=csrf]")).await.unwrap().attr("value").await.unwrap().unwrap_or_default();
    c.find(Locator::Css("input[name=username]")).await.unwrap().send_keys(user).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(password).await.unwrap();
    c.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    settled(c, &token).await
}

/// The page after a form was sent: no longer the one holding `token`.
async fn settled(c: &Client, token: &str) -> String {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let page = c.source().await.unwrap();
        let ready = c.execute("return document.readyState", vec![]).await.unwrap() == json!("complete");
        if ready && !page.contains(token) {
            return page;
        }
        assert!(Instant::now() < until, "the form's answer did not come within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn chromedriver(port: u16) -> Driver {
    use std::os::unix::process::CommandExt;
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver) runs");
    let driver = Driver(child);
    let until = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < until, "chromedriver did not listen within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driver
}

/// The first element `css` finds within `limit` (the page may still be polling).
async fn wait_for(c: &Client, css: &str, limit: Duration) -> fantoccini::elements::Element {
    let until = Instant::now() + limit;
    loop {
        if let Some(e) = c.find_all(Locator::Css(css)).await.unwrap().into_iter().next() {
            return e;
        }
        assert!(Instant::now() < until, "nothing matched {css} within {limit:?}:\n{}", c.source().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A port for a baresip phone, none of `taken` (chosen, not yet bound): free
/// for UDP and TCP, with the next one free for its TLS transport. Taken from 23000–29999, outside the kernel's
/// ephemeral range (32768–60999), where an outgoing connection (Chromium's,
/// the service's) took a port that the kernel had handed out once as free
/// before the phone started (CI: "SIP/TLS transport failed: Address already
/// in use"); and outside the demo's RTP range (20000–20999).
fn free_udp_port(taken: &[u16]) -> u16 {
    use std::net::{TcpListener, UdpSocket};
    let start = 23_000 + 2 * (rand::random::<u16>() % 3_000);
    (0..3_000u16)
        .map(|i| 23_000 + (start - 23_000 + 2 * i) % 6_000)
        .find(|&p| {
            !taken.contains(&p)
                && UdpSocket::bind(("127.0.0.1", p)).is_ok()
                && TcpListener::bind(("127.0.0.1", p)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        })
        .expect("a free port for a phone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium() {
    model_in_cache();
    let dir = tempfile::tempdir().unwrap();
    // The demo clinic, with two softphones of its own: reception's desk
    // phone (extension 201, at a fixed address) and, behind its trunk, the
    // patient that click-to-call dials.
    let desk_port = free_udp_port(&[]);
    let patient_port = free_udp_port(&[desk_port]);
    let clinic = clinivox::config::DEMO_TOML
        .replace(
            "extension = \"201\"\nname = \"Recepción 1\"\n",
            &format!("extension = \"201\"\nname = \"Recepción 1\"\nuri = \"sip:201@127.0.0.1:{desk_port}\"\n"),
        )
        .replace(
            "cidrs = [\"127.0.0.0/8\", \"::1/128\"]\n",
            &format!("cidrs = [\"127.0.0.0/8\", \"::1/128\"]\nproxy = \"127.0.0.1:{patient_port}\"\n"),
        );
    assert!(clinic.contains(&format!(":{desk_port}")) && clinic.contains(&format!(":{patient_port}")), "the demo's staff or trunk changed");
    // A clinivox.toml of its own may not hold the demo's published credentials.
    let clinic = clinic
        .replace("sha256:d2771ba6a5ce166531a002e101dc6f4259fe1926281ac28f9bdaedf21e381866", &format!("sha256:{}", "ab".repeat(32)))
        .replace("sha256:66b40fcb785655ba6e7c7b70a15aac4be7fa7ccac1dcf85b534c19104e332624", &format!("sha256:{}", "cd".repeat(32)))
        .replace("demo-201-secret", "browser-test-201-secret")
        .replace("demo-202-secret", "browser-test-202-secret");
    std::fs::write(dir.path().join("clinivox.toml"), clinic).unwrap();
    // The database: the demo clinic with two weeks of history, and accounts.
    let seeded = cli(dir.path(), &["demo", "--history-days", "14"], "");
    assert!(seeded.contains("history: 14 days"), "{seeded}");
    cli(
        dir.path(),
        &["user", "add", "ana", "--role", "manager", "--display-name", "Ana Ruiz", "--extension", "201"],
        "una-clave-bastante-larga\n",
    );
    cli(dir.path(), &["user", "add", "intruso", "--role", "reception"], "otra-clave-bastante-larga\n");
    assert!(cli(dir.path(), &["user", "list"], "").contains("ana\tmanager\tAna Ruiz\textension=201"));

    // The assistant reads its wording from ./prompts, as a clinic's service does.
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"), dir.path().join("prompts")).unwrap();
    let addr: SocketAddr = free_port();
    let sip_port = free_udp_port(&[desk_port, patient_port]);
    let sip_listen = format!(r#"[{{ transport = "udp", addr = "127.0.0.1:{sip_port}" }}]"#);
    let mut service =
        Service::start_with(dir.path(), addr, None, &[("CLINIVOX_CALLS__APP", "assistant".into()), ("CLINIVOX_SIP__LISTEN", sip_listen)]);
    service.ready(addr).await;
    let base = format!("http://{addr}");
    let port = free_port().port();
    let _driver = chromedriver(port).await;
    let caps = json!({"goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
    }});
    let c = ClientBuilder::rustls()
        .expect("rustls")
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");

    // A wrong password: refused, said plainly.
    let page = log_in(&c, &base, "ana", "not-her-password-at-all").await;
    assert!(page.contains("Wrong user name or password"), "{page}");
    shot(&c, "01-login-refused").await;
    // Five in a row lock the account: then even the right one is refused.
    for _ in 0..5 {
        let page = log_in(&c, &base, "intruso", "guessing-the-password").await;
        assert!(page.contains("Wrong user name or password") || page.contains("locked"), "{page}");
    }
    let page = log_in(&c, &base, "intruso", "otra-clave-bastante-larga").await;
    assert!(page.contains("the account is locked for a while"), "{page}");
    shot(&c, "02-locked").await;

    // Ana logs in: Today, in her clinic's language.
    let page = log_in(&c, &base, "ana", "una-clave-bastante-larga").await;
    assert!(page.contains("Llamadas en curso") && page.contains("Ana Ruiz"), "{page}");
    assert_eq!(c.current_url().await.unwrap().path(), "/console/today");
    shot(&c, "03-today").await;

    // A patient calls on a real softphone: Today lists the call while it lasts.
    let caller_port = free_udp_port(&[desk_port, patient_port, sip_port]);
    let mut phone = Phone::start(dir.path(), "caller", caller_port, &format!("<sip:+34600123456@127.0.0.1:{caller_port}>;regint=0"));
    let (question, _) = utterance(dir.path(), "cancel", "es", "Quiero cancelar mi cita.");
    // The service may still be loading Whisper: a first INVITE can fail.
    let started = Instant::now();
    while !phone.established() {
        phone.dial(&format!("sip:+34911234567@127.0.0.1:{sip_port}"));
        let t = Instant::now();
        while !phone.established() && t.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the clinic does not answer:\n{}", phone.log());
        if !phone.established() {
            phone.hangup();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let greeting = phone.reply(0, Duration::from_millis(1500), Duration::from_secs(30)).await;
    assert!(greeting.is_some(), "the assistant greets the caller:\n{}", phone.log());
    let mark = phone.mark();
    phone.play(&question);
    let row = "tbody[data-rows=in_progress] tr[data-call]";
    let live = wait_for(&c, row, Duration::from_secs(20)).await;
    let live_text = live.text().await.unwrap();
    assert!(live_text.contains("Entrante") && live_text.contains("con el asistente"), "{live_text}");
    let call_id = live.attr("data-call").await.unwrap().unwrap_or_default();
    assert!(!call_id.is_empty(), "the call is recorded in the store");
    shot(&c, "04-call-in-progress").await;
    let answer = phone.reply(mark, Duration::from_millis(1500), Duration::from_secs(60)).await;
    assert!(answer.is_some(), "the assistant answers the question:\n{}", phone.log());
    phone.hangup();
    // When it ends, it leaves the list (the page's next poll)...
    let until = Instant::now() + Duration::from_secs(20);
    while !c.find_all(Locator::Css(row)).await.unwrap().is_empty() {
        assert!(Instant::now() < until, "the ended call is still listed as in progress");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(phone);
    // ...and shows under Calls, where it opens with its transcript.
    c.goto(&format!("{base}/console/calls")).await.unwrap();
    c.find(Locator::Css(&format!("a[href='/console/calls/{call_id}']"))).await.expect("the call under Calls").click().await.unwrap();
    wait_for(&c, "table.transcript", Duration::from_secs(10)).await;
    let mut turns = Vec::new();
    for tr in c.find_all(Locator::Css("table.transcript tbody tr")).await.unwrap() {
        let cells = tr.find_all(Locator::Css("td")).await.unwrap();
        let (speaker, text) = (cells[1].text().await.unwrap(), cells[2].text().await.unwrap());
        turns.push((speaker, text));
    }
    assert!(turns.first().is_some_and(|(s, t)| s == "Asistente" && t.contains("Clínica San Rafael")), "the greeting first: {turns:?}");
    // What the caller said, as Whisper heard it (its words vary; that there are some does not).
    assert!(turns.iter().any(|(s, t)| s == "Paciente" && t.split_whitespace().count() >= 2), "the caller's turn: {turns:?}");
    shot(&c, "05-call-transcript").await;

    // Click-to-call: Ana's desk phone rings and answers; then the patient's
    // phone, behind the trunk; they hear each other; Ana hangs up, and the
    // patient's call ends too.
    c.goto(&format!("{base}/console/callbacks")).await.unwrap();
    let number = c.find(Locator::Css("form[action$='/call']")).await.expect("a call button for Ana, who has a desk phone");
    let action = number.attr("action").await.unwrap().unwrap();
    let row = c.find(Locator::XPath(&format!("//form[@action='{action}']/ancestor::tr"))).await.unwrap();
    let phone_number = row.find(Locator::Css("a[href^='tel:']")).await.unwrap().text().await.unwrap();
    let mut desk = Phone::start(dir.path(), "desk", desk_port, &format!("<sip:201@127.0.0.1:{desk_port}>;regint=0;answermode=auto"));
    let mut patient = Phone::start(
        dir.path(),
        "patient",
        patient_port,
        &format!("<sip:{phone_number}@127.0.0.1:{patient_port}>;regint=0;answermode=auto"),
    );
    row.find(Locator::Css("form[action$='/call'] button")).await.unwrap().click().await.unwrap();
    let page = settled(&c, &action).await;
    assert!(page.contains("Su teléfono va a sonar"), "{page}");
    shot(&c, "06-click-to-call").await;
    desk.wait_established(Duration::from_secs(20)).await;
    patient.wait_established(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mark = desk.mark();
    patient.play(&question);
    let heard = desk.reply(mark, Duration::from_millis(1000), Duration::from_secs(20)).await;
    assert!(heard.is_some_and(|h| h.len() > 8000 / 2), "the desk phone hears the patient:\n{}\n{}", desk.log(), patient.log());
    desk.hangup();
    let until = Instant::now() + Duration::from_secs(15);
    while !patient.call_ended() {
        assert!(Instant::now() < until, "the patient's call did not end with the desk's:\n{}", patient.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((desk, patient));

    // A callback marked done with a click: who did it is shown.
    c.goto(&format!("{base}/console/callbacks")).await.unwrap();
    let open_before = c.find_all(Locator::Css("form[action$='/done'] button")).await.unwrap().len();
    assert!(open_before > 0, "the history left open callbacks");
    let first = c.find(Locator::Css("form[action$='/done']")).await.unwrap().attr("action").await.unwrap().unwrap();
    c.find(Locator::Css("form[action$='/done'] button")).await.unwrap().click().await.unwrap();
    let page = settled(&c, &first).await;
    assert_eq!(c.find_all(Locator::Css("form[action$='/done'] button")).await.unwrap().len(), open_before - 1);
    assert!(page.contains("console:ana"), "{page}");
    shot(&c, "07-callback-done").await;

    // The figures: the calls handled the page shows are the store's.
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Europe::Madrid).date_naive();
    let from = today - chrono::Duration::days(14);
    c.goto(&format!("{base}/console/kpis?from={from}&to={today}")).await.unwrap();
    let total_row = c.find(Locator::Css("table.kpis tbody tr:last-child")).await.unwrap();
    let cells: Vec<String> = {
        let mut out = Vec::new();
        for td in total_row.find_all(Locator::Css("td")).await.unwrap() {
            out.push(td.text().await.unwrap());
        }
        out
    };
    let store =
        clinivox::store::Store::connect(&format!("sqlite://{}", dir.path().join("clinic.db").display()), 2, chrono_tz::Europe::Madrid)
            .await
            .unwrap();
    let (start, end) = (
        chrono_tz::Europe::Madrid.from_local_datetime(&from.and_hms_opt(0, 0, 0).unwrap()).earliest().unwrap().with_timezone(&chrono::Utc),
        chrono::Utc::now() + chrono::Duration::days(1),
    );
    let filter = clinivox::store::CallFilter {
        from: start,
        until: end,
        direction: Some("inbound".into()),
        outcome: None,
        language: None,
        transferred: None,
    };
    let calls = store.calls_filtered(&filter, clinivox::store::Page { limit: 100_000, offset: 0 }).await.unwrap();
    let handled = calls.iter().filter(|c| c.outcome.as_deref() != Some("busy")).count();
    assert!(handled > 100);
    assert_eq!(cells[0], "total");
    assert_eq!(cells[1], handled.to_string(), "calls handled on the page and in the store");
    shot(&c, "08-figures").await;

    // A form posted without the session's token (as another site would): 403.
    let status = c
        .execute_async(
            "const done = arguments[0]; fetch('/console/callbacks/whatever/done', {method: 'POST', \
             headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'csrf='}).then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    shot(&c, "09-after-forged-post").await;
    // A reception tablet (768 × 1024, upright): no page is wider than the screen.
    c.set_window_size(768, 1024).await.unwrap();
    for page in ["today", "calls", "callbacks", "appointments", "patients?q=a", "escalations", "kpis", "users"] {
        c.goto(&format!("{base}/console/{page}")).await.unwrap();
        let fits = c.execute("return document.documentElement.scrollWidth <= window.innerWidth + 1", vec![]).await.unwrap();
        let widths = c.execute("return [document.documentElement.scrollWidth, window.innerWidth]", vec![]).await.unwrap();
        assert_eq!(fits, json!(true), "/console/{page} is wider than a tablet: {widths}");
    }
    c.goto(&format!("{base}/console/today")).await.unwrap();
    shot(&c, "10-tablet-today").await;
    c.close().await.unwrap();
    store.close().await;
    drop(service);
}

use chrono::TimeZone as _;
