//! The Magpie runtime: the HTTP API, ingest, the router, the workers that run flows, metrics.
//!
//! [`app`] builds the axum router over an [`AppState`] (testable with `oneshot`); [`run`] opens
//! the store, applies a configuration if given, starts the router and workers, and serves on a
//! listener the caller binds (tests bind port 0).

mod api;
pub mod delivery;
pub mod error;
pub mod ingest;
mod metrics;
mod router;
pub mod runtime;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use magpie_core::{ConfigDocument, EventLimits};
use magpie_store::{SqliteStore, Store};
use tokio::sync::{Notify, watch};

pub use api::app;
pub use error::ApiError;
pub use metrics::Metrics;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where the embedded database lives.
    pub data_dir: PathBuf,
    /// A configuration applied at start-up (idempotently).
    pub config: Option<ConfigDocument>,
    /// Limits on each event.
    pub limits: EventLimits,
    /// Bearer token required by the API, if set.
    pub token: Option<String>,
    /// Flow runs in parallel.
    pub concurrency: usize,
    /// How long a claimed job is leased before another worker may take it.
    pub lease: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("magpie-data"),
            config: None,
            limits: EventLimits::default(),
            token: None,
            concurrency: 32,
            lease: Duration::from_secs(120),
        }
    }
}

/// Reads an environment variable (secrets' `${ENV}` references).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything the handlers and background tasks share.
pub struct AppState {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// The configuration in force.
    pub runtime: runtime::Shared,
    /// Event limits.
    pub limits: EventLimits,
    /// API bearer token.
    pub token: Option<String>,
    /// Wakes the router when events arrive.
    pub wake_router: Notify,
    /// Wakes the workers when jobs arrive.
    pub wake_workers: Notify,
    /// Counters.
    pub metrics: Metrics,
    /// Environment for `${ENV}` references.
    pub env: EnvLookup,
    /// The HTTP client for deliveries.
    pub http: reqwest::Client,
    /// Flow runs in parallel.
    pub concurrency: usize,
    /// Job lease.
    pub lease: Duration,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened.
    #[error("opening the store: {0}")]
    Store(#[from] magpie_store::StoreError),
    /// The configuration was refused.
    #[error("configuration: {0}")]
    Config(ApiError),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
}

impl AppState {
    /// Opens the store in `opts.data_dir` and loads the stored configuration.
    pub async fn open(opts: &ServerOptions, env: EnvLookup) -> Result<Arc<AppState>, ServerError> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&opts.data_dir.join("magpie.db"))?);
        let http = reqwest::Client::builder()
            .user_agent(concat!("magpie/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ServerError::Http(e.to_string()))?;
        let state = Arc::new(AppState {
            store,
            runtime: runtime::Shared::default(),
            limits: opts.limits,
            token: opts.token.clone(),
            wake_router: Notify::new(),
            wake_workers: Notify::new(),
            metrics: Metrics::default(),
            env,
            http,
            concurrency: opts.concurrency.max(1),
            lease: opts.lease,
        });
        state.runtime.reload(state.store.as_ref()).await.map_err(ServerError::Config)?;
        if let Some(doc) = &opts.config {
            runtime::apply(&state.runtime, state.store.as_ref(), doc.clone(), Vec::new(), state.env.as_ref())
                .await
                .map_err(ServerError::Config)?;
        }
        Ok(state)
    }
}

/// Runs the server until `shutdown` resolves: API on `listener`, router and workers beside it.
pub async fn run(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // This node is the only user of the embedded store: jobs left running by a crash are free.
    let released = state.store.release_leases().await?;
    if released > 0 {
        tracing::info!(jobs = released, "resuming jobs interrupted by the last shutdown");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let router = tokio::spawn(router::run(state.clone(), stop_rx.clone()));
    let workers = tokio::spawn(worker::run(state.clone(), stop_rx));
    let served = axum::serve(listener, app(state.clone())).with_graceful_shutdown(shutdown).await;
    let _ = stop_tx.send(true);
    let _ = router.await;
    let _ = workers.await;
    served.map_err(ServerError::Io)
}
