//! The whole service in this process for benchmarks and load tests:
//! `app::run` with the demo clinic, the voice assistant answering SIP on a
//! loopback UDP port, a fresh SQLite file, and the clinic open all day
//! (so no request turns into a callback because of the hour).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{self, AppError};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, CallsApp, Config, TimeRange, WeeklyHours};
use crate::sip::config::{Listen, Transport};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the demo configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    App(#[from] AppError),
}

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Whisper model (catalogue name); fetched into `models_dir` if missing.
    pub model: String,
    pub models_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// The clinic's language (its first); `None` keeps the demo's (Spanish).
    pub language: Option<String>,
    /// `[calls] max_active`: raise it to measure load rather than admission.
    pub max_active: usize,
    pub max_recognition_queue: usize,
    /// RTP port range, distinct per process so tests running side by side do not collide.
    pub rtp_ports: (u16, u16),
}

/// A running service. [`Service::stop`] shuts it down; dropping it leaves
/// the task running until the runtime ends.
pub struct Service {
    /// Where the assistant answers SIP (UDP).
    pub sip: SocketAddr,
    pub store: Store,
    pub config: Arc<Config>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), AppError>>,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Fetches the model if needed, opens a fresh store (demo patients
    /// seeded) and starts the service. The assistant loads the model after
    /// this returns: callers should retry their INVITE for a while
    /// ([`super::caller::Dial::answer_within`]).
    pub async fn start(o: &ServiceOptions) -> Result<Service, ServiceError> {
        let dir = tempfile::tempdir()?;
        let sip = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
        let vars = [
            ("CLINIVOX_CALLS__APP".to_string(), "assistant".to_string()),
            ("CLINIVOX_DATABASE__URL".to_string(), format!("sqlite://{}", dir.path().join("clinivox.db").display())),
        ];
        let mut c = config::from_toml(config::DEMO_TOML, "bench", vars)?;
        c.demo = true; // seed the demo patients
        c.calls_app = CallsApp::Assistant;
        c.calls.max_active = o.max_active;
        c.calls.max_recognition_queue = o.max_recognition_queue;
        if let Some(lang) = &o.language {
            c.clinic.languages.retain(|l| l != lang);
            c.clinic.languages.insert(0, lang.clone());
        }
        // An English-only model serves only English, as configuration
        // validation demands of a real clinic (this config is edited after it).
        if crate::speech::models::spec(&o.model).is_ok_and(|m| !m.multilingual) {
            c.clinic.languages.retain(|l| l == "en");
        }
        let all_day = TimeRange { start: chrono::NaiveTime::MIN, end: chrono::NaiveTime::from_hms_opt(23, 59, 59).expect("a valid time") };
        c.clinic.opening_hours = WeeklyHours(std::array::from_fn(|_| vec![all_day]));
        c.clinic.holidays.clear();
        if let Some(s) = c.sip.as_mut() {
            s.listen = vec![Listen { transport: Transport::Udp, addr: sip }];
            s.bindings_file = None;
            (s.rtp.min, s.rtp.max) = o.rtp_ports;
        }
        if let Some(s) = c.speech.as_mut() {
            s.model = o.model.clone();
            s.models_dir = o.models_dir.clone();
            s.cache_dir = o.cache_dir.clone();
        }
        app::provision_speech(&c).await?;
        let config = Arc::new(c);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = app::open_store(&config, clock.as_ref()).await?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app::run(config.clone(), store.clone(), clock, http, async {
            let _ = stop_rx.await;
        }));
        Ok(Service { sip, store, config, stop, task, _dir: dir })
    }

    /// Shuts the service down (waits up to 10 s for it to finish).
    pub async fn stop(self) -> Result<(), ServiceError> {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(r)) => Ok(r?),
            // Panicked or still stopping: nothing more to wait for.
            Ok(Err(_)) | Err(_) => Ok(()),
        }
    }
}

/// A UDP port free a moment ago (`app::run` binds the configured address
/// itself, so port 0 would leave us not knowing where it listens).
fn free_udp_port() -> std::io::Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}
