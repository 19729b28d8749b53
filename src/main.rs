//! `clinivox`: parse the command line and configuration, bind sockets, hand
//! over to the library. Everything else lives in `clinivox::…`.

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
    /// Seed the demo clinic's patients and appointments (once) and print them.
    Demo,
    /// Check the configuration and report every problem.
    CheckConfig,
    /// Print the OpenAPI document.
    Openapi,
    /// Token helpers.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Benchmarks that print a table.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Print the `hash` to put in [[api.tokens]] for a bearer token.
    Hash { token: String },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Booking throughput and latency on SQLite and PostgreSQL under contention.
    Store {
        /// PostgreSQL to use (a private schema is created); "off" to skip it.
        #[arg(long, default_value = clinivox::testing::DEFAULT_PG_URL)]
        postgres: String,
        /// Client counts to run.
        #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
        clients: Vec<usize>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=error".into()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Token { action: TokenAction::Hash { token } } => println!("{}", config::hash_token(&token)),
        Command::Openapi => println!("{}", clinivox::api::openapi_json()),
        Command::CheckConfig => {
            let c = load(&cli.config)?;
            println!("configuration OK: {} ({} specialties, {} providers)", c.clinic.name, c.specialties.len(), c.providers.len());
        }
        Command::Serve => serve(load(&cli.config)?).await?,
        Command::Demo => demo(load(&cli.config)?).await?,
        Command::Bench { what: BenchWhat::Store { postgres, clients } } => {
            let pg = (postgres != "off").then_some(postgres);
            clinivox::bench::store::run(pg.as_deref(), &clients).await?;
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

async fn serve(config: Config) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = clinivox::app::open_store(&config, clock.as_ref()).await.context("opening the clinic's database")?;
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding the HTTP API to {} (set http.listen)", config.http.listen))?;
    if config.demo {
        tracing::warn!("demo API tokens are active: \"demo-read-token\" and \"demo-write-token\"");
    }
    clinivox::app::run(Arc::new(config), store, clock, http, shutdown_signal()).await?;
    Ok(())
}

async fn demo(mut config: Config) -> anyhow::Result<()> {
    let clock = SystemClock;
    config.demo = false; // seed explicitly below, whatever the configuration
    let store = clinivox::app::open_store(&config, &clock).await?;
    let seeded = clinivox::demo::seed(&store, clock.now()).await?;
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
