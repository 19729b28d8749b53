//! Fresh databases for tests and benchmarks: a temporary SQLite file, or a
//! private schema in the PostgreSQL named by `CLINIVOX_TEST_PG_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), so test runs never
//! see each other's rows.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::{self, Config};
use crate::store::{Store, StoreError};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Prefix of the schemas tests create; `.ci/run` drops leftovers.
pub const SCHEMA_PREFIX: &str = "cvx_t_";

/// The demo clinic's configuration, with no environment overrides.
pub fn demo_config() -> Config {
    config::from_toml(config::DEMO_TOML, "demo", std::iter::empty()).expect("the built-in demo configuration is valid")
}

pub fn pg_base_url() -> String {
    std::env::var("CLINIVOX_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

/// A store on a new SQLite file inside `dir`, synced with `config`.
pub async fn sqlite_store(dir: &std::path::Path, config: &Config) -> Result<Store, StoreError> {
    let url = format!("sqlite://{}", dir.join("clinivox-test.db").display());
    let store = Store::connect(&url, 8, config.clinic.timezone).await?;
    store.sync_clinic(config).await?;
    Ok(store)
}

/// A store on a new, empty schema of the test PostgreSQL, synced with `config`.
pub async fn postgres_store(config: &Config, max_connections: u32) -> Result<Store, StoreError> {
    postgres_store_at(&pg_base_url(), config, max_connections).await
}

/// The same on the PostgreSQL at `base` (benchmarks name theirs).
pub async fn postgres_store_at(base: &str, config: &Config, max_connections: u32) -> Result<Store, StoreError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let schema = format!("{SCHEMA_PREFIX}{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), rand::random::<u32>());
    {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(base).await?;
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut admin).await?;
        admin.close().await?;
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let store = Store::connect(&url, max_connections, config.clinic.timezone).await?;
    store.sync_clinic(config).await?;
    Ok(store)
}

/// A place where crash tests stop the service (debug builds only; nothing
/// in a release build). When `CLINIVOX_FAULT` names this point, the task
/// that reaches it says so on stderr and never goes on, so the test can
/// `kill -9` the process at exactly that moment — between a commit and its
/// answer, say.
pub async fn fault_point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("CLINIVOX_FAULT").is_ok_and(|f| f == name) {
        eprintln!("CLINIVOX_FAULT: reached {name}");
        std::future::pending::<()>().await;
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
