//! `clinivox`: parse the command line and configuration, bind sockets, hand
//! over to the library. Everything else lives in `clinivox::…`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clinivox::clock::{Clock, SystemClock};
use clinivox::config::{self, Config};

#[derive(Parser)]
#[command(name = "clinivox", version, about = "Self-hosted telephony voice assistant for medical clinics")]
struct Cli {
    /// Configuration file; when the default is missing, the demo clinic runs.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH, env = "CLINIVOX_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (HTTP API; the clinic's database is migrated at start-up).
    Serve,
    /// Seed the demo clinic's patients and appointments (once) and print them;
    /// `--history-days 90` also writes 90 days of past calls, bookings,
    /// reminders, escalation calls and callbacks (for the console's figures).
    Demo {
        #[arg(long, default_value_t = 0)]
        history_days: i64,
    },
    /// Check the configuration and report every problem.
    CheckConfig,
    /// Print each provider's calendar feed URL (`[calendar] key` set):
    /// `calendar-urls --base https://clinic.example:8443`.
    CalendarUrls {
        /// The service's address as doctors' calendar apps reach it.
        #[arg(long, default_value = "")]
        base: String,
    },
    /// Remove patients' data past its `[privacy]` retention period now
    /// (the service also does it every hour); `--dry-run` only reports it.
    Purge {
        #[arg(long)]
        dry_run: bool,
    },
    /// A patient's rights (GDPR Art. 15, 17): `patient export <id> [-o DIR]`,
    /// `patient erase <id> --yes`.
    Patient {
        #[command(subcommand)]
        action: PatientAction,
    },
    /// Staff console accounts: `user add NAME --role reception --display-name "…"`
    /// and `user password NAME` read the password from standard input; `user list`.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Run a telephony test application on its own, printing one line per event
    /// (for checking a trunk or desk phone, and for the interop tests).
    SipApp {
        /// A file holding only the `[sip]` settings (SipConfig).
        sip_config: PathBuf,
        /// echo | tone | bridge <ext or sip: URI> | refer <sip: URI> | dial <target> [seconds]
        app: String,
        args: Vec<String>,
    },
    /// Whisper models: `models fetch base`, `models list`, `models convert DIR OUT`.
    Models {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Transcribe a WAV file (PCM or µ-law): `transcribe FILE.wav [--lang es] [--name base-q8_0]`.
    Transcribe {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Speak text to an 8 kHz WAV: `say --lang es "texto" -o out.wav`.
    Say {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the `ha1_sha256`/`ha1_md5` lines for a staff extension, reading
    /// its password from standard input (so it stays out of shell history).
    Ha1 {
        extension: String,
        /// The `[sip] realm` (HA1 depends on it).
        #[arg(long, default_value = "clinivox")]
        realm: String,
    },
    /// Token helpers.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Print how the assistant understands one utterance, as one JSON line.
    Nlu {
        #[arg(long, default_value = "es")]
        lang: String,
        /// Clinic-local time that "mañana" is resolved against, like 2026-11-23T09:00:00 (default: now).
        #[arg(long)]
        now: Option<chrono::NaiveDateTime>,
        /// Directory holding <lang>.toml.
        #[arg(long, default_value = "prompts")]
        prompts: PathBuf,
        text: String,
    },
    /// Talk to the assistant in text against the clinic's store: one caller
    /// line per stdin line; `#dtmf 1`, `#silence`, `#hangup`.
    Chat {
        /// Language (default: the clinic's first).
        #[arg(long)]
        lang: Option<String>,
        /// Caller ID, E.164.
        #[arg(long)]
        caller: Option<String>,
        /// Clinic-local start time; the store sees it too (default: now).
        #[arg(long)]
        now: Option<chrono::NaiveDateTime>,
        #[arg(long, default_value = "prompts")]
        prompts: PathBuf,
        /// Play the clinic calling the patient about this appointment (the
        /// escalation of an unanswered reminder); you answer as whoever picks up.
        #[arg(long, value_name = "APPOINTMENT_ID")]
        outreach: Option<String>,
    },
    /// Benchmarks that print a table.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum PatientAction {
    /// Write everything held about the patient to DIR/patient-<id>/export.json,
    /// their call recordings beside it (recordings/<call id>.wav).
    Export {
        id: String,
        #[arg(short, long, default_value = ".")]
        out: PathBuf,
    },
    /// Erase the patient irreversibly: identifiers, transcripts, recordings;
    /// future appointments cancelled, past ones kept anonymous.
    Erase {
        id: String,
        /// Required: there is no undo.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add an account (the password, at least 12 characters, on standard input).
    Add {
        username: String,
        /// reception, manager or admin.
        #[arg(long, default_value = "reception")]
        role: String,
        /// The name the console shows (default: the user name).
        #[arg(long)]
        display_name: Option<String>,
        /// es, en, it or pt (default: the clinic's first language).
        #[arg(long)]
        language: Option<String>,
        /// Their desk phone's [[staff]] extension: the console's click-to-call rings it first.
        #[arg(long)]
        extension: Option<String>,
    },
    /// Set a new password (on standard input); the account's sessions end.
    Password { username: String },
    /// Set (or, with none, clear) the desk phone's [[staff]] extension that click-to-call rings.
    Extension { username: String, extension: Option<String> },
    /// Every account, with its role (and "disabled" when it is).
    List,
    /// Disable an account: it cannot log in and its sessions end. Nothing is deleted.
    Disable { username: String },
    /// Enable a disabled account again.
    Enable { username: String },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Print the `hash` to put in [[api.tokens]] for a bearer token.
    Hash { token: String },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Understanding latency per utterance and a whole booking call's engine and store time.
    Conversation {
        #[arg(long, default_value = "prompts")]
        prompts: PathBuf,
        /// Directory of the NLU tables (<lang>.tsv).
        #[arg(long, default_value = "tests/nlu")]
        tables: PathBuf,
        /// PostgreSQL to use (a private schema is created); "off" to skip it.
        #[arg(long, default_value = clinivox::testing::DEFAULT_PG_URL)]
        postgres: String,
    },
    /// Booking throughput and latency on SQLite and PostgreSQL under contention.
    Store {
        /// PostgreSQL to use (a private schema is created); "off" to skip it.
        #[arg(long, default_value = clinivox::testing::DEFAULT_PG_URL)]
        postgres: String,
        /// Client counts to run.
        #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
        clients: Vec<usize>,
    },
    /// SIP/RTP under SIPp: call setups per second, simultaneous echo calls with CPU.
    #[cfg(feature = "whisper")]
    Sip {
        /// Call rates (calls/s) to try for setups.
        #[arg(long, value_delimiter = ',', default_value = "200,400,800,1200,1600,2000")]
        rates: Vec<u32>,
        #[arg(long, default_value_t = 5)]
        seconds_per_rate: u32,
        /// Simultaneous echo calls to try.
        #[arg(long, value_delimiter = ',', default_value = "100,200,400,600,800,1000")]
        calls: Vec<u32>,
        /// How long each echo call streams, seconds.
        #[arg(long, default_value_t = 10)]
        hold_seconds: u32,
        /// TLS+SRTP beside UDP+RTP: calls in flight for the setup steps.
        #[arg(long, value_delimiter = ',', default_value = "10,50")]
        secure_in_flight: Vec<usize>,
        /// TLS+SRTP beside UDP+RTP: simultaneous echo calls.
        #[arg(long, value_delimiter = ',', default_value = "50,100,200,400")]
        secure_calls: Vec<usize>,
        /// Past capacity and under a flood: INVITEs per second from the outsider.
        #[arg(long, default_value_t = 5000)]
        flood_rate: u32,
        /// Only the part past capacity and under a flood (no SIPp, no TLS).
        #[arg(long)]
        overload_only: bool,
        /// Multiples of capacity offered open-loop.
        #[arg(long, value_delimiter = ',', default_value = "1.5,3")]
        overload_multiples: Vec<f64>,
        /// Times the capacity and overload steps are repeated (the table gives medians).
        #[arg(long, default_value_t = 3)]
        overload_rounds: usize,
    },
    /// Turn latency on the wire with scripted callers (the service runs in
    /// this process): p50/p95 per model, then simultaneous calls with the default model (base-q8_0).
    #[cfg(feature = "whisper")]
    Turns {
        /// Whisper models to measure (catalogue names; missing ones are fetched).
        #[arg(long, value_delimiter = ',', default_value = "base-q8_0,base,small")]
        models: Vec<String>,
        /// Calls per model, one after another.
        #[arg(long, default_value_t = 2)]
        calls_per_model: usize,
        /// Simultaneous calls to try with the default model; stops at the first level over 1.5 s p95.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,6,8")]
        levels: Vec<usize>,
        /// Between the starts of simultaneous calls.
        #[arg(long, default_value_t = 1500)]
        stagger_ms: u64,
        /// Installed models (as `models fetch --models DIR`).
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
        /// Downloaded packages (as `models fetch --cache DIR`).
        #[arg(long, default_value = "models/cache")]
        cache: PathBuf,
    },
    /// Whisper speed per model and threads, and time to first TTS audio.
    Speech {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Staff console pages' server time with a year of a busy clinic's history, SQLite and PostgreSQL.
    Console {
        /// PostgreSQL to use (a private schema is created); "off" to skip it.
        #[arg(long, default_value = clinivox::testing::DEFAULT_PG_URL)]
        postgres: String,
        /// Calls in the year of history.
        #[arg(long, default_value_t = 100_000)]
        calls: usize,
        /// Requests per page.
        #[arg(long, default_value_t = 30)]
        rounds: usize,
    },
    /// Escalation jobs claimed and completed per second, 1 and 4 instances.
    Scheduler {
        /// PostgreSQL to use (a private schema is created); "off" to skip it.
        #[arg(long, default_value = clinivox::testing::DEFAULT_PG_URL)]
        postgres: String,
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        instances: Vec<usize>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Databases, recordings and bindings hold patients' data: nothing this
    // process writes is readable by other accounts (see private_files).
    clinivox::private_files::owner_only_umask();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=error".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Ha1 { extension, realm } => ha1(&extension, &realm)?,
        Command::Token { action: TokenAction::Hash { token } } => println!("{}", config::hash_token(&token)),
        Command::Models { args } => speech_cli("models", args)?,
        Command::Transcribe { args } => speech_cli("transcribe", args)?,
        Command::Say { args } => speech_cli("say", args)?,
        Command::SipApp { sip_config, app, args } => sip_app(&sip_config, &app, &args).await?,
        Command::Openapi => println!("{}", clinivox::api::openapi_json()),
        Command::CheckConfig => {
            let c = load(&cli.config)?;
            let certs = config::certs::check_certificates(&c, std::time::SystemTime::now());
            for check in &certs {
                println!("{}", check.line());
            }
            let bad = certs.iter().filter(|c| c.result.is_err()).count();
            if bad > 0 {
                anyhow::bail!("{bad} certificate problem(s), listed above");
            }
            println!("configuration OK: {} ({} specialties, {} providers)", c.clinic.name, c.specialties.len(), c.providers.len());
        }
        Command::CalendarUrls { base } => {
            let c = load(&cli.config)?;
            let Some(cal) = &c.calendar else { anyhow::bail!("no [calendar] key is set: there are no feeds") };
            for p in &c.providers {
                println!("{}\t{}{}", p.id, base.trim_end_matches('/'), clinivox::api::calendar::feed_path(&cal.key, &p.id));
            }
        }
        Command::Serve => serve(load(&cli.config)?).await?,
        Command::Purge { dry_run } => {
            let c = load(&cli.config)?;
            let store =
                clinivox::store::Store::connect(&c.database.url, 2, c.clinic.timezone).await.context("opening the clinic's database")?;
            let report = store.purge(&c.retention, chrono::Utc::now(), dry_run).await?;
            println!("| {} | count |\n|---|---:|", if dry_run { "would remove" } else { "removed" });
            for (what, n) in report.rows() {
                println!("| {what} | {n} |");
            }
            store.close().await;
        }
        Command::Patient { action } => patient(load(&cli.config)?, action).await?,
        Command::User { action } => user(load(&cli.config)?, action).await?,
        Command::Demo { history_days } => demo(load(&cli.config)?, history_days).await?,
        Command::Nlu { lang, now, prompts, text } => {
            let c = load(&cli.config)?;
            let now = now.unwrap_or_else(|| chrono::Utc::now().with_timezone(&c.clinic.timezone).naive_local());
            println!("{}", clinivox::conversation::chat::understand_json(&c, &prompts, &lang, now, &text)?);
        }
        Command::Chat { lang, caller, now, prompts, outreach } => chat(load(&cli.config)?, lang, caller, now, &prompts, outreach).await?,
        Command::Bench { what: BenchWhat::Conversation { prompts, tables, postgres } } => {
            let pg = (postgres != "off").then_some(postgres);
            clinivox::bench::conversation::run(&prompts, &tables, pg.as_deref()).await?;
        }
        Command::Bench { what: BenchWhat::Console { postgres, calls, rounds } } => {
            let pg = (postgres != "off").then_some(postgres);
            clinivox::bench::console::run(pg.as_deref(), calls, rounds).await?;
        }
        Command::Bench { what: BenchWhat::Store { postgres, clients } } => {
            let pg = (postgres != "off").then_some(postgres);
            clinivox::bench::store::run(pg.as_deref(), &clients).await?;
        }
        Command::Bench { what: BenchWhat::Speech { args } } => speech_cli("bench", args)?,
        #[cfg(feature = "whisper")]
        Command::Bench {
            what:
                BenchWhat::Sip {
                    rates,
                    seconds_per_rate,
                    calls,
                    hold_seconds,
                    secure_in_flight,
                    secure_calls,
                    flood_rate,
                    overload_only,
                    overload_multiples,
                    overload_rounds,
                },
        } => {
            let overload = clinivox::bench::secure::overload::OverloadOptions {
                flood_rate,
                multiples: overload_multiples,
                rounds: overload_rounds,
                ..Default::default()
            };
            if overload_only {
                clinivox::bench::secure::overload::run(&overload).await?;
                return Ok(());
            }
            let secure = clinivox::bench::secure::SecureOptions {
                concurrency: secure_in_flight,
                calls: secure_calls,
                hold_seconds: hold_seconds.min(10),
                ..Default::default()
            };
            clinivox::bench::sip::run(&clinivox::bench::sip::Options { rates, seconds_per_rate, calls, hold_seconds, secure, overload })
                .await?
        }
        #[cfg(feature = "whisper")]
        Command::Bench { what: BenchWhat::Turns { models, calls_per_model, levels, stagger_ms, models_dir, cache } } => {
            let o = clinivox::bench::turns::Options {
                models,
                calls_per_model,
                levels,
                stagger: std::time::Duration::from_millis(stagger_ms),
                models_dir,
                cache_dir: cache,
            };
            clinivox::bench::turns::run(&o).await?
        }
        Command::Bench { what: BenchWhat::Scheduler { postgres, instances } } => {
            let pg = (postgres != "off").then_some(postgres);
            clinivox::bench::scheduler::run(pg.as_deref(), &instances).await?;
        }
    }
    Ok(())
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    let config = config::load(path, std::env::vars())?;
    if config.demo {
        tracing::info!("no {} found: running the built-in demo clinic", path.display());
    }
    Ok(config)
}

/// `clinivox patient export|erase`: the same store calls as the API's, the
/// reader logged as `cli:<user>` in the patient's access log.
async fn patient(c: Config, action: PatientAction) -> anyhow::Result<()> {
    use clinivox::store::{Actor, Channel, Store};
    // An erasure cancels appointments: the practice system hears of it
    // through the running service's webhooks, from the shared outbox.
    let store = Store::connect(&c.database.url, 2, c.clinic.timezone)
        .await
        .context("opening the clinic's database")?
        .with_webhooks(c.webhooks.iter().map(clinivox::webhooks::Webhook::subscription).collect());
    let who = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
    let now = chrono::Utc::now();
    match action {
        PatientAction::Export { id, out } => {
            let doc = store.export_patient(&id, now).await?;
            let safe: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            let dir = out.join(format!("patient-{safe}"));
            clinivox::private_files::create_dir(&dir.join("recordings"))?;
            clinivox::private_files::create(&dir.join("export.json"))?.write_all(&serde_json::to_vec_pretty(&doc)?)?;
            let mut copied = 0;
            for call in &doc.calls {
                let Some(path) = &call.call.recording_path else { continue };
                let to = dir.join("recordings").join(format!("{}.wav", call.call.id));
                match std::fs::copy(path, &to) {
                    Ok(_) => copied += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("recording of call {} is gone: {path}", call.call.id),
                    Err(e) => return Err(e).with_context(|| format!("copying {path}")),
                }
            }
            store.record_access(&who, "cli patient export", &[(id, None)], now).await?;
            println!("{} ({} calls, {copied} recordings copied)", dir.join("export.json").display(), doc.calls.len());
        }
        PatientAction::Erase { id, yes } => {
            anyhow::ensure!(yes, "erasing a patient cannot be undone: add --yes (export first if they asked for a copy)");
            let r = store.erase_patient(&id, &Actor::new(who, Channel::Staff), now).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            if !r.residual.is_empty() {
                eprintln!("text elsewhere still holds one of the patient's identifiers (see residual): review it by hand");
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = clinivox::app::open_store(&config, clock.as_ref()).await.context("opening the clinic's database")?;
    clinivox::app::provision_speech(&config).await?;
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding the HTTP API to {} (set http.listen)", config.http.listen))?;
    if config.demo {
        tracing::warn!("demo API tokens are active: \"demo-read-token\" and \"demo-write-token\"");
    }
    clinivox::app::run(Arc::new(config), store, clock, http, shutdown_signal()).await?;
    Ok(())
}

async fn demo(mut config: Config, history_days: i64) -> anyhow::Result<()> {
    let clock = SystemClock;
    config.demo = false; // seed explicitly below, whatever the configuration
    let store = clinivox::app::open_store(&config, &clock).await?;
    let seeded = clinivox::demo::seed(&store, clock.now()).await?;
    anyhow::ensure!((0..=730).contains(&history_days), "--history-days: 0 to 730");
    if history_days > 0 {
        if seeded.patients.is_empty() {
            println!("history not written: the database already had patients (it is written once, into a new database)");
        } else {
            let h = clinivox::demo::history::seed_history(&store, &seeded.patients, history_days, clock.now()).await?;
            println!(
                "history: {history_days} days, {} calls, {} appointments, {} reminders, {} escalation calls, {} callbacks, {} slots refilled",
                h.calls, h.appointments, h.reminders, h.escalation_calls, h.callbacks, h.refills
            );
        }
    }
    println!("{} — {} ({})", config.clinic.name, config.clinic.address, config.clinic.phone);
    println!("database: {}", config.database.url);
    for s in store.specialties().await? {
        let names = s.names.get(&config.clinic.languages[0]).and_then(|n| n.first()).cloned().unwrap_or_default();
        let providers: Vec<String> = store.providers(Some(&s.id)).await?.into_iter().map(|p| p.name).collect();
        println!("  {:<14} {:<22} {}", s.id, names, providers.join(", "));
    }
    if seeded.patients.is_empty() {
        println!("patients already present: nothing seeded");
        return Ok(());
    }
    println!("created {} patients:", seeded.patients.len());
    for p in &seeded.patients {
        println!("  {:<26} {:<15} born {}  [{}]  id {}", p.name, p.phones.join(" "), p.date_of_birth, p.preferred_language, p.id);
    }
    println!("created {} appointments:", seeded.appointments.len());
    for a in &seeded.appointments {
        let who = seeded.patients.iter().find(|p| p.id == a.patient_id).map(|p| p.name.as_str()).unwrap_or("?");
        println!("  {}  {:<13} {:<26} {}", a.starts_at_local, a.provider_id, who, a.status.as_str());
    }
    Ok(())
}

async fn chat(
    config: Config,
    lang: Option<String>,
    caller: Option<String>,
    now: Option<chrono::NaiveDateTime>,
    prompts: &std::path::Path,
    outreach: Option<String>,
) -> anyhow::Result<()> {
    use clinivox::conversation::{chat, Context, Direction, Language, Outreach};
    let tz = config.clinic.timezone;
    let start = match now {
        Some(local) => Some(
            local.and_local_timezone(tz).earliest().context("--now does not exist in the clinic's time zone")?.with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let clock = chat::chat_clock(start);
    let store = clinivox::app::open_store(&config, &clinivox::clock::ManualClock::new(clock())).await?;
    let outreach = match outreach {
        Some(id) => {
            let appointment = store.appointment(&id).await.with_context(|| format!("appointment {id}"))?;
            let patient = store.patient(&appointment.patient_id).await?;
            Some(Outreach::Confirm { patient, appointment })
        }
        None => None,
    };
    // An outbound call speaks the patient's language when the clinic does.
    let patient_lang = outreach.as_ref().map(|o| o.language_for(&config).to_string());
    let lang = lang.or(patient_lang).unwrap_or_else(|| config.clinic.languages[0].clone());
    let caller = caller.map(|c| clinivox::phone::E164::parse(&c)).transpose()?;
    let ctx = Context {
        language: Arc::new(Language::load(prompts, &lang)?),
        vocabulary: Arc::new(clinivox::conversation::nlu::Vocabulary::from_config(&config)),
        config: Arc::new(config),
        direction: if outreach.is_some() { Direction::Outbound } else { Direction::Inbound },
        caller,
    };
    let (stdin, stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    match outreach {
        Some(o) => chat::run_outreach(store, ctx, o, clock, stdin, stdout).await?,
        None => chat::run(store, ctx, clock, stdin, stdout).await?,
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn sip_app(path: &std::path::Path, app: &str, args: &[String]) -> anyhow::Result<()> {
    use clinivox::call::apps;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: clinivox::sip::config::SipConfig = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let server = clinivox::sip::driver::SipServer::bind(cfg).await?;
    let report: apps::Report = Arc::new(|line: String| println!("{line}"));
    if app == "dial" {
        let target = args.first().context("dial needs a target: sip:URI, ext:201 or a number")?;
        let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
        for (t, a) in &server.local_addrs {
            println!("LISTEN {} {a}", t.as_str());
        }
        let sip = server.handle();
        let (in_tx, _in_rx) = tokio::sync::mpsc::channel(16);
        let (_stop, stop_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(server.run(in_tx, stop_rx));
        match sip.dial(apps::parse_target(target)).await {
            Ok(h) => apps::dial(h, secs, report).await,
            Err(e) => println!("DIAL-FAILED {e}"),
        }
        return Ok(());
    }
    let which = apps::App::parse(app, args.first().map(String::as_str))
        .context("app must be echo, tone, bridge <target>, refer <sip: URI> or dial <target>")?;
    apps::serve(server, which, report, shutdown_signal()).await;
    Ok(())
}

/// Speech commands keep their own argument syntax (see `speech::cli`).
fn speech_cli(command: &str, mut args: Vec<String>) -> anyhow::Result<()> {
    if command != "models" {
        args.insert(0, command.to_string());
    }
    clinivox::speech::cli::run(&args).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `clinivox ha1 201 --realm clinivox < password.txt`
async fn user(c: Config, action: UserAction) -> anyhow::Result<()> {
    use clinivox::console::password;
    use clinivox::store::{Actor, Channel, NewStaffUser, Role, Store};
    let store = Store::connect(&c.database.url, 2, c.clinic.timezone).await.context("opening the clinic's database")?;
    let who = Actor::new(format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())), Channel::Staff);
    let read_password = || -> anyhow::Result<String> {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    match action {
        UserAction::Add { username, role, display_name, language, extension } => {
            let role = Role::parse(&role).context("--role: reception, manager or admin")?;
            if let Some(l) = &language {
                anyhow::ensure!(["es", "en", "it", "pt"].contains(&l.as_str()), "--language: es, en, it or pt");
            }
            if let Some(x) = &extension {
                anyhow::ensure!(c.staff.iter().any(|s| &s.extension == x), "--extension: {x} is not one of the [[staff]] extensions");
            }
            let password_hash = password::hash(&username, &read_password()?)?;
            let display_name = display_name.unwrap_or_else(|| username.clone());
            let u = store
                .create_staff_user(
                    NewStaffUser { username, display_name, role, language, password_hash, extension },
                    &who,
                    chrono::Utc::now(),
                )
                .await?;
            println!("added {} ({})", u.username, u.role.as_str());
        }
        UserAction::Password { username } => {
            let u = store.staff_user_by_name(&username).await?.context("no such user")?;
            let hash = password::hash(&u.username, &read_password()?)?;
            store.set_staff_password(&u.id, &hash, &who, chrono::Utc::now()).await?;
            println!("password set for {}; their sessions ended", u.username);
        }
        UserAction::List => {
            for u in store.staff_users().await? {
                let phone = u.extension.as_deref().map(|x| format!("\textension={x}")).unwrap_or_default();
                let state = if u.disabled { "\tdisabled" } else { "" };
                println!("{}\t{}\t{}{phone}{state}", u.username, u.role.as_str(), u.display_name);
            }
        }
        UserAction::Extension { username, extension } => {
            let u = store.staff_user_by_name(&username).await?.context("no such user")?;
            if let Some(x) = &extension {
                anyhow::ensure!(c.staff.iter().any(|s| &s.extension == x), "{x} is not one of the [[staff]] extensions");
            }
            store.set_staff_extension(&u.id, extension.as_deref(), &who, chrono::Utc::now()).await?;
            match extension {
                Some(x) => println!("{}'s click-to-call rings extension {x}", u.username),
                None => println!("{} has no desk phone for click-to-call", u.username),
            }
        }
        UserAction::Disable { username } => {
            let u = store.staff_user_by_name(&username).await?.context("no such user")?;
            store.set_staff_disabled(&u.id, true, &who, chrono::Utc::now()).await?;
            println!("{} disabled; their sessions ended", u.username);
        }
        UserAction::Enable { username } => {
            let u = store.staff_user_by_name(&username).await?.context("no such user")?;
            store.set_staff_disabled(&u.id, false, &who, chrono::Utc::now()).await?;
            println!("{} enabled", u.username);
        }
    }
    store.close().await;
    Ok(())
}

fn ha1(extension: &str, realm: &str) -> anyhow::Result<()> {
    use clinivox::sip::digest::{ha1, Algorithm};
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let min = clinivox::sip::config::MIN_PASSWORD_LEN;
    anyhow::ensure!(password.chars().count() >= min, "the password must have at least {min} characters");
    println!("ha1_sha256 = \"{}\"", ha1(Algorithm::Sha256, extension, realm, password));
    println!("ha1_md5 = \"{}\"", ha1(Algorithm::Md5, extension, realm, password));
    Ok(())
}
