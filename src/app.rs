//! The running service: every part it has, started together and stopped
//! together. `main` binds the sockets and passes a shutdown future, so tests
//! run the real thing in-process on port 0 (mini-redis's `server::run`).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::clock::Clock;
use crate::config::Config;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
}

/// Opens the store, applies migrations, mirrors the clinic's configuration
/// into it and, for the demo clinic, seeds demo patients on first run.
pub async fn open_store(config: &Config, clock: &dyn Clock) -> Result<Store, StoreError> {
    let store = Store::connect(&config.database.url, config.database.max_connections, config.clinic.timezone).await?;
    store.sync_clinic(config).await?;
    if config.demo {
        crate::demo::seed(&store, clock.now()).await?;
    }
    Ok(store)
}

/// Serves until `shutdown` completes, then drains in-flight requests.
pub async fn run(
    config: Arc<Config>,
    store: Store,
    clock: Arc<dyn Clock>,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let state = AppState { store: store.clone(), config, clock };
    let app = api::router(state).layer(tower_http::trace::TraceLayer::new_for_http());
    tracing::info!(address = %http.local_addr()?, "HTTP API listening");
    axum::serve(http, app).with_graceful_shutdown(shutdown).await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
